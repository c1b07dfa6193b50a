"""The units of an 8-bit rewrite, read off a graph: which float contraction each 8-bit node
stands for, where a unit starts and ends, and the graph walks that finding them takes.

What the rewrite's driver (int8), its bias correction (bias) and its runs (runs) all read;
it imports none of them, so they import it at the top.
"""

from leangraph import graphs
from leangraph.quantization.prepare import _CONTRACTIONS

QUANTIZED_OPS = ("_FusedQuantizedConv2D", "_FusedQuantizedDepthwiseConv2D", "_QuantizedMatMul")
#: The rewrite names a unit's 8-bit node after its contraction, with this suffix.
SUFFIX = "_int8"


def quantized_units(graph_def):
    """{float contraction name: (8-bit op, node name)} of a quantize_int8 result."""
    units = {}
    for node in graph_def.node:
        if node.op in QUANTIZED_OPS and len(node.input) > 1:
            # A conv keeps its unit's name; a matmul takes its last node's, and its
            # weights carry the unit's (<unit>/w).
            qname = (graphs.node_name(node.input[1]).rsplit("/", 1)[0]
                     if node.op == "_QuantizedMatMul" else node.name)
            if qname.endswith(SUFFIX):
                units[qname[: -len(SUFFIX)]] = (node.op, node.name)
    return units


def readers(graph_def, control=False):
    """{node: the nodes that read one of its outputs (and, with control, wait on it)}."""
    out = {}
    for node in graph_def.node:
        for i in node.input:
            if control or not i.startswith("^"):
                out.setdefault(graphs.node_name(i), []).append(node)
    return out


def chain_ends(graph_def):
    """{contraction: the node a unit would end at} (BiasAdd, Relu, Relu6 sole readers)."""
    after = readers(graph_def, control=True)
    ends = {}
    for node in graph_def.node:
        if node.op not in _CONTRACTIONS:
            continue
        last = node
        for ops in (("BiasAdd",), ("Relu", "Relu6")):
            r = after.get(last.name, [])
            if len(r) == 1 and r[0].op in ops:
                last = r[0]
        ends[node.name] = last.name
    return ends


def chain_inputs(graph_def):
    """{contraction: the float tensor its unit reads} (through a Pad it absorbs)."""
    by_name = {n.name: n for n in graph_def.node}
    out = {}
    for node in graph_def.node:
        if node.op in _CONTRACTIONS and node.input:
            source = node.input[0]
            producer = by_name.get(graphs.node_name(source))
            if producer is not None and producer.op == "Pad" and producer.input:
                source = producer.input[0]
            out[node.name] = graphs.tensor_name(source)
    return out


def depths(graph_def):
    """{node: its longest path from a source}; nodes on a loop are left out."""
    inputs = {n.name: [graphs.node_name(i) for i in n.input if not i.startswith("^")]
              for n in graph_def.node}
    after = {name: [] for name in inputs}
    pending = {}
    for name, sources in inputs.items():
        sources = [s for s in sources if s in inputs]
        pending[name] = len(sources)
        for s in sources:
            after[s].append(name)
    depth = {name: 0 for name, count in pending.items() if count == 0}
    ready = list(depth)
    while ready:  # Kahn's order; nodes on a loop never become ready
        name = ready.pop()
        for r in after[name]:
            depth[r] = max(depth.get(r, 0), depth[name] + 1)
            pending[r] -= 1
            if pending[r] == 0:
                ready.append(r)
    return depth
