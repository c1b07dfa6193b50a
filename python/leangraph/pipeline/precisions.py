"""The variants `optimize` derives from its best verified fp32 graph, in the order they
are built and reported.

An explicit list, not registration by decorator or by a bottom-of-file import: the
order is written here, and no module has to be imported for its side effect. A new
precision is one builder (BuildContext -> Variant, or None when not wanted) and one
line below.
"""

from leangraph.errors import LeangraphError
from leangraph.pipeline.int8_variant import int8_variant
from leangraph.pipeline.variants import bf16_variant, failed_variant, quantize_weights_variant

#: name -> builder(BuildContext) -> Variant or None.
DERIVED_VARIANTS = {
    "bf16": bf16_variant,
    "quantize_weights": quantize_weights_variant,
    "int8": int8_variant,
}


def build_derived(ctx):
    """Every derived variant, in order; a builder that raises gives a FAILED row."""
    built = []
    for name, builder in DERIVED_VARIANTS.items():
        try:
            variant = builder(ctx)
        except (LeangraphError, ValueError) as exc:
            variant = failed_variant(name, "derived variant", f"building it failed: {exc}")
        if variant is not None:
            built.append(variant)
    return built
