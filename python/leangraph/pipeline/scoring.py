"""Scoring variants against the fp32 original on held-out examples (`leangraph tune`,
`leangraph study`): the examples read and split by pipeline.data, every output gated
by its kind and every labelled output held to the budget by leangraph.metrics, the
same gates and budget optimize applies.
"""

import os
from dataclasses import dataclass

from leangraph import graphs, metrics
from leangraph.errors import UsageError
from leangraph.freezing.clean import _tensor_infos
from leangraph.pipeline import data as data_reader
from leangraph.precision import predict
from leangraph.search.trials import SQNR_CAP_DB


def read_examples(graph, x, y, inputs=None, outputs=None, what="x", limit=None):
    """(input names, output TensorInfos, pipeline.data.Data) of the examples tune scores:
    these inputs and outputs (names), by default every one of the graph's."""
    inputs = [graphs.node_name(n) for n in inputs or graphs.default_inputs(graph)]
    outputs = [graphs.node_name(n) for n in outputs or graphs.default_outputs(graph)]
    infos = _tensor_infos(graph, list(inputs) + list(outputs))
    in_infos, out_infos = infos[:len(inputs)], infos[len(inputs):]
    source = x
    if y is not None:
        if isinstance(x, (str, os.PathLike)) or isinstance(x, data_reader.Data):
            raise UsageError("give the labels inside the data (y or y_<output> in the .npz), "
                             "not beside a path")
        if isinstance(x, dict):
            arrays = dict(x)
        elif isinstance(x, (list, tuple)) and len(inputs) > 1:
            arrays = {i.name: a for i, a in zip(in_infos, x)}
        else:
            arrays = {"x": x}
        if isinstance(y, dict):
            arrays.update({f"y_{name}": labels for name, labels in y.items()})
        else:
            arrays["y"] = y
        source = arrays
    if isinstance(x, (str, os.PathLike)):
        what = "--data" if what == "x" else f"--{what}-data"
    data = data_reader.read(source, in_infos, out_infos, what=what, limit=limit)
    return inputs, out_infos, data


def split_examples(data, verify_samples, calibration_samples, say):
    """(the held-out Data every variant is scored on, the calibration Data, why calibrated
    precisions are only timed or None): pipeline.data's seeded split, so calibration
    never sees what every variant is scored on. Too few examples to split: all of them
    score, and the calibrated precisions calibrate on them too, which makes their score
    no verdict."""
    n = data.count
    parts = data_reader.split(n, verify_samples or data_reader.DEFAULT_VERIFY_SAMPLES,
                              calibration_samples or data_reader.DEFAULT_CALIBRATION_SAMPLES)
    if not parts.held_out:
        note = data_reader.too_few_note(n)
        say(f"{n} examples: int8 variants are {note}")
        return data, data, note
    held = parts.verification
    say(f"scoring on {len(held)} held-out examples; int8 calibrates on "
        f"{len(parts.calibration)} others (seed {parts.seed})")
    return data.take(held), data.take(parts.calibration), None


@dataclass
class Score:
    """How one variant did on the held-out examples (Judge)."""

    metric: str
    value: float
    higher_is_better: bool
    checks: list
    #: every gate and budget it failed, in one line, or None
    failure: str | None

    @property
    def is_fraction(self):
        return self.metric not in ("MAE", "SQNR dB")

    def fill(self, trial, baseline):
        """Writes the score into a Trial, its drop against the baseline's Score."""
        trial.metric, trial.score = self.metric, self.value
        trial.higher_is_better = self.higher_is_better
        trial.checks = [c.to_dict() for c in self.checks]
        if self.is_fraction:
            trial.accuracy = self.value
            trial.accuracy_drop = 100.0 * (baseline.value - self.value)
        trial.feasible = self.failure is None
        if self.failure:
            trial.note = self.failure


class Judge:
    """Scores variants against the fp32 original on the held-out examples, every output
    gated by its kind and every labelled output held to the budget (leangraph.metrics:
    the same gates and budget optimize applies). The primary score, which ranks the
    trials, is the first labelled output's accuracy or MAE, or without labels the first
    output's agreement with the original (SQNR dB for a regression output)."""

    def __init__(self, base_graph, held, input_names, output_infos, gates, *,
                 max_accuracy_drop=0.5, max_mae_increase=0.1, batch_size=32):
        self.held, self.input_names, self.gates = held, input_names, gates
        self.output_names = [o.name for o in output_infos]
        self.max_accuracy_drop, self.max_mae_increase = max_accuracy_drop, max_mae_increase
        self.batch_size = batch_size
        self.reference = self.outputs(base_graph, None)
        self.reference_scores = metrics.label_scores(gates.names, gates.kinds, self.reference,
                                                     held.labels)
        self.baseline = self._score(self.reference, [], [])

    def outputs(self, graph, config):
        return predict(graph, self.held.arrays, self.input_names, self.output_names,
                       self.batch_size, config)

    def __call__(self, graph, config, lossy, gated=True):
        """The Score of one variant. gated False: only the label budget judges it (a
        candidate model with labels, which is meant to compute something else)."""
        outputs = self.outputs(graph, config)
        checks = self.gates.checks(outputs, self.reference, lossy) if gated else []
        failures = [metrics.failure(checks)] if metrics.failure(checks) else []
        scores = metrics.label_scores(self.gates.names, self.gates.kinds, outputs,
                                      self.held.labels)
        failures += metrics.budget_failures(scores, self.reference_scores,
                                            self.max_accuracy_drop, self.max_mae_increase)
        return self._score(outputs, checks, failures, scores)

    def _score(self, outputs, checks, failures, scores=None):
        scores = self.reference_scores if scores is None else scores
        if scores:
            first = scores[0]
            return Score(first["metric"], first["value"], first["higher_is_better"], checks,
                         "; ".join(failures) or None)
        kind, out, ref = self.gates.kinds[0], outputs[0], self.reference[0]
        if kind == "regression":
            value = min(metrics.sqnr_db(ref, out), SQNR_CAP_DB)
            return Score("SQNR dB", value, True, checks, "; ".join(failures) or None)
        value = metrics.agreement(out, ref, kind)
        if not metrics.within_budget(1.0, value, self.max_accuracy_drop):
            failures = failures + [f"agreement with the original {100 * value:.2f} % is more "
                                   f"than {self.max_accuracy_drop:g} points below 100 %"]
        return Score(f"{_AGREEMENT_NAMES[kind]}", value, True, checks,
                     "; ".join(failures) or None)


_AGREEMENT_NAMES = {"classes": "top-1 agreement", "binary": "class agreement",
                    "multilabel": "label agreement"}
