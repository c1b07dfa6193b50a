"""Mutated int8 graphs through every entry point that runs a graph; no case may kill the process.

The seed is leangraph's own int8 graph of a small CNN that holds every op the
int8 rewrite emits: QuantizeV2, Dequantize, Requantize, _FusedQuantizedConv2D
(with BiasAdd, Relu, Requantize and a residual Sum),
_FusedQuantizedDepthwiseConv2D, _QuantizedMatMul, and whatever pooling and
concatenation the rewrite keeps in 8 bits. Mutations change what the int8
kernels read and TensorFlow's own shape functions do not check: range
constants' shapes and values, `fused_ops`, `out_type` and the T* attributes,
padding, strides and dilations, and inputs rewired or dropped.

Each case goes through one entry point, in a child process (the harness of
fuzz_cases.py): leangraph.run, leangraph.benchmark, leangraph.quantize, or
`leangraph optimize` on the case written as a .pb. A *valid control* (the graph
unmutated, a node renamed everywhere, a range value moved within its range)
must still run: its refusal is reported as unexpected, since refusing
everything is not safety.

    python tests/int8_fuzz_cases.py --show SEED INDEX   # rebuild one case
"""

import contextlib
import dataclasses
import io
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fuzz_cases  # noqa: E402

# Where a process-wide cache of the seed graph may live (bench and tests share it).
SEED_CACHE = os.path.join(tempfile.gettempdir(), "leangraph-int8-fuzz-seed-v2.pb")

# Weighted by what a case costs: `optimize` builds, verifies and times a result.
ENTRY_POINTS = ("run",) * 7 + ("benchmark",) * 7 + ("quantize",) * 4 + ("optimize",) * 2
QUANTIZED_DTYPES = [11, 12, 13, 6, 4, 3, 1, 14, 0]  # qint8 quint8 qint32 int8 uint8 int32 float bf16 invalid
FUSED_VOCABULARY = [b"BiasAdd", b"Relu", b"Relu6", b"Requantize", b"Sum", b"Dequantize",
                    b"LeakyRelu", b"Elu", b"Sigmoid", b"Tanh", b"Add", b"Mul", b"Bogus", b""]


@dataclasses.dataclass
class Case:
    seed: int
    index: int
    graph: bytes
    entry: str
    valid: bool  # a control that must still run
    mutations: list


# ---- the seed ------------------------------------------------------------

def seed_model():
    import keras

    keras.utils.set_random_seed(11)
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    y = layers.Conv2D(8, 1)(y)
    x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.MaxPooling2D(2)(x)
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    b = layers.Conv2D(4, 1, activation="relu")(x)
    x = layers.Concatenate()([a, b])
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(16, 3, strides=2, padding="valid", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    # A factorised Dense (a linear rank-6 pair) and a Dense with ReLU before the head: the
    # matmuls whose output stays 8-bit ([BiasAdd, Requantize] to qint8, [BiasAdd, Relu,
    # Requantize] to quint8) for the next matmul.
    x = layers.Dense(6, name="rank")(x)
    x = layers.Dense(12, activation="relu", name="hidden")(x)
    outputs = layers.Dense(10)(x)
    return keras.Model(inputs, outputs)


def seed_graph():
    """Serialized int8 GraphDef of seed_model(), built once per machine and cached."""
    if os.path.exists(SEED_CACHE):
        with open(SEED_CACHE, "rb") as handle:
            return handle.read()
    import numpy as np

    import graph_builders
    import leangraph

    float_graph = graph_builders.freeze_keras(seed_model(), (1, 16, 16, 3))
    deploy = leangraph.transform(float_graph, leangraph.recipe("deploy", float_graph),
                                 ["input"], ["Identity"])
    samples = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    result = leangraph.quantize(deploy, samples, require_int8_cpu=False)
    data = result.graph_def.SerializeToString()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(SEED_CACHE))
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, SEED_CACHE)
    return data


# ---- mutations: each takes (graph_def, rng) and edits it in place ----------

def _quantized(g):
    return [n for n in g.node if n.op.startswith(("_FusedQuantized", "_Quantized", "Quantize",
                                                   "Quantized", "Requantiz", "Dequantize"))]


def _by_name(g):
    return {n.name: n for n in g.node}


def _const_inputs(g, node):
    nodes = _by_name(g)
    out = []
    for position, edge in enumerate(node.input):
        source = nodes.get(edge.lstrip("^").split(":")[0])
        if source is not None and source.op == "Const" and not edge.startswith("^"):
            out.append((position, source))
    return out


def _range_consts(g):
    """Float Consts read by a quantized op (its ranges), as (consumer, position, const)."""
    found = []
    for node in _quantized(g):
        for position, const in _const_inputs(g, node):
            if const.attr["dtype"].type == 1:
                found.append((node, position, const))
    return found


def _set_values(const, values, shape):
    import numpy as np
    import tensorflow as tf

    array = np.asarray(values, dtype=np.float32).reshape(shape)
    const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(array, dtype=tf.float32))


def _values(const):
    import tensorflow as tf

    return tf.make_ndarray(const.attr["value"].tensor)


def m_range_shape(g, rng):
    found = _range_consts(g)
    if not found:
        return
    _, _, const = rng.choice(found)
    values = _values(const).ravel()
    count = rng.choice([0, 1, 2, 3, 4, 8, 9, 16, 17, 64])
    base = float(values[0]) if values.size else 1.0
    shape = rng.choice([(count,), (1, count), (count, 1), () if count == 1 else (count,)])
    _set_values(const, [base] * count, shape)


def m_range_value(g, rng):
    found = _range_consts(g)
    if not found:
        return
    _, _, const = rng.choice(found)
    values = _values(const)
    choice = rng.choice([float("nan"), float("inf"), -float("inf"), 0.0, -1e30, 1e30, 1e-30,
                         -5.0, 5.0])
    flat = values.ravel().copy()
    if flat.size:
        flat[rng.randrange(flat.size)] = choice
    _set_values(const, flat, values.shape)


def m_range_swap(g, rng):
    """min above max: the two range constants of one operand exchanged."""
    found = [(n, p, c) for n, p, c in _range_consts(g)]
    if len(found) < 2:
        return
    node, position, const = rng.choice(found)
    partner = next((c for n, p, c in found if n is node and p == position + 1), None)
    if partner is not None:
        a, b = _values(const), _values(partner)
        if a.shape == b.shape:
            _set_values(const, b.ravel(), b.shape)
            _set_values(partner, a.ravel(), a.shape)


def m_fused_ops(g, rng):
    nodes = [n for n in _quantized(g) if "fused_ops" in n.attr]
    if not nodes:
        return
    ops = nodes[rng.randrange(len(nodes))].attr["fused_ops"].list.s
    current = list(ops)
    kind = rng.randrange(4)
    if kind == 0 and current:
        del current[rng.randrange(len(current))]
    elif kind == 1:
        current.insert(rng.randrange(len(current) + 1), rng.choice(FUSED_VOCABULARY))
    elif kind == 2:
        rng.shuffle(current)
    else:
        current = [rng.choice(FUSED_VOCABULARY) for _ in range(rng.randrange(5))]
    del ops[:]
    ops.extend(current)


def m_type_attr(g, rng):
    nodes = _quantized(g)
    if not nodes:
        return
    node = rng.choice(nodes)
    names = [k for k, v in node.attr.items() if v.HasField("type")]
    if names:
        node.attr[rng.choice(names)].type = rng.choice(QUANTIZED_DTYPES)


def m_list_type_attr(g, rng):
    nodes = [n for n in _quantized(g) if any(v.HasField("list") and v.list.type
                                            for v in n.attr.values())]
    if not nodes:
        return
    node = rng.choice(nodes)
    name = rng.choice([k for k, v in node.attr.items() if v.HasField("list") and v.list.type])
    types = node.attr[name].list.type
    del types[:]
    types.extend(rng.choice(QUANTIZED_DTYPES) for _ in range(rng.randrange(4)))


def m_geometry(g, rng):
    nodes = [n for n in g.node if any(k in n.attr for k in ("strides", "padding", "dilations",
                                                            "ksize", "explicit_paddings"))]
    if not nodes:
        return
    node = rng.choice(nodes)
    kind = rng.randrange(5)
    if kind == 0:
        node.attr["padding"].s = rng.choice([b"SAME", b"VALID", b"EXPLICIT", b"FULL", b""])
    elif kind == 1:
        name = rng.choice(["strides", "dilations", "ksize"])
        values = node.attr[name].list.i
        del values[:]
        values.extend(rng.choice([0, 1, 2, 3, -1, 1000, 2**40])
                      for _ in range(rng.choice([0, 1, 3, 4, 4, 4, 5])))
    elif kind == 2:
        values = node.attr["explicit_paddings"].list.i
        del values[:]
        values.extend(rng.choice([0, 1, 2, -1, 99]) for _ in range(rng.choice([0, 2, 8, 8, 7])))
    elif kind == 3:
        node.attr["data_format"].s = rng.choice([b"NCHW", b"NHWC", b"HWNC", b""])
    else:
        if "padding_list" in node.attr or rng.random() < 0.5:
            values = node.attr["padding_list"].list.i
            del values[:]
            values.extend(rng.choice([0, 1, -1, 5]) for _ in range(rng.choice([0, 4, 8])))


def m_int_attr(g, rng):
    """axis, narrow_range, mode, round_mode, transpose flags and the like."""
    nodes = _quantized(g)
    if not nodes:
        return
    node = rng.choice(nodes)
    kind = rng.randrange(4)
    if kind == 0:
        node.attr["axis"].i = rng.choice([-2, -1, 0, 1, 2, 3, 4, 99])
    elif kind == 1:
        node.attr[rng.choice(["narrow_range", "transpose_a", "transpose_b",
                              "is_filter_const", "is_bias_const"])].b = rng.random() < 0.5
    elif kind == 2:
        node.attr[rng.choice(["mode", "round_mode", "input_quant_mode"])].s = rng.choice(
            [b"MIN_FIRST", b"SCALED", b"MIN_COMBINED", b"HALF_TO_EVEN", b"HALF_AWAY_FROM_ZERO",
             b"bogus"])
    else:
        node.attr["ensure_minimum_range"].f = rng.choice([0.0, -1.0, 1e30, float("nan")])


def m_weights(g, rng):
    """The int8 filter or bias constant reshaped, retyped or cut short."""
    import numpy as np
    import tensorflow as tf

    targets = [(n, p, c) for n in _quantized(g) for p, c in _const_inputs(g, n)
               if c.attr["dtype"].type != 1]
    if not targets:
        return
    _, _, const = rng.choice(targets)
    value = tf.make_ndarray(const.attr["value"].tensor)
    kind = rng.randrange(3)
    if kind == 0 and value.size:
        value = value.reshape(-1)[: max(1, value.size // rng.choice([1, 2, 3]))]
        value = value.reshape((value.size,) if rng.random() < 0.5 else (1, 1, 1, value.size))
    elif kind == 1:
        value = value.reshape(-1)
    else:
        value = value.astype(rng.choice([np.float32, np.int32, np.uint8, np.int8]))
    const.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum if value.dtype != np.int8 \
        else const.attr["dtype"].type
    const.attr["value"].tensor.CopyFrom(
        tf.make_tensor_proto(value, dtype=tf.as_dtype(const.attr["dtype"].type)))


def m_rewire(g, rng):
    nodes = _quantized(g)
    if not nodes or not g.node:
        return
    node = rng.choice(nodes)
    if not node.input:
        return
    source = rng.choice(list(g.node)).name
    port = rng.choice([0, 0, 1, 2, 3])
    node.input[rng.randrange(len(node.input))] = source if port == 0 else f"{source}:{port}"


def m_drop_input(g, rng):
    nodes = [n for n in _quantized(g) if n.input]
    if nodes:
        node = rng.choice(nodes)
        del node.input[rng.randrange(len(node.input))]


def m_add_input(g, rng):
    nodes = _quantized(g)
    if nodes:
        node = rng.choice(nodes)
        node.input.insert(rng.randrange(len(node.input) + 1), rng.choice(list(g.node)).name)


MUTATIONS = [m_range_shape, m_range_shape, m_range_value, m_range_swap, m_fused_ops,
             m_fused_ops, m_type_attr, m_list_type_attr, m_geometry, m_int_attr, m_weights,
             m_rewire, m_drop_input, m_add_input]


# ---- valid controls: the graph must still run ------------------------------

def v_unchanged(g, rng):
    return


def v_rename(g, rng):
    """A node renamed, with every reference to it."""
    node = rng.choice([n for n in g.node if n.op not in ("Placeholder",)])
    old, new = node.name, node.name + "_renamed"
    node.name = new
    for other in g.node:
        for i, edge in enumerate(other.input):
            control = edge.startswith("^")
            head, _, port = edge.lstrip("^").partition(":")
            if head == old:
                other.input[i] = ("^" if control else "") + new + (":" + port if port else "")


def v_range_within(g, rng):
    """A range constant widened a little: the kernels read other but valid numbers."""
    found = [(n, p, c) for n, p, c in _range_consts(g)]
    if not found:
        return
    _, _, const = rng.choice(found)
    values = _values(const)
    _set_values(const, values.ravel() * rng.choice([1.01, 1.1, 1.5]), values.shape)


CONTROLS = [v_unchanged, v_rename, v_range_within]


def make_case(seed_bytes, seed, index):
    """Case `index` of corpus `seed`: a pure function of (seed, index) and the seed graph."""
    from tensorflow.core.framework import graph_pb2

    rng = random.Random(f"leangraph-int8-fuzz:{seed}:{index}")
    graph = graph_pb2.GraphDef()
    graph.ParseFromString(seed_bytes)
    valid = rng.random() < 0.1
    applied = []
    if valid:
        control = rng.choice(CONTROLS)
        control(graph, rng)
        applied.append(control.__name__)
    else:
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            mutation = rng.choice(MUTATIONS)
            mutation(graph, rng)
            applied.append(mutation.__name__)
    entry = rng.choice(ENTRY_POINTS)
    return Case(seed, index, graph.SerializeToString(), entry, valid, applied)


def describe(case):
    return (f"int8 case seed={case.seed} index={case.index} entry={case.entry} "
            f"valid={case.valid} mutations={case.mutations}")


# ---- the child ---------------------------------------------------------------

def _input(graph_def):
    import numpy as np

    return {"input": np.random.default_rng(1).uniform(0, 1, (1, 16, 16, 3)).astype("float32")}


def _tensorflow_alone(case):
    """The graph in a plain TF session, no checks: what the checks prevent."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(case.graph)
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        session.run("Identity:0", {"input:0": _input(graph_def)["input"]})


def _through_leangraph(case, workdir):
    import numpy as np

    import leangraph

    if case.entry == "run":
        leangraph.run(case.graph, _input(None))
    elif case.entry == "benchmark":
        leangraph.benchmark(case.graph, runs=1, warmup=0, measure_overhead=False)
    elif case.entry == "quantize":
        samples = np.random.default_rng(2).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
        leangraph.quantize(case.graph, samples, require_int8_cpu=False, check_samples=2,
                           max_rounds=1)
    else:
        path = os.path.join(workdir, f"case-{case.index}.pb")
        with open(path, "wb") as handle:
            handle.write(case.graph)
        out = os.path.join(workdir, f"out-{case.index}")
        # The CLI's own entry, in this process: a crash in it kills the child,
        # which the harness sees; its one-line error is a refusal.
        from leangraph import cli

        errors = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
            code = cli.main(["optimize", path, "-o", out, "--precision", "fp32", "--runs", "3",
                             "--no-progress"])
        # 1: refused in one line; 3: every variant failed verification, nothing written.
        if code in (1, 3):
            lines = [l for l in errors.getvalue().splitlines() if l.strip()]
            raise leangraph.LeangraphError(lines[-1] if lines else f"exit {code}")
        if code != 0:
            raise RuntimeError(f"leangraph optimize exited {code}: {errors.getvalue()[-300:]}")


def _child_main(path, tensorflow_alone=False):
    import pickle

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    fuzz_cases.dump_stacks_on_signal()
    import leangraph

    with open(path, "rb") as handle:
        cases = pickle.load(handle)
    out = sys.stdout
    with tempfile.TemporaryDirectory() as workdir:
        for case in cases:
            out.write(f"start {case.index}\n")
            out.flush()
            refused = (leangraph.LeangraphError, Exception) if tensorflow_alone \
                else leangraph.LeangraphError
            try:
                if tensorflow_alone:
                    _tensorflow_alone(case)
                else:
                    _through_leangraph(case, workdir)
                outcome = "ok"
            except refused as exc:
                outcome = ("unexpected refusal of a valid control: " + str(exc)[:200]
                           if case.valid and not tensorflow_alone else "refused")
            except Exception as exc:  # noqa: BLE001 - reported, not hidden
                outcome = "unexpected " + repr(exc)[:200]
            out.write(f"done {case.index} {' '.join(outcome.split())}\n")
            out.flush()


def run_batch(cases, **kwargs):
    return fuzz_cases.run_batch(cases, script=__file__, **kwargs)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("--child", "--child-tensorflow-alone"):
        _child_main(sys.argv[2], tensorflow_alone=sys.argv[1] == "--child-tensorflow-alone")
    elif len(sys.argv) == 4 and sys.argv[1] == "--show":
        print(describe(make_case(seed_graph(), int(sys.argv[2]), int(sys.argv[3]))))
    else:
        sys.exit("usage: int8_fuzz_cases.py --show SEED INDEX   (or --child FILE, internal)")
