"""How `leangraph prune` scores and distils its model's one output, by the output's kind.

The measures and the budget test are leangraph.metrics' (the ones optimize and
tune use); this module picks them by the output's kind and turns each into one
number where larger is better, which prune's searches, early stopping and
batch-norm refresh compare:

- classes     (softmax, or logits):  accuracy on labels, else top-1 agreement
              with the original; budget in points
- binary / multilabel (sigmoid):     thresholded accuracy on labels, else
              agreement with the original; budget in points
- regression  (anything else):       MAE on labels (held as -MAE; the budget is
              relative, max_mae_increase), else SQNR against the original (dB;
              within budget at metrics.MIN_SQNR_DB or more)

The distillation loss follows the kind too: softened KL for classes (Hinton),
binary cross-entropy of softened sigmoids for binary and multilabel, mean
squared error for regression; each mixed with the loss on the labels when
there are labels.
"""

import numpy as np

from leangraph import metrics
from leangraph.errors import PruneError

#: SQNR against the original is counted up to this (an exact copy's is infinite).
SQNR_CAP_DB = 200.0


def keras_output_kind(model):
    """(kind, probabilities) of a Keras model's one output, from the layer making it."""
    import keras

    tensor = model.outputs[0]
    op = tensor._keras_history.operation
    activation = None
    if isinstance(op, keras.layers.Softmax) or type(op).__name__ == "Softmax":
        activation = "softmax"
    elif isinstance(op, keras.layers.Activation) or isinstance(op, keras.layers.Layer):
        activation = op.get_config().get("activation")
    width = tensor.shape[-1]
    if activation == "softmax":
        return "classes", True
    if activation == "sigmoid":
        return ("binary" if width == 1 else "multilabel"), True
    return None, False


class Scoring:
    """The kind of the output, whether there are labels, and the MAE budget."""

    def __init__(self, kind, labels, probabilities=False, max_mae_increase=0.1):
        if kind not in metrics.KINDS:
            raise PruneError(f"unknown output kind {kind!r}; choose one of "
                             f"{', '.join(metrics.KINDS)}")
        self.kind, self.labels = kind, bool(labels)
        self.probabilities = probabilities
        self.max_mae_increase = float(max_mae_increase)

    @classmethod
    def for_model(cls, model, y=None, kind=None, max_mae_increase=0.1):
        """The output's kind: `kind` if given, else from its activation (softmax: classes,
        sigmoid: binary or multilabel); a linear output is logits read as classes when
        it has several columns and the labels (if any) are class indices, else regression."""
        found, probabilities = keras_output_kind(model)
        width = model.outputs[0].shape[-1]
        if kind is None:
            kind = found
        if kind is None:
            class_like = y is None or metrics._class_labels_for(np.asarray(y), width)
            kind = "classes" if (width or 0) > 1 and class_like else "regression"
        return cls(kind, y is not None, probabilities and kind != "regression",
                   max_mae_increase)

    # -- the score ----------------------------------------------------------------

    @property
    def name(self):
        if self.labels:
            return "MAE" if self.kind == "regression" else "accuracy"
        if self.kind == "regression":
            return "SQNR against the original"
        return {"classes": "top-1 agreement", "binary": "class agreement",
                "multilabel": "label agreement"}[self.kind] + " with the original"

    def __call__(self, outputs, y=None, reference=None):
        """The held-out score, larger is better (0 for no examples)."""
        outputs = np.asarray(outputs)
        if len(outputs) == 0:
            return 0.0
        if y is not None:
            _, value, higher = metrics.score(outputs, y, self.kind)
            return value if higher else -value
        if self.kind == "regression":
            return min(metrics.sqnr_db(reference, outputs), SQNR_CAP_DB)
        return metrics.agreement(outputs, reference, self.kind)

    def within(self, before, after, max_drop):
        """metrics.within_budget on the scores: max_drop points of accuracy or agreement,
        max_mae_increase of MAE; without labels a regression output needs SQNR >= 20 dB."""
        if self.kind == "regression" and not self.labels:
            return after >= metrics.MIN_SQNR_DB
        if self.kind == "regression":
            return metrics.within_budget(-before, -after, max_mae_increase=self.max_mae_increase,
                                         higher_is_better=False)
        return metrics.within_budget(before, after, max_drop)

    def excess(self, before, after, max_drop):
        """How far over the budget a score is (<= 0: within), for a search's constraint."""
        if self.kind == "regression" and not self.labels:
            return metrics.MIN_SQNR_DB - after
        if self.kind == "regression":
            return (-after) / max(-before, 1e-12) - 1.0 - self.max_mae_increase
        return 100.0 * (before - after) - max_drop

    def budget_words(self, max_drop):
        if self.kind == "regression":
            return (f"+{100 * self.max_mae_increase:g} % MAE" if self.labels
                    else f"SQNR >= {metrics.MIN_SQNR_DB:g} dB")
        return f"{max_drop:g} points"

    # -- labels -------------------------------------------------------------------

    def check_labels(self, y, n, width):
        """The labels as the loss and the score take them, or a one-line PruneError."""
        y = np.asarray(y)
        if len(y) != n:
            raise PruneError(f"labels y hold {len(y)} examples but x holds {n}")
        if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
            raise PruneError("labels y must be finite numbers")
        if self.kind == "classes":
            if y.ndim == 2 and y.shape[1] == width:
                y = y.argmax(axis=-1)  # one-hot
            if y.ndim != 1:
                raise PruneError(f"labels y have shape {y.shape}; expected ({n},) class "
                                 "indices for the examples in x")
            if not np.all(np.mod(y, 1) == 0):
                raise PruneError("labels y must be integer class indices")
            y = y.astype(np.int64)
            if y.min() < 0 or (width is not None and y.max() >= width):
                raise PruneError(f"labels y span classes {int(y.min())}..{int(y.max())} but the "
                                 f"model outputs {width} classes")
            return y
        y = y.astype(np.float32).reshape(n, -1)
        if width is not None and y.shape[1] != width:
            raise PruneError(f"labels y have {y.shape[1]} value(s) per example; the "
                             f"{self.kind} output has {width}")
        if self.kind != "regression" and not np.all((y == 0) | (y == 1)):
            raise PruneError(f"labels y of a {self.kind} output must be 0 or 1")
        return y

    def dummy_labels(self, n, width):
        if self.kind == "classes":
            return np.zeros(n, np.int64)
        return np.zeros((n, width or 1), np.float32)

    # -- the distillation loss ----------------------------------------------------

    def loss(self, student, teacher, labels, temperature, alpha):
        """The fine-tuning loss of a batch (TF tensors): distillation from the teacher's
        outputs, plus (1 - alpha) of the loss on the labels (pass alpha 1 without)."""
        import tensorflow as tf

        t = temperature
        if self.kind == "classes":
            student_logits = _logits(student, self.probabilities)
            teacher_logits = _logits(teacher, self.probabilities) / t
            soft = tf.nn.softmax(teacher_logits)
            kl = tf.reduce_sum(soft * (tf.nn.log_softmax(teacher_logits)
                                       - tf.nn.log_softmax(student_logits / t)), axis=-1)
            loss = alpha * t ** 2 * tf.reduce_mean(kl)
            if alpha < 1.0:
                loss += (1.0 - alpha) * tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                   logits=student_logits))
            return loss
        if self.kind == "regression":
            loss = alpha * tf.reduce_mean(tf.square(student - teacher))
            if alpha < 1.0:
                loss += (1.0 - alpha) * tf.reduce_mean(
                    tf.square(tf.reshape(student, tf.shape(labels)) - labels))
            return loss
        student_logits = _sigmoid_logits(student, self.probabilities)
        teacher_soft = tf.sigmoid(_sigmoid_logits(teacher, self.probabilities) / t)
        loss = alpha * t ** 2 * tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=teacher_soft, logits=student_logits / t))
        if alpha < 1.0:
            loss += (1.0 - alpha) * tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
                labels=labels, logits=tf.reshape(student_logits, tf.shape(labels))))
        return loss


def _logits(outputs, probabilities):
    import tensorflow as tf

    if probabilities:
        return tf.math.log(tf.clip_by_value(outputs, 1e-12, 1.0))
    return outputs


def _sigmoid_logits(outputs, probabilities):
    import tensorflow as tf

    if probabilities:
        p = tf.clip_by_value(outputs, 1e-7, 1.0 - 1e-7)
        return tf.math.log(p) - tf.math.log1p(-p)
    return outputs


def drop(metric, before, after):
    """(value, unit) of what a report says was lost: points of accuracy or agreement, per
    cent of MAE, or dB of SQNR."""
    if metric == "MAE":
        return 100.0 * ((-after) / max(-before, 1e-12) - 1.0), "% MAE"
    if metric.startswith("SQNR"):
        return before - after, "dB"
    return 100.0 * (before - after), "points"


def shown(metric, value):
    """A score in words: '97.50 %', 'MAE 0.0123', '41.2 dB'."""
    if metric == "MAE":
        return f"MAE {-value:.4g}"
    if metric.startswith("SQNR"):
        return "exact" if value >= SQNR_CAP_DB else f"{value:.1f} dB"
    return f"{100 * value:.2f} %"
