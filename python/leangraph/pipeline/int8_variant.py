"""The int8 variant of `optimize`: leangraph.quantize of the best fp32 graph.

Calibrated on the calibration inputs (the calibration split of --data, or
--calibration-data), else on the verification inputs, and gated like bf16.
Examples fed one file each (a folder of .npy/.npz) calibrate one run each, as
they are. A graph with no conv or matmul outside while-loop bodies and cond
branches (which int8 leaves float) is skipped with one line saying so. The
layers that make an output's logits (before its softmax or sigmoid) stay float:
8-bit logits flip classes nearly tied, as a segmentation's edge pixels are. The
int8 ops are oneDNN kernels of TensorFlow's x86-64 CPU build: the written
graph runs there.
"""

from leangraph import graphs
from leangraph.errors import QuantizeError
from leangraph.pipeline.variants import failed_variant, graph_variant
from leangraph.precision import int8_graph
from leangraph.quantization import int8
from leangraph.quantization.int8 import _CONTRACTIONS


NAME = "int8"


def int8_variant(ctx):
    """Whether it is wanted and can run here is pipeline.precisions.derived_variant's to say."""
    description = "int8 (calibrated quantize_int8: oneDNN's int8 kernels, x86-64 TF CPU builds)"
    best = ctx.best
    samples = ctx.calibration or ctx.examples
    if not samples:
        return ctx.skipped(NAME, "int8", description, "no calibration inputs")
    graph_def = best.graph_def if hasattr(best.graph_def, "node") else _parse(best.graph_def)
    nothing = nothing_to_quantize(graph_def)
    if nothing:
        return ctx.skipped(NAME, "int8", description, nothing)
    try:
        result = int8_graph(graph_def, ctx.ends, samples, weight_bits=ctx.int8_weight_bits)
    except QuantizeError as exc:
        return failed_variant(NAME, description, f"quantization failed: {exc}", precision="int8",
                              gate="top1", base=best.name)
    source = "the calibration inputs" if ctx.calibration else "the verification inputs"
    kept = result.fallback_layers
    if not result.int8_layers:
        by_reason = {}
        for layer in kept:
            by_reason.setdefault(layer.reason, []).append(layer.name)
        why = "; ".join(f"{names[0]} ({reason})" if len(names) == 1 else
                        f"{len(names)} layers ({reason})" for reason, names in by_reason.items())
        return ctx.skipped(NAME, "int8", description, f"no layer is left in int8: {why}: "
                           "fp32 is kept")
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


#: Contractions int8 leaves float, named when a graph has only these.
_UNQUANTIZED = ("Conv3D", "Conv3DBackpropInputV2", "Conv2DBackpropInput", "BatchMatMul",
                "BatchMatMulV2", "BatchMatMulV3", "Einsum")


def nothing_to_quantize(graph_def):
    """Why int8 cannot apply to this graph, in one line, or None when it can: every conv
    and matmul is inside a while-loop body or a cond branch (left float), or there is none."""
    contractions = [n.name for n in graph_def.node if n.op in _CONTRACTIONS]
    frames = graphs.loop_frames(graph_def)
    branches = graphs.branch_nodes(graph_def)
    if any(c not in frames and c not in branches for c in contractions):
        return None
    kinds = "/".join(_CONTRACTIONS)
    loops = [f.attr["body"].func.name for f in graph_def.node
             if f.op in ("While", "StatelessWhile") and "body" in f.attr]
    if not contractions:
        from collections import Counter

        others = Counter(n.op for n in graph_def.node if n.op in _UNQUANTIZED)
        has = (f" (its {', '.join(f'{op} ×{k}' for op, k in sorted(others.items()))} are ops "
               "quantize_int8 does not rewrite)" if others else "")
        where = (f"; the while loop bodies {', '.join(loops)} are functions it leaves float"
                 if loops else "")
        return f"no {kinds} for int8 to quantize in this graph{has}{where}: it stays fp32"
    by_loop = {}
    for c in contractions:
        by_loop.setdefault(frames.get(c), []).append(c)
    parts = [f"the while loop '{frame}' ({', '.join(names[:3])}"
             + (f" and {len(names) - 3} more" if len(names) > 3 else "") + ")"
             for frame, names in by_loop.items() if frame is not None]
    if by_loop.get(None):
        parts.append(f"cond branches ({', '.join(by_loop[None][:3])})")
    return (f"nothing to quantize: int8 leaves loop bodies and cond branches alone (float), "
            f"and all {len(contractions)} {kinds} ops are there: {'; '.join(parts)}")


def _parse(data):
    return graphs.load_graph(data)
