"""Whether a pruned model is int8-ready: its post-training int8 graph scored held out,
and quantization-aware fine-tuning (leangraph.quantization.qat) when int8 is over the
budget."""

from dataclasses import asdict

import numpy as np

from leangraph.errors import PruneError
from leangraph.pipeline.data import MIN_SPLIT, too_few_note
from leangraph.prune import distill as D
from leangraph.prune.scoring import Scoring, drop, shown
from leangraph.prune.search import deploy_graph
from leangraph.quantization.calibrate import padded
from leangraph.quantization.int8 import quantize
from leangraph.quantization.qat import FakeQuant
from leangraph.runner import run

# Training examples int8 is calibrated on, for the held-out score and for timing int8 graphs.
CALIBRATION = 64


def int8_graph(model, x_calib, batch):
    """(graph, input name, outputs) of `model`'s post-training int8 graph: leangraph.quantize
    of its frozen deploy graph at `batch`, calibrated on `x_calib`."""
    graph_def, name, outputs = deploy_graph(model, batch)
    return (quantize(graph_def, x_calib, outputs=outputs, require_int8_cpu=False).graph_def,
            name, outputs)


def int8_score(model, x_calib, x_val, y_val=None, reference=None, batch=32, scoring=None):
    """The held-out score (prune.scoring) of `model`'s post-training int8 graph (int8_graph)."""
    quantized, name, outputs = int8_graph(model, x_calib, batch)
    parts = []
    for start in range(0, len(x_val), batch):
        n = len(x_val[start:start + batch])
        # The graph is frozen at `batch`: the last one is filled up.
        parts.append(run(quantized, padded({name: x_val[start:start + batch]}, batch),
                         outputs)[0][:n])
    if not parts:
        return 0.0
    scoring = scoring or Scoring.for_model(model, y_val)
    return scoring(np.concatenate(parts), y_val, reference)


def int8_ready(model, teacher, x_train, x_val, y_train, y_val, reference, config, *,
               max_drop=0.5, qat_epochs=3, calibration=CALIBRATION):
    """Checks `model`'s post-training int8 score; fine-tunes it through fake quantization
    when int8 is over the budget (max_drop points, or the MAE or SQNR budget of a
    regression output: prune.scoring). Returns what it found."""
    if not max_drop >= 0:
        raise PruneError(f"int8_max_drop must be >= 0 points, got {max_drop}")
    if qat_epochs < 0:
        raise PruneError(f"qat_epochs must be >= 0, got {qat_epochs}")
    x_calib = x_train[:calibration]
    scoring = config.scoring or Scoring.for_model(model, y_val)
    float_score = D.score(model, x_val, y_val, reference, scoring=scoring)
    ptq = int8_score(model, x_calib, x_val, y_val, reference, scoring=scoring)
    info = {"float": float_score, "post_training": ptq, "max_drop": max_drop,
            "metric": scoring.name, "calibration": len(x_calib), "qat": None}
    within = scoring.within(float_score, ptq, max_drop)
    given = len(x_train) + len(x_val)
    if given < MIN_SPLIT:
        # Calibration and the held-out score would share examples or rest on a handful.
        info["decision"] = too_few_note(given)
        return info
    if within or qat_epochs == 0 or len(x_train) == 0:
        info["decision"] = ("post-training int8 is within the budget" if within else
                            "over the budget, but no quantization-aware epochs were allowed")
        return info
    saved = model.get_weights()
    qat_config = D.DistillConfig(**{**asdict(config), "epochs": qat_epochs,
                                    "learning_rate": config.learning_rate * 0.1})
    fake = FakeQuant(model, x_train[:256])
    trained = D.distill(model, teacher, x_train, x_val, y_train, y_val, qat_config,
                        fake_quant=fake)
    after = int8_score(model, x_calib, x_val, y_val, reference, scoring=scoring)
    info["qat"] = {**asdict(trained), "post_training_after": after,
                   "float_after": D.score(model, x_val, y_val, reference, scoring=scoring)}
    name = scoring.name
    lost, unit = drop(name, float_score, ptq)
    if after > ptq:
        info["decision"] = (f"post-training int8 lost {lost:.2f} {unit}; after "
                            f"quantization-aware fine-tuning int8 scores {shown(name, after)} "
                            f"(was {shown(name, ptq)}): kept")
    else:
        model.set_weights(saved)
        info["decision"] = (f"quantization-aware fine-tuning did not help int8 "
                            f"({shown(name, after)} vs {shown(name, ptq)}): the weights before "
                            "it are kept")
    return info
