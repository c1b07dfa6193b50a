"""What a verdict of `optimize` rests on: which examples verify, which calibrate, and labels.

With --data the examples are split (pipeline.data.split): calibration never
sees the held-out examples every variant is gated on. Without it the inputs
are invented, and a calibrated variant (int8) is then only timed: calibrated
and verified on inputs that say nothing of the real ones, its verdict would
be a guess. The report says all of this in "What this verdict rests on".
"""

from dataclasses import dataclass, field

from leangraph import images, metrics
from leangraph.pipeline import data as data_reader
from leangraph.pipeline.variants import SPEED_ONLY


#: Variants whose numbers come from calibration on examples (their ranges).
CALIBRATED = ("int8",)
INVENTED_NOTE = ("speed only: calibrated and verified on invented inputs; give --data to make "
                 "it a candidate")
ON_INVENTED = "on invented inputs"


@dataclass
class Evidence:
    """The examples a run verifies and calibrates on, and what they are."""

    verification: list
    source: str
    invented: bool
    calibration: list = None
    labels: dict = field(default_factory=dict)
    n_given: int = None
    split_seed: int = None
    held_out: bool = False
    calibration_source: str = None
    #: read from a folder of images
    images: bool = False

    def to_dict(self):
        return {"source": self.source, "invented": self.invented,
                "n_calibration": 0 if self.calibration is None else len(self.calibration[0]),
                "n_verification": len(self.verification[0]) if self.verification else 0,
                "split_seed": self.split_seed, "labels": sorted(self.labels),
                "n_given": self.n_given, "held_out": self.held_out,
                "calibration_source": self.calibration_source}


def preprocessing_mode(preprocess, keras_model):
    """The image preprocessing: the one asked for, else the model family's, else tf mode."""
    if preprocess:
        return images.resolve_preprocessing(preprocess)
    return images.family_preprocessing(getattr(keras_model, "name", None)) or "tf"


def from_data(source, loaded, mode, verify_samples, calibration_samples, calibration_data=None,
              what="--data", calibration_what="--calibration-data"):
    """Evidence from the user's examples: read, checked and split."""
    inputs, outputs = loaded.frozen.inputs, loaded.frozen.outputs
    given = data_reader.read(source, inputs, outputs, what=what, preprocessing=mode)
    if calibration_data is not None:
        # Calibration has examples of its own, so any given example may verify.
        parts = data_reader.sample(given.count, verify_samples)
    else:
        parts = data_reader.split(given.count, verify_samples, calibration_samples)
    held = given.take(parts.verification)
    evidence = Evidence(held.arrays, given.source, False, labels=held.labels, n_given=given.count,
                        split_seed=parts.seed if parts.held_out else None,
                        held_out=parts.held_out, images=given.kind == "images")
    if calibration_data is not None:
        add_calibration(evidence, calibration_data, loaded, mode, calibration_what)
    elif parts.held_out:
        evidence.calibration = given.take(parts.calibration).arrays
        evidence.calibration_source = (f"{len(parts.calibration)} of the {given.count} examples "
                                       f"of {given.source}, none of them held out")
    return evidence


def add_calibration(evidence, source, loaded, mode, what="--calibration-data"):
    """Calibration examples of their own (--calibration-data), read and checked."""
    calib = data_reader.read(source, loaded.frozen.inputs, (), what=what, preprocessing=mode)
    evidence.calibration = calib.arrays
    evidence.calibration_source = calib.source


def calibration_note(evidence):
    """Why the calibrated variants are not candidates, or None when they are."""
    if evidence.invented:
        return INVENTED_NOTE
    if not evidence.held_out:
        needed = data_reader.MIN_SPLIT if evidence.calibration is None else \
            data_reader.MIN_HELD_OUT
        return data_reader.too_few_note(evidence.n_given, needed)
    return None


def mark_speed_only(variants, evidence):
    """Calibrated variants that passed but cannot be trusted on this evidence: SPEED_ONLY."""
    note = calibration_note(evidence)
    for v in variants:
        if v.verification is not None and evidence.invented:
            v.verification["invented"] = True
        if note and v.precision in CALIBRATED and v.passed:
            v.status, v.reason, v.eligible = SPEED_ONLY, note, False


def add_speedups(variants, frozen_name="frozen"):
    """The measured speed-up of each speed-only variant over the frozen graph, in its reason."""
    frozen = next((v for v in variants if v.name == frozen_name and v.latency), None)
    for v in variants:
        if v.status == SPEED_ONLY and v.latency and frozen is not None:
            v.reason += (f" (measured: {frozen.latency.p50_ms / v.latency.p50_ms:.2f}× the "
                         "frozen graph's speed)")


def score(v, outputs, gates, evidence, reference_scores=None, max_accuracy_drop=0.5,
          max_mae_increase=0.1):
    """With labels: accuracy (or MAE) of each labelled output, recorded in v.verification;
    a lossy variant over the budget against the reference's scores fails."""
    if not evidence.labels or outputs is None:
        return None
    scores = metrics.label_scores(gates.names, gates.kinds, outputs, evidence.labels)
    if v.verification is None:
        v.verification = {}
    v.verification["scores"] = scores
    if reference_scores is None or not v.passed or v.is_reference:
        return scores
    for reason in metrics.budget_failures(scores, reference_scores, max_accuracy_drop,
                                          max_mae_increase):
        v.fail(reason)
    return scores


def markdown(settings, variants):
    """The "What this verdict rests on" section of report.md, as lines."""
    info = settings.get("verification")
    if not info:
        return []
    out = ["## What this verdict rests on", ""]
    if info["invented"]:
        out.append(f"- Verification: {info['n_verification']} invented input(s) "
                   f"({info['source']}). They say how closely each variant follows the "
                   "reference on those inputs, not on real ones: every passed verdict is "
                   f"**{ON_INVENTED}**. Calibrated variants (int8) are timed only; give "
                   "`--data` to make them candidates.")
    else:
        split = (f"held out with seed {info['split_seed']}" if info["split_seed"] is not None
                 else "all of them (too few to hold any out)")
        out.append(f"- Data: {info['source']} ({info['n_given']} example(s)).")
        out.append(f"- Verification: {info['n_verification']} example(s), {split}.")
        if info["n_calibration"]:
            out.append(f"- Calibration: {info['n_calibration']} example(s) "
                       f"({info['calibration_source']}); calibration never saw the "
                       "verification examples.")
        else:
            out.append(f"- Calibration: none; calibrated variants are "
                       f"{data_reader.too_few_note(info['n_given'])}.")
        out.append("- Labels: " + (", ".join(f"`{n}`" for n in info["labels"])
                                   if info["labels"] else "none (agreement with the reference "
                                                          "only)") + ".")
    out.append("")
    out.append("| Variant | Output | Kind | Gate | Threshold | Value | Passed |")
    out.append("|---|---|---|---|---:|---:|---|")
    for v in variants:
        for c in (v.verification or {}).get("outputs", []):
            out.append(f"| {v.name} | {c['name']} | {c['kind']} | {c['gate']} | "
                       f"{_value(c['gate'], c['threshold'])} | {_value(c['gate'], c['value'])} "
                       f"| {'yes' if c['passed'] else 'no'} |")
    scored = [(v, s) for v in variants for s in (v.verification or {}).get("scores", [])]
    if scored:
        out += ["", "| Variant | Output | Metric on the labels | Value |", "|---|---|---|---:|"]
        out += [f"| {v.name} | {s['name']} | {s['metric']} | {_value(s['metric'], s['value'])} |"
                for v, s in scored]
    out.append("")
    return out


def _value(gate, value):
    if value is None:
        return "—"
    if gate == "SQNR":
        return "exact" if value == float("inf") else f"{value:.1f} dB"
    if metrics.is_agreement(gate) or gate == "accuracy":
        return f"{100 * value:.2f} %"
    return f"{value:.3g}"


def invented(examples, source):
    return Evidence(examples, source, True, n_given=len(examples[0]) if examples else 0)


def reference_scores(reference, gates, evidence):
    """The reference's own scores on the labels (see score)."""
    if not evidence.labels:
        return None

    class _Ref:
        verification = None
        passed = True
        is_reference = True

    holder = _Ref()
    return score(holder, reference, gates, evidence)

