"""The one definition of the verification gates, used for every variant everywhere.

fp32 gate: the largest difference from the reference, relative to the largest
reference magnitude, is within the tolerance. top1 gate (precisions that change
numbers on purpose: bf16, 8-bit): the top-1 class agrees with the reference on
at least MIN_TOP1_AGREEMENT of the inputs. The SavedModel written for the
result is held to the gate of the variant it was made from.
"""

import numpy as np

from leangraph.errors import GraphError
from leangraph.pipeline.variants import SKIPPED

MIN_TOP1_AGREEMENT = 0.99
#: The gate of low-precision variants when top-1 agreement means nothing (a
#: reference whose top class barely leads, e.g. random weights): the outputs'
#: signal-to-quantization-noise ratio against the reference.
MIN_SQNR_DB = 20.0
#: Below this median top-1 margin the sqnr gate replaces the top1 gate.
FRAGILE_MARGIN = 0.01


_TINY = float(np.finfo(np.float32).tiny)


def top1(array):
    """Top-1 class per example, or None when the output holds no classes.

    Class scores (N, ..., C) with C > 1: the argmax over the last axis. One
    unit per example, (N, 1): a sigmoid probability, class 1 above one half.
    This is the one definition: optimize, tune and precision.evaluate all use it.
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


def compare_outputs(outputs, reference):
    """(max_abs_diff, max_rel_diff, top1_agreement) of outputs against reference outputs.

    relative difference = max|a - b| / max(max|reference|, tiny), per output,
    the largest over the outputs, so it is not dominated by near-zero elements.
    A non-finite value where the reference is finite counts as an infinite
    difference. top1_agreement (0..1) uses the first output that holds class
    scores, None if none does.
    """
    if len(outputs) != len(reference):
        raise GraphError(f"{len(outputs)} outputs, but the reference has {len(reference)}")
    max_abs = max_rel = 0.0
    agreement = None
    for out, ref in zip(outputs, reference):
        out = np.asarray(out, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if out.shape != ref.shape:
            raise GraphError(f"an output has shape {out.shape}, the reference's {ref.shape}")
        diff = np.abs(out - ref)
        if diff.size and not np.all(np.isfinite(diff)):
            abs_o = rel_o = float("inf")
        else:
            abs_o = float(diff.max()) if diff.size else 0.0
            scale = max(float(np.abs(ref).max()) if ref.size else 0.0, _TINY)
            rel_o = abs_o / scale
        max_abs, max_rel = max(max_abs, abs_o), max(max_rel, rel_o)
        if agreement is None:
            a, b = top1(out), top1(ref)
            if a is not None:
                agreement = float(np.mean(a == b))
    return max_abs, max_rel, agreement


def output_sqnr(outputs, reference):
    """The lowest SQNR (dB) of the outputs against the reference's; inf when identical."""
    worst = float("inf")
    for out, ref in zip(outputs, reference):
        ref = np.asarray(ref, dtype=np.float64)
        noise = float(np.sum((np.asarray(out, dtype=np.float64) - ref) ** 2))
        if not np.isfinite(noise):
            return float("-inf")
        if noise == 0:
            continue
        signal = float(np.sum(ref ** 2))
        worst = min(worst, 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf"))
    return float(worst)


def top1_margin(reference):
    """Median over examples of (top-1 score - runner-up score) / |top-1 score|, or None.

    Near zero means the reference barely prefers its top class (e.g. a model
    with random weights), so top-1 agreement flips on tiny numeric changes.
    """
    for out in reference:
        out = np.asarray(out, dtype=np.float64)
        if out.ndim < 2 or out.shape[-1] < 2:
            continue
        scores = np.sort(out.reshape(-1, out.shape[-1]), axis=-1)
        lead = scores[:, -1] - scores[:, -2]
        return float(np.median(lead / np.maximum(np.abs(scores[:, -1]), _TINY)))
    return None


def gate_failure(gate, precision, max_rel_diff, top1_agreement, tolerance, sqnr_db=None):
    """Why outputs fail a gate ("fp32": within `tolerance`; "top1": top-1 agreement;
    "sqnr": output SQNR against the reference at least MIN_SQNR_DB), or None.

    The one definition of the gates: every variant is verified with it, and so
    is the SavedModel exported from the chosen one.
    """
    if max_rel_diff == float("inf"):
        return "outputs contain NaN or Inf where the reference's outputs are finite"
    if gate == "fp32":
        if not max_rel_diff <= tolerance:
            return (f"max relative difference {max_rel_diff:.3g} exceeds the tolerance "
                    f"{tolerance:g}")
        return None
    if gate == "sqnr":
        if sqnr_db is None or not sqnr_db >= MIN_SQNR_DB:
            shown = "unknown" if sqnr_db is None else f"{sqnr_db:.1f} dB"
            return f"output SQNR {shown} is below {MIN_SQNR_DB:g} dB"
        return None
    if top1_agreement is None:
        return ("top-1 agreement is undefined (no output holds class scores), and "
                f"{precision} changes numbers on purpose")
    if not top1_agreement >= MIN_TOP1_AGREEMENT:
        return (f"top-1 agreement {100 * top1_agreement:.1f} % is below "
                f"{100 * MIN_TOP1_AGREEMENT:.0f} %")
    return None


def apply_gate(variant, tolerance):
    """Applies the verification gate to a variant with measured differences."""
    if variant.status == SKIPPED:
        return
    reason = gate_failure(variant.gate, variant.precision, variant.max_rel_diff,
                          variant.top1_agreement, tolerance, variant.sqnr_db)
    if reason:
        variant.fail(reason)


def verify(variant, outputs, reference, tolerance):
    """Records a variant's differences from the reference and applies its own gate.

    outputs: the variant's outputs on the verification inputs (None: it could
    not run, and is already FAILED). An output of the wrong shape or count
    fails the variant rather than the run.
    """
    if outputs is None:
        return
    try:
        variant.max_abs_diff, variant.max_rel_diff, variant.top1_agreement = compare_outputs(
            outputs, reference)
        variant.sqnr_db = output_sqnr(outputs, reference)
    except GraphError as exc:
        variant.fail(f"its outputs do not match the reference's: {exc}")
        return
    variant.verified_on = len(reference[0]) if reference else 0
    apply_gate(variant, tolerance)
