"""The one definition of the verification gates, used for every variant everywhere.

fp32 gate: the largest difference from the reference, relative to the largest
reference magnitude, is within the tolerance. top1 gate (precisions that change
numbers on purpose: bf16, 8-bit): the top-1 class agrees with the reference on
at least MIN_TOP1_AGREEMENT of the inputs. The SavedModel written for the
result is held to the gate of the variant it was made from.
"""

from leangraph.errors import GraphError
from leangraph.pipeline.variants import SKIPPED
from leangraph.metrics import (  # noqa: F401 - the one definition; imported from here too
    MIN_SQNR_DB,
    MIN_TOP1_AGREEMENT,
    agreement,
    differences,
    examples_unchanged,
    failure,
    top1,
    top1_margin,
    worst_sqnr_db,
)

#: Below this median top-1 margin the sqnr gate replaces the top1 gate.
FRAGILE_MARGIN = 0.01


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
    found = None
    for out, ref in zip(outputs, reference):
        try:
            abs_o, rel_o = differences(out, ref)
        except ValueError as exc:
            raise GraphError(str(exc)) from None
        max_abs, max_rel = max(max_abs, abs_o), max(max_rel, rel_o)
        if found is None:
            found = agreement(out, ref, "classes")
    return max_abs, max_rel, found


#: The lowest SQNR (dB) of the outputs against the reference's (its old name here).
output_sqnr = worst_sqnr_db


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


#: Precisions that change numbers on purpose: gated by output kind and SQNR, not the
#: fp32 tolerance.
LOSSY = ("bf16", "int8", "int8-weights")


def is_lossy(variant):
    return variant.precision in LOSSY or variant.gate in ("top1", "sqnr")


def output_checks(gates, variant, outputs, reference):
    """Every gate on every output (metrics.Gates) of a variant: a list of OutputCheck."""
    return gates.checks(outputs, reference, lossy=is_lossy(variant))


def apply_gate(variant, tolerance):
    """Applies the verification gate to a variant with measured differences."""
    if variant.status == SKIPPED:
        return
    reason = gate_failure(variant.gate, variant.precision, variant.max_rel_diff,
                          variant.top1_agreement, tolerance, variant.sqnr_db)
    if reason:
        variant.fail(reason)


def verify(variant, outputs, reference, tolerance, gates=None, examples=None):
    """Records a variant's differences from the reference and applies its own gate.

    outputs: the variant's outputs on the verification inputs (None: it could
    not run, and is already FAILED). An output of the wrong shape or count
    fails the variant rather than the run. gates: a metrics.Gates, which checks
    every output by its kind (recorded in variant.verification); without it the
    first output's top-1 (or the fp32 tolerance) decides, as before. examples: how many
    examples the outputs are of (default: their rows on axis 0, which examples fed as
    they are, time-major ones, outnumber).
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
    variant.verified_on = (int(examples) if examples is not None
                           else len(reference[0]) if reference else 0)
    if gates is None:
        apply_gate(variant, tolerance)
        return
    try:
        checks = output_checks(gates, variant, outputs, reference)
    except ValueError as exc:
        variant.fail(f"its outputs do not match the reference's: {exc}")
        return
    variant.verification = {"outputs": [c.to_dict() for c in checks]}
    # Per example only where axis 0 is the examples (not time-major ones' steps).
    whole = {name: examples_unchanged(out, ref) for name, kind, out, ref
             in zip(gates.names, gates.kinds, outputs, reference)
             if kind == "classes" and len(ref) == variant.verified_on}
    whole = {name: share for name, share in whole.items() if share is not None}
    if whole:
        variant.verification["examples_unchanged"] = whole
    reason = failure(checks)
    if reason and variant.status != SKIPPED:
        variant.fail(reason)
