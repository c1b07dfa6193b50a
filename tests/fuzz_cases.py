"""A fixed-seed corpus of mutated GraphDefs, and the child-process harness that runs it.

Case `i` of seed `s` is a pure function of (s, i) and the seed graphs, so any
case a run reports can be rebuilt alone: `python tests/fuzz_cases.py --show s i`.

Each case is run inside a child process (many cases per child, because
importing TensorFlow costs seconds); a child that dies by a signal or hangs
points at the case it was running, which is recorded and skipped, and a fresh
child carries on with the rest. Used by tests/test_fuzz.py and bench/fuzz.py.
"""

import dataclasses
import os
import pickle
import random
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Transform steps with parameters that make them act on the seed graphs, plus
# hostile parameter values: the parameters reach TF's code as much as the graph.
TRANSFORMS = [
    "add_default_attributes",
    "backport_concatv2",
    "backport_tensor_array_v3",
    "flatten_atrous_conv",
    "fold_batch_norms",
    "fold_constants(ignore_errors=true)",
    "fold_constants",
    "fold_old_batch_norms",
    "freeze_requantization_ranges",
    "fuse_pad_and_conv",
    "fuse_resize_and_conv",
    "fuse_resize_pad_and_conv",
    "inline_partitionedcall",
    "insert_logging(op=Conv2D)",
    "merge_duplicate_nodes",
    "obfuscate_names",
    "quantize_nodes",
    "quantize_weights(minimum_size=16)",
    "remove_attribute(attribute_name=T)",
    "remove_attribute(attribute_name=value, op_name=Const)",
    "remove_control_dependencies",
    "remove_device",
    "remove_nodes(op=Identity, op=CheckNumerics)",
    "rename_attribute(old_attribute_name=T, new_attribute_name=U)",
    "rename_node(old_node_name=relu1, new_node_name=bn1)",
    "rename_node(old_node_name=missing, new_node_name=x)",
    "rename_op(old_op_name=Relu, new_op_name=Relu6)",
    "rename_op(old_op_name=Conv2D, new_op_name=MatMul)",
    "round_weights(num_steps=16)",
    "set_device(device=/cpu:0)",
    "sort_by_execution_order",
    "sparsify_gather",
    "strip_unused_nodes(type=float)",
    "strip_unused_nodes(type=float, shape=\"1,16,16,3\")",
    "fold_keras_batch_norms",
    "fuse_bias_add",
    "fuse_matmul_reshape",
    "fuse_layer_norm",
    "strip_freeze_artifacts",
    "remove_identity_chains",
    "to_bfloat16",
]

HOSTILE_STEPS = [
    "strip_unused_nodes(type=int7)",
    "strip_unused_nodes(type=float, shape=\"a,b\")",
    "strip_unused_nodes(type=float, shape=\"-5,-1\")",
    "strip_unused_nodes(type=float, shape=\"99999999999999999999\")",
    "strip_unused_nodes(name=input, type_for_name=float, shape_for_name=\"1,2\")",
    "strip_unused_nodes(name=a, name=b, type_for_name=float)",
    "quantize_weights(minimum_size=-1)",
    "quantize_weights(minimum_size=abc)",
    "round_weights(num_steps=0)",
    "round_weights(num_steps=-3)",
    "round_weights(num_steps=1)",
    "quantize_nodes(input_min=5, input_max=-5)",
    "quantize_nodes(fallback_min=x)",
    "fold_constants(max_constant_size_in_bytes=-1)",
    "fold_constants(exclude_op=Const, exclude_node=input)",
    "insert_logging(first_n=-1, summarize=-7)",
    "insert_logging(first_n=abc)",
    "rename_node(old_node_name=, new_node_name=)",
    "rename_node(old_node_name=input, new_node_name=output)",
    "rename_op(old_op_name=Const, new_op_name=Placeholder)",
    "rename_op(old_op_name=Conv2D, new_op_name=)",
    "rename_attribute(old_attribute_name=value, new_attribute_name=dtype)",
    "remove_attribute(attribute_name=dtype)",
    "remove_nodes(op=Const)",
    "remove_nodes(op=Conv2D, op=Placeholder)",
    "remove_nodes(op=Identity, repeatable=true)",
    "set_device(device=\"/job:x/replica:-1\", if_default=maybe)",
    "sparsify_gather(input_checkpoint=/nonexistent/ckpt)",
    "freeze_requantization_ranges(min_max_log_file=/nonexistent)",
    "fold_batch_norms(ignore_errors=maybe)",
    "fold_old_batch_norms(ignore_errors=true)",
    "merge_duplicate_nodes(ignore_errors=true)",
]

OP_POOL = [
    "Conv2D", "DepthwiseConv2dNative", "MatMul", "Mul", "Add", "AddV2", "BiasAdd", "Sub",
    "FusedBatchNorm", "FusedBatchNormV3", "BatchNormWithGlobalNormalization", "Relu", "Relu6",
    "Identity", "Const", "Placeholder", "Pad", "MirrorPad", "Reshape", "NoOp", "Merge", "Switch",
    "NextIteration", "Enter", "Exit", "SpaceToBatchND", "BatchToSpaceND", "ResizeBilinear",
    "Gather", "GatherV2", "ConcatV2", "Concat", "QuantizeV2", "Dequantize", "Requantize",
    "QuantizedConv2D", "Conv2DBackpropInput", "MaxPool", "AvgPool", "Mean", "Softmax", "Shape",
    "StridedSlice", "CheckNumerics", "PartitionedCall", "StatefulPartitionedCall", "Print",
    "TensorArrayV3", "Cast", "BogusOpThatDoesNotExist", "",
]

DTYPES = [1, 2, 3, 4, 7, 9, 10, 14, 19, 0, 23, 99]  # incl. DT_INVALID and an unknown enum
BIG = [0, 1, 2, 3, 8, 17, -1, -7, 2**31 - 1, 2**31, 2**40, 2**62, 2**63 - 1]


@dataclasses.dataclass
class Case:
    seed: int
    index: int
    graph: bytes
    transforms: str
    inputs: list  # or None: the Python defaults
    outputs: list
    mutations: list


def seed_graphs():
    """{name: serialized GraphDef} of the small graphs the mutations start from."""
    sys.path.insert(0, HERE)
    import graph_builders

    return {
        "conv_bn": graph_builders.conv_bn_graph().SerializeToString(),
        "keras_cnn": graph_builders.keras_cnn_graph().SerializeToString(),
    }


def _graph_pb2():
    from tensorflow.core.framework import graph_pb2

    return graph_pb2


# ---- mutations: each takes (graph_def, rng) and edits the graph in place ----

def _pick(rng, nodes, pred=None):
    pool = [n for n in nodes if pred is None or pred(n)]
    return rng.choice(pool) if pool else None


def _random_attr(rng, attr):
    kind = rng.randrange(9)
    if kind == 0:
        attr.i = rng.choice(BIG)
    elif kind == 1:
        attr.f = rng.choice([0.0, -1.0, 1e30, float("nan"), float("inf")])
    elif kind == 2:
        attr.s = rng.choice([b"", b"SAME", b"NHWC", b"NCHW", b"\xff\xfe", b"x" * 40])
    elif kind == 3:
        attr.type = rng.choice(DTYPES)
    elif kind == 4:
        attr.shape.unknown_rank = rng.random() < 0.3
        for _ in range(rng.randrange(6)):
            attr.shape.dim.add().size = rng.choice(BIG)
    elif kind == 5:
        attr.list.i.extend(rng.choice(BIG) for _ in range(rng.randrange(6)))
    elif kind == 6:
        attr.list.type.extend(rng.choice(DTYPES) for _ in range(rng.randrange(4)))
    elif kind == 7:
        attr.b = rng.random() < 0.5
    else:
        _random_tensor(rng, attr.tensor)


def _random_tensor(rng, tensor):
    """A tensor that may or may not be self-consistent."""
    import numpy as np

    dtype = rng.choice([1, 1, 1, 3, 2, 19, 10, 7, 9])
    rank = rng.choice([0, 1, 1, 2, 4, 4, 5])
    dims = [rng.choice([1, 1, 2, 3, 4, 8]) for _ in range(rank)]
    tensor.dtype = dtype
    for d in dims:
        tensor.tensor_shape.dim.add().size = d
    n = int(np.prod(dims)) if dims else 1
    if dtype == 7:
        tensor.string_val.extend(b"s" for _ in range(n))
    elif dtype == 10:
        tensor.bool_val.extend(True for _ in range(n))
    else:
        np_type = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16}[dtype]
        tensor.tensor_content = np.ones(n, np_type).tobytes()
    if rng.random() < 0.3:  # then break it
        tensor.tensor_content = tensor.tensor_content[: rng.randrange(len(tensor.tensor_content) + 1)]


def m_drop_attr(g, rng):
    node = _pick(rng, g.node, lambda n: n.attr)
    if node:
        del node.attr[rng.choice(sorted(node.attr))]


def m_retype_attr(g, rng):
    node = _pick(rng, g.node, lambda n: n.attr)
    if node:
        key = rng.choice(sorted(node.attr))
        node.attr[key].Clear()
        _random_attr(rng, node.attr[key])


def m_add_attr(g, rng):
    node = _pick(rng, g.node)
    if node:
        key = rng.choice(["T", "U", "value", "dtype", "strides", "padding", "data_format",
                          "epsilon", "dilations", "N", "Tidx", "shape", "_class", "zzz"])
        node.attr[key].Clear()
        _random_attr(rng, node.attr[key])


def _consts(g):
    return [n for n in g.node if n.op == "Const"]


def m_const_dtype(g, rng):
    node = _pick(rng, _consts(g))
    if node:
        dtype = rng.choice(DTYPES)
        where = rng.randrange(3)
        if where in (0, 2):
            node.attr["dtype"].type = dtype
        if where in (1, 2):
            node.attr["value"].tensor.dtype = dtype


def m_const_shape(g, rng):
    node = _pick(rng, _consts(g))
    if node:
        shape = node.attr["value"].tensor.tensor_shape
        shape.Clear()
        if rng.random() < 0.1:
            shape.unknown_rank = True
        for _ in range(rng.choice([0, 1, 2, 3, 4, 5, 9])):
            shape.dim.add().size = rng.choice(BIG)


def m_const_content(g, rng):
    node = _pick(rng, _consts(g))
    if node:
        tensor = node.attr["value"].tensor
        choice = rng.randrange(4)
        if choice == 0:
            tensor.tensor_content = tensor.tensor_content[: rng.randrange(len(tensor.tensor_content) + 1)]
        elif choice == 1:
            tensor.tensor_content += bytes(rng.randrange(1, 9))
        elif choice == 2:
            tensor.ClearField("tensor_content")
            tensor.float_val.extend([1.0] * rng.choice([0, 1, 2, 5, 1000]))
        else:
            tensor.int_val.extend([7] * rng.choice([1, 3]))


def m_const_clear(g, rng):
    node = _pick(rng, _consts(g))
    if node:
        if rng.random() < 0.5:
            del node.attr["value"]
        else:
            node.attr["value"].Clear()


def m_const_replace(g, rng):
    """A valid-looking tensor of the wrong dtype or rank for its consumer."""
    node = _pick(rng, _consts(g))
    if node:
        node.attr["value"].Clear()
        _random_tensor(rng, node.attr["value"].tensor)
        node.attr["dtype"].type = node.attr["value"].tensor.dtype


def _weighted_const(g, rng):
    """A Const, preferring the operands folding transforms read (weights, BN parameters)."""
    consts = {n.name: n for n in _consts(g)}
    fed = [consts[i.split(":")[0]] for n in g.node
           if n.op in ("Conv2D", "DepthwiseConv2dNative", "MatMul", "Mul", "Add", "AddV2",
                       "BiasAdd", "FusedBatchNorm", "FusedBatchNormV3", "Pad", "Reshape")
           for i in n.input if i.split(":")[0] in consts]
    pool = fed if fed and rng.random() < 0.8 else list(consts.values())
    return rng.choice(pool) if pool else None


def _const_value(node):
    """The Const's value as an array, or None when an earlier mutation broke it."""
    from tensorflow.python.framework import tensor_util

    tensor = node.attr["value"].tensor
    count = 1
    for dim in tensor.tensor_shape.dim:
        count *= max(dim.size, 0)
    if count > 1 << 20:  # a mutated shape may claim terabytes
        return None
    try:
        return tensor_util.MakeNdarray(tensor)
    except Exception:  # noqa: BLE001 - any failure means "broken already"
        return None


def m_const_reshape_valid(g, rng):
    """Same values, another rank: a self-consistent tensor its consumer does not expect."""
    from tensorflow.python.framework import tensor_util

    node = _weighted_const(g, rng)
    value = _const_value(node) if node else None
    if value is None:
        return
    n = value.size
    shapes = [(n,), (1, n), (n, 1), (1, 1, 1, n), (1, 1, n), ()] if n == 1 else [
        (n,), (1, n), (1, 1, 1, n), (1, 1, 1, 1, n)]
    if n % 2 == 0:
        shapes.append((2, n // 2))
    shape = rng.choice(shapes)
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value.reshape(shape)))


def m_const_recast_valid(g, rng):
    """Same shape, another dtype, attrs kept consistent."""
    import numpy as np
    from tensorflow.python.framework import tensor_util

    node = _weighted_const(g, rng)
    value = _const_value(node) if node else None
    if value is None:
        return
    dtype = rng.choice([np.int32, np.float16, np.float64, np.int64, np.bool_, np.uint8])
    try:
        proto = tensor_util.make_tensor_proto(value.astype(dtype))
    except (TypeError, ValueError):  # strings and the like do not convert
        return
    node.attr["value"].tensor.CopyFrom(proto)
    node.attr["dtype"].type = proto.dtype
    if rng.random() < 0.5:  # and retype the consumers, so the edge types agree
        for consumer in g.node:
            if node.name in [i.split(":")[0] for i in consumer.input] and "T" in consumer.attr:
                consumer.attr["T"].type = proto.dtype


def m_rewire(g, rng):
    node = _pick(rng, g.node, lambda n: n.input)
    if not node:
        return
    i = rng.randrange(len(node.input))
    other = rng.choice(g.node).name
    node.input[i] = rng.choice([
        "missing_node", f"{other}:{rng.choice([1, 2, 3, 5, 99, 2**31])}", f"^{other}", "",
        ":", f"{other}:", f"{other}:-1", f"{other}:1:2", f"{other}:x", "^", f"^{other}:0", other,
    ])


def m_add_input(g, rng):
    node = _pick(rng, g.node)
    if node:
        other = rng.choice(g.node).name
        node.input.append(rng.choice([other, f"^{other}", f"{other}:1"]))


def m_drop_input(g, rng):
    node = _pick(rng, g.node, lambda n: n.input)
    if node:
        del node.input[rng.randrange(len(node.input))]


def m_swap_inputs(g, rng):
    node = _pick(rng, g.node, lambda n: len(n.input) > 1)
    if node:
        a, b = rng.sample(range(len(node.input)), 2)
        node.input[a], node.input[b] = node.input[b], node.input[a]


def m_cycle(g, rng):
    """Points a node at one of its own consumers (a self-loop when it has none)."""
    node = _pick(rng, g.node, lambda n: n.input)
    if not node:
        return
    consumers = [n.name for n in g.node
                 if any(i.lstrip("^").split(":")[0] == node.name for i in n.input)]
    target = rng.choice(consumers) if consumers else node.name
    node.input[rng.randrange(len(node.input))] = target


def m_duplicate_name(g, rng):
    if len(g.node) > 1:
        a, b = rng.sample(list(g.node), 2)
        a.name = b.name


def m_rename(g, rng):
    node = _pick(rng, g.node)
    if node:
        node.name = rng.choice(["", "a:1", "^x", "x/", "/", "é", "n" * 300, "with space", "input"])


def m_change_op(g, rng):
    node = _pick(rng, g.node)
    if node:
        node.op = rng.choice(OP_POOL)


def m_remove_node(g, rng):
    if g.node:
        del g.node[rng.randrange(len(g.node))]


def m_device(g, rng):
    node = _pick(rng, g.node)
    if node:
        node.device = rng.choice(["/gpu:0", "/job:a/task:-1", "garbage", "/device:TPU:99", ""])


def m_library(g, rng):
    """A call to a function: undefined, or defined with a broken body."""
    fn = g.library.function.add()
    fn.signature.name = "fuzz_fn"
    arg = fn.signature.input_arg.add()
    arg.name, arg.type = "x", 1
    out = fn.signature.output_arg.add()
    out.name, out.type = "y", 1
    fn.ret["y"] = rng.choice(["x", "missing:0", "x:out:0"])
    node = g.node.add()
    node.name = "fuzz_call"
    node.op = rng.choice(["fuzz_fn", "undefined_fn", "PartitionedCall"])
    node.input.append(rng.choice(g.node).name)
    if node.op == "PartitionedCall":
        node.attr["f"].func.name = rng.choice(["fuzz_fn", "undefined_fn"])
        node.attr["Tin"].list.type.append(1)
        node.attr["Tout"].list.type.append(1)


def m_empty(g, rng):
    del g.node[:]


def m_loop(g, rng):
    """A NextIteration back edge (legal) or a bare Merge/NextIteration pair."""
    node = _pick(rng, g.node, lambda n: n.input)
    if not node:
        return
    merge = g.node.add()
    merge.name, merge.op = "fuzz_merge", "Merge"
    merge.attr["T"].type = 1
    merge.attr["N"].i = 2
    nxt = g.node.add()
    nxt.name, nxt.op = "fuzz_next", "NextIteration"
    nxt.attr["T"].type = 1
    merge.input.extend([node.input[0], "fuzz_next"])
    nxt.input.append(rng.choice(["fuzz_merge", node.name]))


MUTATIONS = [
    m_drop_attr, m_retype_attr, m_add_attr, m_const_dtype, m_const_shape, m_const_content,
    m_const_clear, m_const_replace, m_const_replace, m_rewire, m_rewire, m_add_input,
    m_drop_input, m_swap_inputs, m_cycle, m_duplicate_name, m_rename, m_change_op,
    m_change_op, m_remove_node, m_device, m_library, m_empty, m_loop,
    m_const_reshape_valid, m_const_reshape_valid, m_const_reshape_valid,
    m_const_recast_valid, m_const_recast_valid, m_const_recast_valid,
]


def _byte_damage(data, rng):
    data = bytearray(data)
    choice = rng.randrange(3)
    if choice == 0 and data:
        return bytes(data[: rng.randrange(len(data))])
    if choice == 1 and data:
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    at = rng.randrange(len(data) + 1)
    return bytes(data[:at]) + struct.pack("<Q", rng.getrandbits(64)) + bytes(data[at:])


def make_case(seeds, seed, index, transforms=None):
    """Case `index` of corpus `seed`: deterministic given the seed graphs and transform names."""
    transforms = transforms or TRANSFORMS
    rng = random.Random(f"leangraph-fuzz:{seed}:{index}")
    name = rng.choice(sorted(seeds))
    graph = _graph_pb2().GraphDef()
    graph.ParseFromString(seeds[name])
    names = [n.name for n in graph.node]
    applied = [name]
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 5])):
        mutation = rng.choice(MUTATIONS)
        mutation(graph, rng)
        applied.append(mutation.__name__)
    data = graph.SerializeToString()
    if rng.random() < 0.05:
        data = _byte_damage(data, rng)
        applied.append("byte_damage")
    steps = [rng.choice(transforms if rng.random() < 0.85 else HOSTILE_STEPS)
             for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    endpoint_mode = rng.random()
    if endpoint_mode < 0.25:
        inputs = outputs = None  # the Python layer's defaults
    else:
        placeholders = [n.name for n in graph.node if n.op == "Placeholder"]
        inputs = placeholders or names[:1]
        outputs = [names[-1]] if names else []
        if endpoint_mode > 0.9:
            outputs = [rng.choice(["missing", names[0] + ":7", "^" + names[-1], ""])]
    return Case(seed, index, data, " ".join(steps), inputs, outputs, applied)


# ---- the harness ----

def available_transforms():
    """TRANSFORMS less the leangraph ones not built into this native module.

    An unknown name is refused before the graph is looked at, so a case that
    names one would test nothing.
    """
    import leangraph

    known = {t.name for t in leangraph.list_transforms()}
    return [t for t in TRANSFORMS if t.split("(")[0] in known]


@dataclasses.dataclass
class Report:
    ran: int = 0
    refused: int = 0  # a leangraph error: the wanted outcome for bad input
    accepted: int = 0  # transformed without error
    unexpected: list = dataclasses.field(default_factory=list)  # other Python exceptions
    deaths: list = dataclasses.field(default_factory=list)  # (case, signal or "hang")
    seconds: float = 0.0

    def add(self, other):
        """Counts another batch's report into this one."""
        self.ran += other.ran
        self.refused += other.refused
        self.accepted += other.accepted
        self.unexpected += other.unexpected
        self.deaths += other.deaths


def drive(chunks, run_chunk, jobs, describe, rebuild, every=1):
    """Runs `chunks` through run_chunk(chunk) -> (cases, Report) on `jobs` threads (each a
    batch of worker processes), adds their reports into one, and prints each death (with
    the command that rebuilds its case: rebuild(case)) and each unexpected exception as it
    comes, and a progress line every `every` chunks. Returns (Report, the cases run,
    seconds)."""
    import concurrent.futures

    total, ran = Report(), []
    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for done, (cases, report) in enumerate(pool.map(run_chunk, chunks), 1):
            ran += cases
            total.add(report)
            for case, how in report.deaths:
                print(f"DEATH ({how}): {describe(case)}", flush=True)
                print(f"  rebuild: {rebuild(case)}", flush=True)
            for case, what in report.unexpected:
                print(f"UNEXPECTED {what}: {describe(case)}", flush=True)
            if done % every == 0 or done == len(chunks):
                print(f"[{time.monotonic() - began:7.0f}s] {total.ran} cases, "
                      f"{len(total.deaths)} deaths, {total.refused} refused, "
                      f"{total.accepted} accepted, {len(total.unexpected)} unexpected",
                      flush=True)
    return total, ran, time.monotonic() - began


def _tensorflow_alone(case):
    """TF's own transform_graph entry point, without leangraph's checks (for comparison)."""
    from tensorflow.python.util import _pywrap_transform_graph

    from leangraph import graphs

    inputs, outputs = case.inputs, case.outputs
    if inputs is None:
        graph = graphs.load_graph(case.graph)
        inputs, outputs = graphs.default_inputs(graph), graphs.default_outputs(graph)
    _pywrap_transform_graph.TransformGraphWithStringInputs(
        case.graph, ",".join(inputs).encode(), ",".join(outputs).encode(),
        case.transforms.encode())


def _child_main(path, tensorflow_alone=False):
    """Runs the pickled cases in order, announcing each before it starts."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    dump_stacks_on_signal()
    import leangraph

    with open(path, "rb") as handle:
        cases = pickle.load(handle)
    out = sys.stdout
    for case in cases:
        out.write(f"start {case.index}\n")
        out.flush()
        try:
            if tensorflow_alone:
                _tensorflow_alone(case)
            else:
                leangraph.transform(case.graph, case.transforms, case.inputs, case.outputs)
            outcome = "ok"
        except (leangraph.LeangraphError, RuntimeError) if tensorflow_alone else leangraph.LeangraphError:
            outcome = "refused"
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            outcome = "unexpected " + repr(exc)[:200].replace("\n", " ")
        out.write(f"done {case.index} {outcome}\n")
        out.flush()


def _lines(child):
    with child.stdout:
        yield from child.stdout


class _watchdog:
    """Kills a child that has been silent (stuck in one case) for `limit` seconds."""

    def __init__(self, child, limit):
        import threading

        self.child, self.limit, self.fired = child, limit, False
        self.last = time.monotonic()
        self.done = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def touch(self):
        self.last = time.monotonic()

    def stop(self):
        self.done.set()

    def _watch(self):
        import signal

        while not self.done.wait(1.0):
            if time.monotonic() - self.last > self.limit:
                self.fired = True
                # The child's Python stacks first (dump_stacks_on_signal), then the kill.
                self.child.send_signal(signal.SIGUSR1)
                time.sleep(2.0)
                self.child.kill()
                return


def dump_stacks_on_signal():
    """In a fuzz child: SIGUSR1 writes every thread's Python stack to stderr, which the
    watchdog sends before it kills a silent child, so a hang says where it hung."""
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)


def _tail(handle, lines=25):
    handle.seek(0)
    text = handle.read().decode("utf-8", "replace").strip().splitlines()
    return "\n    ".join(text[-lines:])


def run_batch(cases, timeout_per_case=60.0, report=None, python=sys.executable,
              tensorflow_alone=False, script=__file__):
    """Runs cases in child processes; a death skips the culprit and resumes after it.

    script: the module whose `--child FILE` runs the pickled cases (this one's
    transforms; int8_fuzz_cases.py's int8 graphs through every entry point)."""
    report = report or Report()
    by_index = {c.index: c for c in cases}
    pending = list(cases)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.monotonic()
    while pending:
        with tempfile.NamedTemporaryFile("wb", suffix=".pkl", delete=False) as handle:
            pickle.dump(pending, handle)
            path = handle.name
        stderr = tempfile.TemporaryFile()
        try:
            child = subprocess.Popen(
                [python, os.path.abspath(script),
                 "--child-tensorflow-alone" if tensorflow_alone else "--child", path],
                stdout=subprocess.PIPE, stderr=stderr, env=env, text=True,
            )
            current, finished = None, set()
            hung = _watchdog(child, timeout_per_case)
            for line in _lines(child):
                hung.touch()
                kind, _, rest = line.rstrip("\n").partition(" ")
                if kind == "start":
                    current = int(rest)
                elif kind == "done":
                    index, _, outcome = rest.partition(" ")
                    finished.add(int(index))
                    current = None
                    report.ran += 1
                    if outcome == "ok":
                        report.accepted += 1
                    elif outcome == "refused":
                        report.refused += 1
                    else:
                        report.unexpected.append((by_index[int(index)], outcome))
            code = child.wait()
            hung.stop()
        finally:
            os.unlink(path)
        remaining = [c for c in pending if c.index not in finished]
        if code == 0 and not remaining:
            stderr.close()
            break
        if current is None:
            if not remaining:
                break
            # Died before its first case (import failure): not a finding about a case.
            raise RuntimeError(f"fuzz child failed to start (exit {code}): {_tail(stderr, 5)}")
        report.ran += 1
        how = f"hang; the child's stacks:\n    {_tail(stderr)}" if hung.fired else code
        stderr.close()
        report.deaths.append((by_index[current], how))
        pending = [c for c in remaining if c.index != current]
    report.seconds += time.monotonic() - start
    return report


def describe(case):
    return (f"case seed={case.seed} index={case.index} mutations={case.mutations} "
            f"transforms={case.transforms!r} inputs={case.inputs} outputs={case.outputs}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("--child", "--child-tensorflow-alone"):
        _child_main(sys.argv[2], tensorflow_alone=sys.argv[1] == "--child-tensorflow-alone")
    elif len(sys.argv) == 4 and sys.argv[1] == "--show":
        print(describe(make_case(seed_graphs(), int(sys.argv[2]), int(sys.argv[3]), available_transforms())))
    else:
        sys.exit("usage: fuzz_cases.py --show SEED INDEX   (or --child FILE, internal)")
