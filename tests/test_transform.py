"""leangraph.transform() against TensorFlow's own transform_graph, and its failure modes."""

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from tensorflow.core.framework import graph_pb2
from tensorflow.python.util import _pywrap_transform_graph

import graph_builders
import leangraph
from leangraph import graphs

DEPLOY_RECIPE = (
    "strip_unused_nodes(type=float) remove_nodes(op=Identity, op=CheckNumerics) "
    "fold_constants(ignore_errors=true) fold_batch_norms fold_old_batch_norms"
)

# Every transform the issue names, with parameters that make it do something.
TRANSFORMS = [
    "strip_unused_nodes(type=float)",
    "remove_nodes(op=Identity, op=CheckNumerics)",
    "fold_constants(ignore_errors=true)",
    "fold_batch_norms",
    "fold_old_batch_norms",
    "remove_control_dependencies",
    "quantize_weights(minimum_size=16)",
    "round_weights(num_steps=16)",
    "sort_by_execution_order",
    "merge_duplicate_nodes",
    "remove_device",
    "add_default_attributes",
    "fuse_pad_and_conv",
    "flatten_atrous_conv",
    "obfuscate_names",
    "rename_op(old_op_name=Relu, new_op_name=Relu6)",
    DEPLOY_RECIPE,
]

GRAPHS = ["conv_bn_graph", "keras_cnn_graph", "keras_mlp_graph"]


def oracle(graph_def, inputs, outputs, transforms):
    data = _pywrap_transform_graph.TransformGraphWithStringInputs(
        graph_def.SerializeToString(),
        ",".join(inputs).encode(),
        ",".join(outputs).encode(),
        transforms.encode(),
    )
    result = graph_pb2.GraphDef()
    result.ParseFromString(data)
    return result


def endpoints(graph_def):
    return graphs.default_inputs(graph_def), graphs.default_outputs(graph_def)


@pytest.mark.parametrize("graph_name", GRAPHS)
@pytest.mark.parametrize("transforms", TRANSFORMS)
def test_equals_tensorflow_oracle(request, graph_name, transforms):
    graph_def = request.getfixturevalue(graph_name)
    inputs, outputs = endpoints(graph_def)
    expected = oracle(graph_def, inputs, outputs, transforms)
    actual = leangraph.transform(graph_def, transforms, inputs, outputs)
    assert isinstance(actual, graph_pb2.GraphDef)
    assert [n.name for n in actual.node] == [n.name for n in expected.node]
    assert actual == expected


def test_transforms_change_the_graph(conv_bn_graph):
    """The differential test above would pass for a no-op runner; this one would not."""
    inputs, outputs = endpoints(conv_bn_graph)
    ops = lambda g: [n.op for n in g.node]  # noqa: E731
    stripped = leangraph.transform(conv_bn_graph, "remove_nodes(op=Identity, op=CheckNumerics)", inputs, outputs)
    assert "Identity" in ops(conv_bn_graph) and "Identity" not in ops(stripped)
    assert "CheckNumerics" not in ops(stripped)
    folded = leangraph.transform(conv_bn_graph, DEPLOY_RECIPE, inputs, outputs)
    # fold_batch_norms merges the per-channel Mul into the convolution's weights.
    assert "Mul" in ops(conv_bn_graph) and "Mul" not in ops(folded)
    assert len(folded.node) < len(conv_bn_graph.node)


def test_recipe_keeps_the_function(conv_bn_graph, rng):
    inputs, outputs = endpoints(conv_bn_graph)
    folded = leangraph.transform(conv_bn_graph, DEPLOY_RECIPE, inputs, outputs)
    x = rng.normal(size=(1, 16, 16, 3)).astype(np.float32)
    (before,) = graph_builders.run_graph(conv_bn_graph, {"input:0": x}, outputs)
    (after,) = graph_builders.run_graph(folded, {"input:0": x}, outputs)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)


def test_list_of_strings_equals_one_string(keras_cnn_graph):
    steps = ["fold_constants(ignore_errors=true)", "fold_batch_norms", "sort_by_execution_order"]
    assert leangraph.transform(keras_cnn_graph, steps) == leangraph.transform(keras_cnn_graph, " ".join(steps))


def test_default_endpoints_are_placeholders_and_sinks(conv_bn_graph):
    assert graphs.default_inputs(conv_bn_graph) == ["input"]
    assert graphs.default_outputs(conv_bn_graph) == ["output"]
    inputs, outputs = endpoints(conv_bn_graph)
    explicit = leangraph.transform(conv_bn_graph, DEPLOY_RECIPE, inputs, outputs)
    assert leangraph.transform(conv_bn_graph, DEPLOY_RECIPE) == explicit


def test_graph_from_bytes_and_paths(conv_bn_graph, tmp_path):
    pb = tmp_path / "g.pb"
    pbtxt = tmp_path / "g.pbtxt"
    leangraph.save_graph(conv_bn_graph, pb)
    leangraph.save_graph(conv_bn_graph, pbtxt)
    assert pbtxt.read_text().lstrip().startswith("node")
    expected = leangraph.transform(conv_bn_graph, "fold_constants")
    for source in (conv_bn_graph.SerializeToString(), pb, str(pb), pbtxt):
        assert leangraph.transform(source, "fold_constants") == expected


def test_saved_graphs_leave_default_attributes_out_and_read_back_whole(conv_bn_graph, tmp_path):
    conv = next(n for n in conv_bn_graph.node if n.op == "Conv2D")
    assert "data_format" in conv.attr and "dilations" in conv.attr
    for name in ("g.pb", "g.pbtxt"):
        path = tmp_path / name
        leangraph.save_graph(conv_bn_graph, path)
        raw = graph_pb2.GraphDef()
        if name.endswith(".pb"):
            raw.ParseFromString(path.read_bytes())
        else:
            from google.protobuf import text_format
            text_format.Merge(path.read_text(), raw)
        stored = next(n for n in raw.node if n.name == conv.name)
        # NHWC and unit dilations are Conv2D's defaults: not in the file ...
        assert "data_format" not in stored.attr and "dilations" not in stored.attr
        assert stored.attr["strides"] == conv.attr["strides"]
        # ... and back when leangraph reads it; TensorFlow imports it as it is.
        assert leangraph.load_graph(path) == conv_bn_graph
        import tensorflow as tf

        with tf.Graph().as_default():
            tf.compat.v1.import_graph_def(raw, name="")
    assert len((tmp_path / "g.pb").read_bytes()) < conv_bn_graph.ByteSize()


# The 29 names TF 2.21 registers (tensorflow/tools/graph_transforms).
TF_TRANSFORMS = """
add_default_attributes backport_concatv2 backport_tensor_array_v3 flatten_atrous_conv
fold_batch_norms fold_constants fold_old_batch_norms freeze_requantization_ranges
fuse_pad_and_conv fuse_resize_and_conv fuse_resize_pad_and_conv inline_partitionedcall
insert_logging merge_duplicate_nodes obfuscate_names quantize_nodes quantize_weights
remove_attribute remove_control_dependencies remove_device remove_nodes rename_attribute
rename_node rename_op round_weights set_device sort_by_execution_order sparsify_gather
strip_unused_nodes
""".split()


def _oracle_knows(name):
    empty = graph_pb2.GraphDef().SerializeToString()
    try:
        _pywrap_transform_graph.TransformGraphWithStringInputs(
            empty, b"", b"", f"{name}(ignore_errors=true)".encode()
        )
    except Exception as exc:
        return "not recognized" not in str(exc)
    return True


def test_list_transforms_has_every_tensorflow_name():
    infos = leangraph.list_transforms()
    names = [t.name for t in infos]
    assert len(TF_TRANSFORMS) == 29
    assert set(TF_TRANSFORMS) <= set(names)
    assert len(names) == len(set(names))
    assert not _oracle_knows("no_such_transform")
    for info in infos:
        if info.origin == "tensorflow":
            assert _oracle_knows(info.name), info.name
    info = {t.name: t for t in infos}
    assert info["fold_constants"].origin == "tensorflow"
    assert "max_constant_size_in_bytes" in info["fold_constants"].params


def test_parser_matches_tensorflow_parser():
    from leangraph import _native

    for text in TRANSFORMS + ["a(b=\"1, 2\", b=3) c d(e=f)"]:
        assert _native.parse_transforms(text) == _native.tf_parse_transforms(text)


# --- bad input: always an exception naming the problem, never a dead process ---


def test_random_bytes_raise(rng):
    junk = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(leangraph.GraphError, match="not a serialized GraphDef"):
        leangraph.transform(junk, "fold_constants", inputs=["a"], outputs=["b"])


def test_random_bytes_raise_with_default_endpoints(rng):
    junk = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(leangraph.GraphError, match="not a serialized GraphDef"):
        leangraph.transform(junk, "fold_constants")


def test_truncated_protobuf_raises(keras_cnn_graph):
    data = keras_cnn_graph.SerializeToString()
    with pytest.raises(leangraph.GraphError, match="corrupt or truncated"):
        leangraph.transform(data[: len(data) // 2 + 3], "fold_constants", inputs=["input"], outputs=["Identity"])


def test_unknown_transform_lists_closest_names(conv_bn_graph):
    with pytest.raises(leangraph.TransformError, match="unknown transform 'fold_batchnorms'") as info:
        leangraph.transform(conv_bn_graph, "fold_constants fold_batchnorms")
    assert "fold_batch_norms" in str(info.value)


@pytest.mark.parametrize(
    "text", ["fold_constants(", "fold_constants(ignore_errors)", 'rename_op(old_op_name="Relu', "a(b=1 c=2)"]
)
def test_malformed_parameters_raise(conv_bn_graph, text):
    with pytest.raises(leangraph.TransformError, match="malformed transform string at column"):
        leangraph.transform(conv_bn_graph, text)


def test_output_not_in_graph_raises(conv_bn_graph):
    with pytest.raises(leangraph.TransformError, match="output 'no_such_node' is not a node of the graph"):
        leangraph.transform(conv_bn_graph, "strip_unused_nodes", inputs=["input"], outputs=["no_such_node"])


def test_input_not_in_graph_raises(conv_bn_graph):
    with pytest.raises(leangraph.TransformError, match="input 'nope:0' is not a node"):
        leangraph.transform(conv_bn_graph, "fold_constants", inputs=["nope:0"], outputs=["output"])


def test_tensorflow_error_message_is_passed_through(conv_bn_graph):
    with pytest.raises(leangraph.TransformError, match=r"step 1 \(rename_node\)"):
        leangraph.transform(conv_bn_graph, "rename_node(old_node_name=a, old_node_name=b)")


def test_wrong_argument_types_raise_type_error(conv_bn_graph):
    with pytest.raises(TypeError):
        leangraph.transform(12, "fold_constants")
    with pytest.raises(TypeError):
        leangraph.transform(conv_bn_graph, ["fold_constants", 3])


def test_gil_is_released_during_native_work(keras_cnn_graph):
    """A counting thread advances while a slow transform runs in native code."""
    big = graph_builders.freeze_keras(_wide_model(), (1, 64, 64, 3))
    count = 0
    stop = threading.Event()

    def spin():
        nonlocal count
        while not stop.is_set():
            count += 1

    worker = threading.Thread(target=spin)
    data = big.SerializeToString()
    from leangraph import _native

    worker.start()
    try:
        time.sleep(0.05)
        before = count
        start = time.perf_counter()
        # Native calls back to back until long enough to tell (a fast machine runs one
        # in 0.14 s).
        calls = 0
        while time.perf_counter() - start < 0.3:
            calls += 1
            _native.transform(data, "fold_constants " + "round_weights(num_steps=8) sort_by_execution_order " * 12, ["input"], ["Identity"])
        elapsed = time.perf_counter() - start
        during = count - before
    finally:
        stop.set()
        worker.join()
    assert elapsed > 0.2, "the transform was too quick to tell anything"
    # With the GIL held for the whole call the counter could only move during
    # the 5 ms switch intervals before and after each call.
    assert during > 20000 * calls, f"counter advanced only {during} times in {elapsed:.2f}s"


def _wide_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 3))
    x = inputs
    for width in (256, 256, 256):
        x = keras.layers.Conv2D(width, 3, padding="same")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


# --- the CLI runs transform_graph's recipes verbatim ---


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "leangraph", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_cli_runs_the_deploy_recipe_verbatim(conv_bn_graph, tmp_path):
    src = tmp_path / "in.pb"
    out = tmp_path / "out.pbtxt"
    leangraph.save_graph(conv_bn_graph, src)
    result = _cli(
        "transform", f"--in_graph={src}", f"--out_graph={out}", "--inputs=input", "--outputs=output",
        '--transforms=strip_unused_nodes(type=float, shape="1,16,16,3") remove_nodes(op=Identity, op=CheckNumerics) '
        "fold_constants(ignore_errors=true) fold_batch_norms fold_old_batch_norms",
        "--output_as_text",
    )
    assert result.returncode == 0, result.stderr
    written = leangraph.load_graph(out)
    expected = oracle(
        conv_bn_graph, ["input"], ["output"],
        'strip_unused_nodes(type=float, shape="1,16,16,3") remove_nodes(op=Identity, op=CheckNumerics) '
        "fold_constants(ignore_errors=true) fold_batch_norms fold_old_batch_norms",
    )
    assert written == expected
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_refuses_to_overwrite_input(conv_bn_graph, tmp_path):
    src = tmp_path / "in.pb"
    leangraph.save_graph(conv_bn_graph, src)
    before = src.read_bytes()
    result = _cli("transform", f"--in_graph={src}", f"--out_graph={src}", "--transforms=fold_constants")
    assert result.returncode == 1
    assert "refusing to overwrite the input" in result.stderr
    assert src.read_bytes() == before


@pytest.mark.slow
def test_cli_reports_unknown_transform(conv_bn_graph, tmp_path):
    src = tmp_path / "in.pb"
    leangraph.save_graph(conv_bn_graph, src)
    result = _cli("transform", f"--in_graph={src}", f"--out_graph={tmp_path / 'o.pb'}", "--transforms=fold_constantz")
    assert result.returncode == 1
    assert "unknown transform 'fold_constantz'" in result.stderr
    assert not (tmp_path / "o.pb").exists()


def test_malformed_graph_is_a_graph_error(conv_bn_graph):
    broken = graph_pb2.GraphDef()
    broken.CopyFrom(conv_bn_graph)
    broken.node[-1].input.append("^ghost")
    with pytest.raises(leangraph.GraphError, match=r"'\^ghost' names a node that does not exist"):
        leangraph.transform(broken, "fold_constants", ["input"], ["output"])
    from leangraph import _native

    with pytest.raises(leangraph.GraphError, match=r"'\^ghost' names a node that does not exist"):
        _native.check_graph(broken.SerializeToString())


def _split_steps(text):
    """The steps of a transform string, each as its own string."""
    steps, current, depth, quoted = [], "", 0, False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        if char.isspace() and depth == 0 and not quoted:
            if current:
                steps.append(current)
            current = ""
        else:
            current += char
    return steps + [current] if current else steps


MIXED_CHAINS = [
    "deploy",
    "tf-deploy",
    # Own transforms after TensorFlow's and the reverse, and an own step
    # whose errors are ignored (the runner then keeps a copy to fall back to).
    "fold_constants(ignore_errors=true) fuse_bias_add(ignore_errors=true) strip_unused_nodes "
    "remove_identity_chains fold_keras_batch_norms sort_by_execution_order strip_freeze_artifacts",
]


@pytest.mark.parametrize("graph_name", ["conv_bn_graph", "keras_cnn_graph", "keras_modern_blocks_graph"])
@pytest.mark.parametrize("chain", MIXED_CHAINS)
def test_chain_in_one_call_equals_one_call_per_step(request, graph_name, chain):
    """One native call per chain (parsed and checked once, the graph moved
    between steps) gives exactly what one call per step gives, where every
    step's input is parsed, completed with defaults and checked afresh. A
    step-wise run also proves that each own transform's output passes the
    graph checks, which the chained run relies on to skip them."""
    if graph_name == "keras_modern_blocks_graph":
        graph_def = graph_builders.keras_modern_blocks_graph()
    else:
        graph_def = request.getfixturevalue(graph_name)
    text = leangraph.recipe(chain, graph_def) if chain in leangraph.RECIPES else chain
    inputs, outputs = endpoints(graph_def)
    chained = leangraph.transform(graph_def, text, inputs, outputs)
    stepwise = graph_def
    steps = _split_steps(text)
    assert len(steps) == len(leangraph.parse_transforms(text))
    for step in steps:
        stepwise = leangraph.transform(stepwise, step, inputs, outputs)
    assert [n.name for n in chained.node] == [n.name for n in stepwise.node]
    assert chained == stepwise
    assert chained.SerializeToString(deterministic=True) == stepwise.SerializeToString(
        deterministic=True)


def test_recipes_give_the_output_they_gave_before_the_runner_was_sped_up(conv_bn_graph):
    """Digests of the recipes' output on a fixed graph, taken with the runner
    that parsed, checked and copied the graph at every step."""
    import hashlib

    def digest(graph_def):
        return hashlib.sha256(graph_def.SerializeToString(deterministic=True)).hexdigest()

    assert digest(conv_bn_graph).startswith("7c620332e44b"), "the test graph itself changed"
    expected = {
        "deploy": "daca79f3f465c50e5ec873880c3c1d8f682468063137f1d894fdb9d5f11d3455",
        "tf-deploy": "20b592e2bcfbafd8d629135f7d6bdad2e602ca0b3aada037122522d9ce9438e3",
    }
    for name, want in expected.items():
        assert digest(leangraph.transform(conv_bn_graph, leangraph.recipe(name, conv_bn_graph))) == want, name


def test_transform_takes_bytes_only_as_bytes(conv_bn_graph):
    """The native entry point reads the caller's bytes object in place; other
    types are refused with a TypeError rather than misread."""
    from leangraph._tfcheck import load_native

    native = load_native()
    data = conv_bn_graph.SerializeToString()
    out = graph_pb2.GraphDef.FromString(native.transform(data, "fuse_bias_add", ["input"], ["output"]))
    assert out == leangraph.transform(conv_bn_graph, "fuse_bias_add", ["input"], ["output"])
    with pytest.raises(TypeError):
        native.transform(bytearray(data), "fuse_bias_add", ["input"], ["output"])


def test_ignored_failure_of_an_in_place_step_leaves_the_graph_as_it_was(conv_bn_graph):
    """remove_identity_chains rewrites the graph where it lies; when it fails
    and its errors are ignored, the next step sees the graph from before."""
    bad = "remove_identity_chains(check_numerics=maybe"
    with pytest.raises(leangraph.TransformError, match="check_numerics"):
        leangraph.transform(conv_bn_graph, bad + ")", ["input"], ["output"])
    kept = leangraph.transform(conv_bn_graph, bad + ", ignore_errors=true) sort_by_execution_order",
                               ["input"], ["output"])
    expected = leangraph.transform(conv_bn_graph, "sort_by_execution_order", ["input"], ["output"])
    assert "ident" in {n.name for n in kept.node}
    assert kept == expected
