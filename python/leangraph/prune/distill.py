"""Fine-tuning a pruned model by knowledge distillation from the unpruned one.

For a classifier the loss is Hinton's: the KL divergence between teacher and
student outputs softened by a temperature T (scaled by T^2 so its gradients keep
their size as T changes), mixed with the cross-entropy on the hard labels when
there are labels; sigmoid and regression outputs have their own
(prune.scoring.Scoring.loss). Without labels the student learns from the
teacher alone.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from leangraph.errors import PruneError
from leangraph.prune.scoring import Scoring, shown


@dataclass
class DistillConfig:
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the distillation term; 1 - alpha goes to the hard labels
    epochs: int = 10
    seconds: float | None = None  # wall-clock budget; stops mid-epoch when spent
    patience: int = 3  # epochs without a better held-out score before stopping
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    progress: bool = True
    #: how the output is scored and distilled (prune.scoring.Scoring; None: from the
    #: teacher's output and whether there are labels)
    scoring: object = None

    @classmethod
    def for_model(cls, model, y=None, output_kind=None, max_mae_increase=0.1, **options):
        """A checked config whose scoring reads `model`'s output (prune.scoring.Scoring)."""
        scoring = Scoring.for_model(model, y, output_kind, max_mae_increase)
        config = cls(scoring=scoring, **options)
        config.check()
        return config

    def check(self):
        if not self.temperature > 0:
            raise PruneError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise PruneError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.epochs < 0:
            raise PruneError(f"epochs must be >= 0, got {self.epochs}")
        if self.seconds is not None and not self.seconds > 0:
            raise PruneError(f"seconds must be > 0, got {self.seconds}")
        if self.batch_size < 1:
            raise PruneError(f"batch size must be >= 1, got {self.batch_size}")


@dataclass
class DistillResult:
    epochs: float = 0.0  # epochs run (fractional when the time budget ended one)
    seconds: float = 0.0
    best_score: float = 0.0  # held-out accuracy (or top-1 agreement with the teacher)
    initial_score: float = 0.0
    history: list = field(default_factory=list)  # held-out score after each epoch
    stopped: str = ""  # why training ended


def outputs_are_probabilities(model):
    """True when the model ends in a softmax (its outputs are probabilities, not logits)."""
    import keras

    tensor = model.outputs[0]
    op = tensor._keras_history.operation
    if isinstance(op, keras.layers.Softmax):
        return True
    if isinstance(op, keras.layers.Layer):
        return op.get_config().get("activation") == "softmax"
    return type(op).__name__ == "Softmax"


def as_logits(outputs, probabilities):
    import tensorflow as tf

    if probabilities:
        return tf.math.log(tf.clip_by_value(outputs, 1e-12, 1.0))
    return outputs


def predict(model, x, batch_size=256):
    """Model outputs in inference mode, batch by batch."""
    parts = [np.asarray(model(x[i:i + batch_size], training=False))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0,))


def score(model, x, y=None, reference=None, batch_size=256, scoring=None):
    """The held-out score of the model's outputs, larger is better (prune.scoring: accuracy
    against labels `y`, or agreement with the `reference` outputs, by the output's kind)."""
    scoring = scoring or Scoring.for_model(model, y)
    return scoring(predict(model, x, batch_size), y, reference)


def recalibrate_batch_norms(model, x, batches=8, batch_size=64, seed=0):
    """Re-estimates every batch norm's moving statistics on `x`; no other weight changes.

    Removing channels upstream shifts what each batch norm sees, so its old
    statistics mis-normalize: a pruned model often predicts one class until
    they are refreshed. The k-th batch gets weight 1/k (momentum (k-1)/k),
    which makes the result the plain average over the batches.
    """
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms or len(x) == 0:
        return 0
    saved = [layer.momentum for layer in norms]
    order = np.random.default_rng(seed).permutation(len(x))
    weights = [(v, v.numpy()) for layer in norms for v in layer.trainable_weights]
    count = 0
    try:
        for k, start in enumerate(range(0, min(len(x), batches * batch_size), batch_size)):
            for layer in norms:
                layer.momentum = k / (k + 1.0)
            model(x[order[start:start + batch_size]], training=True)
            count += 1
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum
        for v, value in weights:  # training=True must not have moved anything else
            v.assign(value)
    return count


def refresh_batch_norms(model, x_train, x_val, y_val=None, reference=None, seed=0, scoring=None):
    """Recalibrates the batch norms and keeps the new statistics only if they score better.

    Fresh statistics usually rescue a pruned model, but after a deep cut they
    can also amplify damaged channels that the stale ones kept small; the
    held-out score decides. Returns True when the new statistics were kept.
    """
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return False
    before = score(model, x_val, y_val, reference, scoring=scoring)
    saved = [layer.get_weights() for layer in norms]
    recalibrate_batch_norms(model, x_train, seed=seed)
    if score(model, x_val, y_val, reference, scoring=scoring) > before:
        return True
    for layer, values in zip(norms, saved):
        layer.set_weights(values)
    return False


def _progress(enabled, total):
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("distill {task.fields[epoch]}"), BarColumn(),
                    TextColumn("{task.fields[status]}"), TimeRemainingColumn(), transient=True)


def distill(student, teacher, x_train, x_val, y_train=None, y_val=None, config=None,
            fake_quant=None):
    """Fine-tunes `student` in place from `teacher`; keeps the weights that scored best held out.

    fake_quant: a leangraph.quantization.qat.FakeQuant of `student`: the student
    then trains, and is scored, through the int8 rounding (quantization-aware
    fine-tuning); its weights stay float.
    """
    import contextlib

    import keras
    import tensorflow as tf

    config = config or DistillConfig()
    config.check()
    labels = y_train is not None
    if labels != (y_val is not None):
        raise PruneError("give labels for both the training and the held-out data, or neither")
    scoring = config.scoring or Scoring.for_model(teacher, y_val)
    soft_train = predict(teacher, x_train)
    soft_val = predict(teacher, x_val)

    def held_out():
        if fake_quant is None:
            return score(student, x_val, y_val, soft_val, scoring=scoring)
        return scoring(fake_quant.predict(x_val), y_val, soft_val)

    result = DistillResult()
    result.initial_score = result.best_score = held_out()
    if config.epochs == 0 or len(x_train) == 0:
        result.stopped = "no fine-tuning asked for"
        return result

    keras.utils.set_random_seed(config.seed)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    variables = student.trainable_variables
    temperature = float(config.temperature)
    alpha = float(config.alpha) if labels else 1.0

    @tf.function(reduce_retracing=True)
    def step(xb, tb, yb):
        with tf.GradientTape() as tape:
            if fake_quant is None:
                out = student(xb, training=True)
            else:
                with keras.StatelessScope(state_mapping=fake_quant.kernel_mapping()) as scope:
                    out = student(xb, training=True)
                # The scope kept the batch norms' moving statistics aside: apply them.
                for v in student.non_trainable_variables:
                    moved = scope.get_current_value(v)
                    if moved is not None:
                        v.assign(moved)
            loss = scoring.loss(out, tb, yb, temperature, alpha)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    best_weights = student.get_weights()
    rng = np.random.default_rng(config.seed)
    start = time.monotonic()
    stale = 0
    steps = max(1, -(-len(x_train) // config.batch_size))
    width = teacher.outputs[0].shape[-1]
    y_fit = (scoring.check_labels(y_train, len(x_train), width) if labels
             else scoring.dummy_labels(len(x_train), width))
    rounding = fake_quant.inputs_rounded() if fake_quant is not None else contextlib.nullcontext()
    with rounding, _progress(config.progress, steps) as bar:
        task = bar.add_task("", total=steps, epoch=0, status="") if bar else None
        for epoch in range(config.epochs):
            order = rng.permutation(len(x_train))
            if bar:
                bar.reset(task, total=steps, epoch=f"{epoch + 1}/{config.epochs}",
                          status=f"held-out {shown(scoring.name, result.best_score)}")
            done = 0
            out_of_time = False
            for i in range(0, len(order), config.batch_size):
                idx = order[i:i + config.batch_size]
                step(tf.constant(x_train[idx]), tf.constant(soft_train[idx]),
                     tf.constant(y_fit[idx]))
                done += 1
                if bar:
                    bar.advance(task)
                if config.seconds is not None and time.monotonic() - start > config.seconds:
                    out_of_time = True
                    break
            result.epochs += done / steps
            current = held_out()
            result.history.append(current)
            if current > result.best_score:
                result.best_score, best_weights, stale = current, student.get_weights(), 0
            else:
                stale += 1
            if out_of_time:
                result.stopped = f"time budget of {config.seconds:g} s spent"
                break
            if stale >= config.patience:
                result.stopped = f"no better held-out score for {config.patience} epochs"
                break
        else:
            result.stopped = f"{config.epochs} epochs done"
    student.set_weights(best_weights)
    result.seconds = time.monotonic() - start
    return result
