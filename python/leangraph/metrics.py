"""The metrics, each defined once: top-1, SQNR, relative error, accuracy, MAE, the budget.

optimize, tune, prune and leangraph.evaluate all measure through this module,
so one model is never scored two ways. It also holds the output kinds and
their gates:

- classes     a softmax (or logits read as classes) over the last axis, per
              position where there are more axes; gate: top-1 agreement
- binary      a sigmoid with one column; gate: agreement of the class (> 0.5)
- multilabel  a sigmoid with several columns; gate: per-label agreement
- regression  anything else; gate: max relative error

A lossy variant (bf16, int8, 8-bit weights) must pass its kind's gate and
SQNR >= MIN_SQNR_DB on every output; an fp32 variant must stay within the
relative tolerance on every output.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from leangraph.errors import UsageError

KINDS = ("classes", "binary", "multilabel", "regression")
MIN_TOP1_AGREEMENT = 0.99
MIN_SQNR_DB = 20.0
#: A lossy regression output: the largest difference, relative to the largest reference
#: magnitude, it may have.
MAX_LOSSY_RELATIVE_ERROR = 0.1
_TINY = float(np.finfo(np.float32).tiny)
# Ops an output may pass through after the op that says what it is.
_PASS_THROUGH = {"Identity", "IdentityN", "StopGradient", "Reshape", "Squeeze", "ExpandDims",
                 "Snapshot", "PreventGradient"}


# ---------------------------------------------------------------------------
# the measures
# ---------------------------------------------------------------------------

def top1(array):
    """Top-1 class per example (per position with more axes), or None when there are no classes.

    (N, ..., C) with C > 1: the argmax over the last axis. (N, 1): a sigmoid
    probability, class 1 above one half.
    """
    array = np.asarray(array)
    if array.ndim < 2:
        return None
    if array.shape[-1] == 1 and array.ndim == 2:
        return (array[:, 0] > 0.5).astype(np.int64)
    if array.shape[-1] < 2:
        return None
    if array.ndim == 2:
        return np.argmax(array, axis=1)
    return np.argmax(array.reshape(array.shape[0], -1, array.shape[-1]), axis=-1)


def predicted(array, kind):
    """What an output of this kind predicts: classes, or 0/1 per label; None for regression."""
    array = np.asarray(array)
    if kind == "classes":
        return top1(array)
    if kind in ("binary", "multilabel"):
        return (array > 0.5).astype(np.int64)
    return None


def agreement(output, reference, kind):
    """Fraction of predictions (classes, thresholded labels) equal to the reference's; None
    for regression or an output without classes."""
    a, b = predicted(output, kind), predicted(reference, kind)
    if a is None or b is None:
        return None
    return float(np.mean(a == b)) if a.size else 1.0


#: A per-position classes output (a segmentation, a sequence tagger) whose reference gives
#: one class at least this share of its positions is also gated off that class
#: (off_dominant_agreement), where at least MIN_OFF_DOMINANT positions are.
DOMINANT_SHARE = 0.9
MIN_OFF_DOMINANT = 5


def off_dominant_agreement(output, reference):
    """(top-1 agreement on the positions whose reference class is not the dominant one, that
    class, its share of the positions, how many positions are off it), or None when no
    class dominates or too few positions are off it.

    A per-position classes output is often nearly all one class (background, "no splice
    site"): its top-1 agreement then measures that class and hides flips of the rare
    classes a user reads it for (spliceai's splice sites: 100 % top-1 and 54.9 dB SQNR
    overall, 24.7 dB on its two site channels). The gate's name says how many positions it
    rests on (spliceai's 16 held-out sequences: 5 sites)."""
    want, got = top1(np.asarray(reference)), top1(np.asarray(output))
    if want is None or got is None or want.size == 0:
        return None
    classes, counts = np.unique(want, return_counts=True)
    dominant = int(classes[np.argmax(counts)])
    share = float(counts.max()) / want.size
    off = want != dominant
    if share < DOMINANT_SHARE or int(off.sum()) < MIN_OFF_DOMINANT:
        return None
    return float(np.mean(got[off] == want[off])), dominant, share, int(off.sum())


def examples_unchanged(output, reference):
    """For a per-position classes output (N, positions..., C): the share of examples whose
    every position keeps the reference's top-1 class; None for any other output.

    Per-position agreement counts positions, but a user reads a segmented sentence or a
    tagged sequence whole: 99.6 % of characters agreeing left about one of five of
    deepcut's sentences segmented differently."""
    want, got = top1(np.asarray(reference)), top1(np.asarray(output))
    if np.ndim(reference) < 3 or want is None or got is None or want.shape != got.shape:
        return None
    if want.shape[0] == 0:
        return None
    same = (want == got).reshape(want.shape[0], -1).all(axis=1)
    return float(np.mean(same))


def sqnr_db(reference, value):
    """Signal-to-quantization-noise ratio (dB) of `value` against `reference`: inf when
    identical; -inf when value overflowed where the reference did not, when the reference
    is all zero, or when the noise is beyond float64."""
    reference = np.asarray(reference, np.float64)
    value = np.asarray(value, np.float64)
    if not np.isfinite(value).all() and np.isfinite(reference).all():
        return float("-inf")
    with np.errstate(over="ignore", invalid="ignore"):
        noise = float(np.sum((reference - value) ** 2))
        signal = float(np.sum(reference ** 2))
    return sqnr_of_sums(noise, signal)


def sqnr_of_sums(noise, signal, value_finite=True, reference_finite=True):
    """sqnr_db from its sums: noise = sum((reference - value)^2), signal = sum(reference^2),
    with sqnr_db's edge cases (value_finite / reference_finite: whether every value is
    finite). For callers that sum in pieces (quantization.values, arrays never joined)."""
    if not value_finite and reference_finite:
        return float("-inf")
    noise, signal = float(noise), float(signal)
    if noise == 0:
        return float("inf")
    ratio = signal / noise if np.isfinite(noise) else 0.0
    if not ratio > 0:
        return float("-inf")
    return 10.0 * float(np.log10(ratio))


def worst_sqnr_db(outputs, reference):
    """The lowest SQNR (dB) over several outputs; inf when all are identical."""
    return float(min((sqnr_db(r, o) for o, r in zip(outputs, reference)),
                     default=float("inf")))


def differences(output, reference):
    """(max |a - b|, that relative to max |reference|) of one output; both inf where the
    output is not finite and the reference is."""
    out = np.asarray(output, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"an output has shape {out.shape}, the reference's {ref.shape}")
    diff = np.abs(out - ref)
    if diff.size and not np.all(np.isfinite(diff)):
        return float("inf"), float("inf")
    largest = float(diff.max()) if diff.size else 0.0
    scale = max(float(np.abs(ref).max()) if ref.size else 0.0, _TINY)
    return largest, largest / scale


def relative_error(output, reference):
    """max |a - b| / max |reference| of one output (see differences)."""
    return differences(output, reference)[1]


def top1_margin(reference):
    """Median over examples of (top score - runner-up) / |top score| of the first output
    with classes, or None. Near zero: top-1 agreement flips on tiny changes."""
    for out in reference:
        out = np.asarray(out, dtype=np.float64)
        if out.ndim < 2 or out.shape[-1] < 2:
            continue
        scores = np.sort(out.reshape(-1, out.shape[-1]), axis=-1)
        lead = scores[:, -1] - scores[:, -2]
        return float(np.median(lead / np.maximum(np.abs(scores[:, -1]), _TINY)))
    return None


def held_out_score(outputs, labels=None, reference=None):
    """Top-1 accuracy of class scores against labels, or without labels their top-1
    agreement with the reference outputs (0 for no examples)."""
    if len(outputs) == 0:
        return 0.0
    if labels is not None:
        return accuracy(outputs, labels, "classes")
    return agreement(outputs, reference, "classes")


def class_labels(labels, classes=None):
    """Integer labels from class indices or one-hot rows (classes: the output's last axis)."""
    labels = np.asarray(labels)
    if labels.ndim >= 2 and labels.shape[-1] > 1 and (classes is None
                                                     or labels.shape[-1] == classes):
        labels = np.argmax(labels, axis=-1)
    return labels


def _class_labels_for(labels, columns):
    """Whether labels read as class indices (or one-hot rows) of an output this wide."""
    labels = np.asarray(labels)
    if columns is None or columns < 2 or labels.size == 0:
        return False
    if labels.ndim == 2 and labels.shape[-1] == columns:
        return bool(np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(-1) == 1))
    if labels.ndim != 1:
        return False
    whole = np.all(np.equal(np.mod(labels, 1), 0))
    return bool(whole and labels.min() >= 0 and labels.max() < columns)


def accuracy(output, labels, kind="classes"):
    """Fraction of predictions equal to the labels (classes, binary, multilabel); None for
    regression. Class labels may be indices or one-hot rows."""
    output = np.asarray(output)
    guess = predicted(output, kind)
    if guess is None:
        return None
    labels = np.asarray(labels)
    if kind == "classes":
        labels = class_labels(labels, output.shape[-1])
    else:
        labels = (labels > 0.5).astype(np.int64)
    try:
        hits = guess.reshape(len(guess), -1) == labels.reshape(len(labels), -1)
    except ValueError:
        raise UsageError(f"labels of shape {labels.shape} do not fit an output of shape "
                         f"{output.shape}") from None
    return float(np.mean(hits)) if hits.size else 0.0


def mae(output, labels):
    """Mean absolute error of a regression output against its labels."""
    out = np.asarray(output, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64).reshape(out.shape)
    return float(np.mean(np.abs(out - labels)))


def score(output, labels, kind):
    """(name, value, higher is better) of a variant on labels: accuracy, or MAE for regression."""
    if kind == "regression":
        return "MAE", mae(output, labels), False
    return "accuracy", accuracy(output, labels, kind), True


def within_budget(reference, value, max_accuracy_drop=0.5, max_mae_increase=0.1,
                  higher_is_better=True):
    """The one budget test: an accuracy (0..1) at most `max_accuracy_drop` points below the
    reference's, or an MAE at most `max_mae_increase` (relative) above it."""
    if value is None or reference is None:
        return False
    if higher_is_better:
        # A tiny tolerance, so float noise in a fraction never flips a verdict.
        return 100.0 * (reference - value) <= max_accuracy_drop + 1e-9
    return value <= reference * (1.0 + max_mae_increase) + 1e-12


def label_scores(names, kinds, outputs, labels):
    """The score of each output that has labels: [{name, metric, value, higher_is_better}]."""
    scores = []
    for name, kind, out in zip(names, kinds, outputs):
        if name in labels:
            metric, value, higher = score(out, labels[name], kind)
            scores.append({"name": name, "metric": metric, "value": value,
                           "higher_is_better": higher})
    return scores


def budget_failures(scores, reference_scores, max_accuracy_drop=0.5, max_mae_increase=0.1):
    """Why a variant's label scores (label_scores) are over the budget against the
    reference's: one line per output over it (empty: within)."""
    failed = []
    for mine, ref in zip(scores, reference_scores):
        if not within_budget(ref["value"], mine["value"], max_accuracy_drop, max_mae_increase,
                             mine["higher_is_better"]):
            budget = (f"{max_accuracy_drop:g} points" if mine["higher_is_better"]
                      else f"+{100 * max_mae_increase:g} %")
            failed.append(f"output '{mine['name']}': {mine['metric']} {mine['value']:.4g} "
                          f"against the reference's {ref['value']:.4g}, over the budget "
                          f"({budget})")
    return failed


# ---------------------------------------------------------------------------
# output kinds
# ---------------------------------------------------------------------------

def output_kind(graph_def, name, shape=None):
    """The kind of a graph output, from the op that produces it (through Identity and the
    like): Softmax -> classes, Sigmoid -> binary (one column) or multilabel, else regression."""
    nodes = {n.name: n for n in getattr(graph_def, "node", ())}
    node = nodes.get(name.split(":")[0].lstrip("^"))
    while node is not None and node.op in _PASS_THROUGH and node.input:
        node = nodes.get(node.input[0].split(":")[0].lstrip("^"))
    op = node.op if node is not None else None
    if op in ("Softmax", "LogSoftmax"):
        return "classes"
    if op == "Sigmoid":
        columns = shape[-1] if shape else None
        return "binary" if columns == 1 else "multilabel"
    return "regression"


def parse_assignments(items, what, parse_value):
    """{name: value} from NAME=VALUE strings (a list, or one comma-separated string)."""
    if not items:
        return {}
    if isinstance(items, dict):
        return {str(k): parse_value(v) for k, v in items.items()}
    if isinstance(items, str):
        items = [items]
    parsed = {}
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.rpartition("=")
            if not sep or not name:
                raise UsageError(f"{what}: '{part}' is not NAME=VALUE")
            parsed[name.strip()] = parse_value(value.strip())
    return parsed


def parse_kind(text):
    kind = str(text).strip().lower()
    if kind not in KINDS:
        raise UsageError(f"--output-kind: unknown kind '{text}'; choose from {', '.join(KINDS)}")
    return kind


#: What --gate NAME=GATE:VALUE may set (GATE left out: the output kind's own gate).
GATE_NAMES = ("agreement", "relative", "sqnr")


def parse_gate(text):
    """(gate, threshold) from "VALUE" (the kind's gate) or "GATE:VALUE"."""
    gate, sep, value = str(text).rpartition(":")
    gate = gate.strip().lower() if sep else None
    if gate is not None and gate not in GATE_NAMES:
        raise UsageError(f"--gate: unknown gate '{gate}'; choose from {', '.join(GATE_NAMES)}")
    try:
        threshold = float(value)
    except ValueError:
        raise UsageError(f"--gate: '{value}' is not a number") from None
    if not np.isfinite(threshold):
        raise UsageError(f"--gate: '{value}' is not a finite number")
    return gate, threshold


# ---------------------------------------------------------------------------
# gates
# ---------------------------------------------------------------------------

@dataclass
class OutputCheck:
    """One gate on one output: its threshold, the measured value, whether it passed."""

    name: str
    kind: str
    gate: str
    threshold: float
    value: float
    passed: bool

    def to_dict(self):
        return asdict(self)

    def failure(self):
        if self.gate == "relative error":  # the fp32 gate
            return (f"output '{self.name}': max relative difference {self.value:.3g} exceeds "
                    f"the tolerance {self.threshold:g}")
        shown = _shown(self.gate, self.value)
        limit = _shown(self.gate, self.threshold)
        side = "above" if self.gate == "max relative error" else "below"
        return f"output '{self.name}' ({self.kind}): {self.gate} {shown} is {side} {limit}"


def is_agreement(gate):
    """Whether an OutputCheck's gate is a fraction of agreeing predictions."""
    return "agreement" in gate


def _shown(gate, value):
    if value is None:
        return "undefined"
    if gate == "SQNR":
        return "exact" if value == float("inf") else f"{value:.1f} dB"
    if is_agreement(gate):
        return f"{100 * value:.1f} %"
    return f"{value:.3g}"


_AGREEMENT = {"classes": "top-1 agreement", "binary": "class agreement",
              "multilabel": "label agreement"}


@dataclass
class Gates:
    """How each output of one model is gated: its kind, and any threshold set per output.

    names/kinds: per output, in the graph's order. thresholds: {output name:
    {gate: value}} with gate one of GATE_NAMES. fragile: classes outputs whose
    reference barely prefers its top class (random weights) are gated on SQNR
    alone, as top-1 agreement flips on rounding there.
    """

    names: list
    kinds: list
    tolerance: float = 1e-4
    thresholds: dict = field(default_factory=dict)
    fragile: bool = False
    #: outputs whose kind --output-kind set (labels never change those)
    given: set = field(default_factory=set)
    #: each output's last axis (None: unknown), for reading labels
    columns: list = field(default_factory=list)

    @classmethod
    def for_graph(cls, graph_def, outputs, tolerance=1e-4, kinds=None, gates=None):
        """Gates for a graph's outputs (objects with .name and .shape), kinds from their
        producing ops unless `kinds` ({name: kind}) overrides them."""
        names = [o.name for o in outputs]
        kinds = parse_assignments(kinds, "--output-kind", parse_kind)
        thresholds = {}
        for name, (gate, value) in parse_assignments(gates, "--gate", parse_gate).items():
            thresholds.setdefault(name, {})[gate] = value
        for given in list(kinds) + list(thresholds):
            if given not in names:
                raise UsageError(f"no output '{given}' (the outputs: {', '.join(names)})")
        found = [kinds.get(o.name) or output_kind(graph_def, o.name, o.shape) for o in outputs]
        columns = [o.shape[-1] if o.shape else None for o in outputs]
        return cls(names, found, tolerance, thresholds, given=set(kinds), columns=columns)

    def read_labels(self, labels):
        """Logits read as classes: an output the graph leaves a regression, with more than
        one column, whose labels are whole class indices (one per example) or one-hot rows
        as wide as it, becomes a classes output, unless --output-kind set its kind."""
        for i, name in enumerate(self.names):
            if (name in labels and name not in self.given and self.kinds[i] == "regression"
                    and _class_labels_for(labels[name], self.columns[i])):
                self.kinds[i] = "classes"
        return self

    def checks(self, outputs, reference, lossy):
        """Every gate on every output of a variant: a list of OutputCheck."""
        if len(outputs) != len(reference):
            raise ValueError(f"{len(outputs)} outputs, but the reference has {len(reference)}")
        found = []
        for name, kind, out, ref in zip(self.names, self.kinds, outputs, reference):
            _, rel = differences(out, ref)
            own = self.thresholds.get(name, {})
            if not lossy:
                limit = own.get("relative", own.get(None, self.tolerance))
                found.append(OutputCheck(name, kind, "relative error", limit, rel, rel <= limit))
                continue
            if kind == "regression":
                limit = own.get("relative", own.get(None, MAX_LOSSY_RELATIVE_ERROR))
                found.append(OutputCheck(name, kind, "max relative error", limit, rel,
                                         rel <= limit))
            elif not (kind == "classes" and self.fragile):
                limit = own.get("agreement", own.get(None, MIN_TOP1_AGREEMENT))
                value = agreement(out, ref, kind)
                found.append(OutputCheck(name, kind, _AGREEMENT[kind], limit, value,
                                         value is not None and value >= limit
                                         and rel != float("inf")))
                off = (off_dominant_agreement(out, ref)
                       if kind == "classes" and np.ndim(ref) >= 3 else None)
                if off is not None:
                    value, dominant, share, count = off
                    found.append(OutputCheck(
                        name, kind, f"top-1 agreement on the {count} positions not of class "
                        f"{dominant} ({100 * share:.1f} % are)", limit, value, value >= limit))
            limit = own.get("sqnr", MIN_SQNR_DB)
            value = sqnr_db(ref, out)
            found.append(OutputCheck(name, kind, "SQNR", limit, value, value >= limit))
        return found


def failure(checks):
    """Why a list of OutputCheck fails (every failed gate, in one line), or None."""
    failed = [c.failure() for c in checks if not c.passed]
    return "; ".join(failed) if failed else None
