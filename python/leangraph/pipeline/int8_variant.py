"""The int8 variant of `optimize`: leangraph.quantize of the best fp32 graph.

Calibrated on the calibration inputs when given (--calibration-dir), else on
the verification inputs, and gated like bf16. The int8 ops are oneDNN kernels
of TensorFlow's x86-64 CPU build: the written graph runs there.
"""

from leangraph.pipeline.variants import failed_variant, graph_variant

NAME = "int8"


def int8_variant(ctx):
    from leangraph.errors import QuantizeError
    from leangraph.quantization import int8, quantize

    if not ctx.wants(NAME):
        return None
    description = "int8 (calibrated quantize_int8: oneDNN's int8 kernels, x86-64 TF CPU builds)"
    if not int8.cpu_supports_int8():
        return ctx.skipped(NAME, "int8", description, f"{int8.NO_INT8_CPU}: fp32 is kept")
    best = ctx.best
    if best is None:
        return ctx.skipped(NAME, "int8", description, "no fp32 graph variant passed")
    samples = ctx.calibration or ctx.examples
    if not samples:
        return ctx.skipped(NAME, "int8", description, "no calibration inputs")
    from leangraph.pipeline.data import PerExample

    if any(isinstance(s, PerExample) for s in samples):
        return ctx.skipped(NAME, "int8", description, "calibration reads examples stacked on "
                           "axis 0, and these are fed one file each (give --calibration-data "
                           "in a stacked form)")
    inputs, outputs = ctx.ends
    feeds = dict(zip(inputs, samples))
    try:
        result = quantize(best.graph_def if hasattr(best.graph_def, "node") else _parse(best.graph_def),
                          feeds if len(feeds) > 1 else samples[0], inputs=inputs, outputs=outputs,
                          weight_bits=ctx.int8_weight_bits)
    except QuantizeError as exc:
        return failed_variant(NAME, description, f"quantization failed: {exc}", precision="int8",
                              gate="top1", base=best.name)
    source = "the calibration inputs" if ctx.calibration else "the verification inputs"
    kept = result.fallback_layers
    detail = (f"int8 of {best.name}: {len(result.int8_layers)} conv/matmul layers in int8 "
              f"({100 * result.int8_mac_share:.1f} % of their MACs), calibrated ({result.calibration.method}) "
              f"on {source}")
    if not int8.cpu_has_vnni():
        detail += "; this CPU has no VNNI, so oneDNN's AVX2 kernels run it"
    if result.weight_bits == 7:
        detail += ("; Conv2D weights on unsigned inputs in 7 bits (which kernels without VNNI "
                   "add without saturating)")
    elif not int8.cpu_has_vnni():
        detail += ("; 8-bit Conv2D weights as asked, which these kernels saturate: the graph is for "
                   "CPUs with VNNI, and what it computed here is not what it computes there")
    for note in result.notes:  # SE equalization: tried, and which was kept
        detail += f"; {note}"
    if kept:
        detail += "; kept fp32: " + "; ".join(f"{l.name} ({l.reason})" for l in kept[:6])
        if len(kept) > 6:
            detail += f" and {len(kept) - 6} more"
    v = graph_variant(NAME, detail, result.graph_def, precision="int8", gate="top1",
                      base=best.name, eligible=True, transform="quantize_int8")
    v.quantization = result.to_dict()
    return v


def _parse(data):
    from leangraph import graphs

    return graphs.load_graph(data)
