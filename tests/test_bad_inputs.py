"""A catalogue of bad inputs: each is refused with a leangraph error naming the problem.

None of these may abort the process. Several are shapes of input on which
TensorFlow's own transforms CHECK-fail (marked "aborts TF"); leangraph's
native graph check must refuse them first.
"""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import graph_pb2, types_pb2

import leangraph
from leangraph import cli

INPUTS, OUTPUTS = ["input"], ["output"]


@pytest.fixture
def graph(conv_bn_graph):
    """A private copy of the Conv2D + BatchNorm graph, free to mutate."""
    copy = graph_pb2.GraphDef()
    copy.CopyFrom(conv_bn_graph)
    return copy


def node(graph_def, name):
    return next(n for n in graph_def.node if n.name == name)


def first(graph_def, op):
    return next(n for n in graph_def.node if n.op == op)


def const_input(graph_def, consumer, index):
    return node(graph_def, node(graph_def, consumer).input[index].split(":")[0])


def refuses(graph_def, transforms="fold_batch_norms", *fragments, error=leangraph.GraphError,
            inputs=INPUTS, outputs=OUTPUTS):
    with pytest.raises(error) as info:
        leangraph.transform(graph_def, transforms, inputs, outputs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ---- not a graph at all ----

def test_random_bytes(rng):
    data = rng.bytes(4096)
    with pytest.raises(leangraph.GraphError, match="not a serialized GraphDef"):
        leangraph.transform(data, "fold_constants")


def test_truncated_protobuf(graph):
    data = graph.SerializeToString()
    with pytest.raises(leangraph.GraphError, match="corrupt or truncated"):
        leangraph.transform(data[: len(data) // 3], "fold_constants", INPUTS, OUTPUTS)


def test_empty_graph_is_an_error():
    with pytest.raises(leangraph.GraphError, match="no nodes"):
        leangraph.transform(b"", "fold_constants")


def test_empty_graph_with_outputs_names_the_output():
    with pytest.raises(leangraph.TransformError, match="output 'logits' is not a node"):
        leangraph.transform(graph_pb2.GraphDef(), "fold_constants", [], ["logits"])


# ---- structure ----

def test_dangling_input(graph):
    node(graph, "relu1").input[0] = "vanished"
    refuses(graph, "fold_batch_norms", "'relu1'", "'vanished'", "does not exist")


def test_input_port_beyond_the_outputs(graph):
    node(graph, "relu1").input[0] = "bn1:9"
    refuses(graph, "fold_old_batch_norms", "'relu1'", "asks for output 9", "'bn1'")


def test_malformed_input_port(graph):
    node(graph, "relu1").input[0] = "bn1:one"
    refuses(graph, "fold_old_batch_norms", "'relu1'", "malformed input 'bn1:one'")


def test_duplicate_node_names(graph):
    node(graph, "relu1").name = "bn1"
    refuses(graph, "fold_constants", "'bn1'", "duplicate node name")


def test_cycle(graph):
    node(graph, "conv1").input.append("^relu1")
    refuses(graph, "sort_by_execution_order", "cycle")


def test_unknown_op(graph):
    node(graph, "relu1").op = "Relu7"
    refuses(graph, "fold_constants", "'relu1'", "unknown op 'Relu7'")


def test_call_of_a_function_missing_from_the_library(graph):
    node(graph, "relu1").op = "my_missing_function"
    refuses(graph, "inline_partitionedcall", "'relu1'", "unknown op 'my_missing_function'")


def test_wrong_number_of_inputs(graph):
    node(graph, "relu1").input.append("input")
    refuses(graph, "fold_constants", "'relu1'", "inputs")


def test_edge_of_the_wrong_dtype(graph):
    node(graph, "relu1").attr["T"].type = types_pb2.DT_INT32
    refuses(graph, "fold_constants", "'relu1'", "float", "int32")


# ---- attributes ----

def test_missing_required_attribute(graph):
    del node(graph, "conv1").attr["strides"]
    refuses(graph, "fuse_pad_and_conv", "'conv1'", "strides")


def test_missing_attribute_that_has_a_default_is_filled_in(graph):
    """TF's transforms copy attributes with CopyNodeAttr, which aborts on a missing one;
    the runner fills defaulted attributes in first, as TF's graph import does."""
    complete = leangraph.transform(graph, "fold_batch_norms", INPUTS, OUTPUTS)
    del node(graph, "conv3").attr["data_format"]
    result = leangraph.transform(graph, "fold_batch_norms", INPUTS, OUTPUTS)
    assert result == complete


def test_renamed_op_lacking_the_new_ops_attributes(graph):  # aborts TF
    """After rename_op Conv2D->MatMul, quantize_nodes would copy a missing transpose_a."""
    message = refuses(graph, "rename_op(old_op_name=Conv2D, new_op_name=MatMul) quantize_nodes")
    assert "step 2 (quantize_nodes)" in message and "(MatMul)" in message


def test_attribute_of_the_wrong_type(graph):
    node(graph, "conv1").attr["padding"].i = 1
    refuses(graph, "fuse_pad_and_conv", "'conv1'", "padding")


def test_attribute_outside_its_allowed_values(graph):
    node(graph, "conv1").attr["padding"].s = b"SOMETIMES"
    refuses(graph, "fuse_pad_and_conv", "'conv1'", "SOMETIMES")


# ---- Const values ----

def test_const_without_value(graph):  # aborts TF
    del const_input(graph, "bn_mul", 1).attr["value"]
    refuses(graph, "fold_batch_norms", "has no 'value' tensor")


def test_const_dtype_mismatch(graph):
    const = const_input(graph, "bn_mul", 1)
    const.attr["value"].tensor.dtype = types_pb2.DT_INT32
    refuses(graph, "fold_batch_norms", f"'{const.name}'", "DT_INT32", "DT_FLOAT")


def test_const_shape_mismatch(graph):
    const = const_input(graph, "bn_mul", 1)
    const.attr["value"].tensor.tensor_shape.dim[0].size = 5
    refuses(graph, "fold_batch_norms", f"'{const.name}'", "malformed")


def test_truncated_tensor_content(graph):  # aborts TF
    const = const_input(graph, "conv3", 1)
    tensor = const.attr["value"].tensor
    tensor.tensor_content = tensor.tensor_content[:-3]
    refuses(graph, "fold_batch_norms", f"'{const.name}'", "malformed")


def test_negative_dimension(graph):
    const = const_input(graph, "bn_mul", 1)
    const.attr["value"].tensor.tensor_shape.dim[0].size = -4
    refuses(graph, "round_weights", f"'{const.name}'", "negative dimension")


def test_const_claiming_more_than_two_gib(graph):
    """A graph over protobuf's 2 GiB limit, simulated: a splat Const claims 16 GiB."""
    const = const_input(graph, "bn_mul", 1)
    tensor = const.attr["value"].tensor
    tensor.ClearField("tensor_content")
    tensor.float_val.append(1.0)  # one value repeated over the whole shape
    tensor.tensor_shape.dim[0].size = 1 << 32
    refuses(graph, "fold_constants", f"'{const.name}'", "larger than 2048 MiB")


def test_two_dimensional_conv_weight(graph):  # aborts TF
    const = const_input(graph, "conv3", 1)
    value = tf.make_ndarray(const.attr["value"].tensor)
    const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value.reshape(8, 4)))
    refuses(graph, "fold_batch_norms", "'conv3'", f"'{const.name}' of rank 2", "rank 4")


def test_int32_batch_norm_scale(graph):  # aborts TF
    bn = node(graph, "bn1")
    scale = const_input(graph, "bn1", 1)
    scale.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.ones(8, np.int32)))
    scale.attr["dtype"].type = types_pb2.DT_INT32
    refuses(graph, "fold_old_batch_norms", f"'{bn.name}'", "int32", "float")


def test_non_float_weights_in_a_foldable_pattern(graph):  # aborts TF
    """Types agree along every edge, but fold_batch_norms reads the weights as float32."""
    for name in ("conv3", "bn_mul"):
        node(graph, name).attr["T"].type = types_pb2.DT_DOUBLE
    for consumer in ("conv3", "bn_mul"):
        const = const_input(graph, consumer, 1)
        value = tf.make_ndarray(const.attr["value"].tensor).astype(np.float64)
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        const.attr["dtype"].type = types_pb2.DT_DOUBLE
    # Keep the edge into conv3 consistent too: a Cast from the float atrous output.
    cast = graph.node.add(name="to_double", op="Cast", input=[node(graph, "conv3").input[0]])
    cast.attr["SrcT"].type, cast.attr["DstT"].type = types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE
    cast.attr["Truncate"].b = False
    node(graph, "conv3").input[0] = "to_double"
    back = graph.node.add(name="to_float", op="Cast", input=["bn_mul"])
    back.attr["SrcT"].type, back.attr["DstT"].type = types_pb2.DT_DOUBLE, types_pb2.DT_FLOAT
    back.attr["Truncate"].b = False
    node(graph, "bias").input[0] = "to_float"
    refuses(graph, "fold_batch_norms", "'bn_mul'", "double", "float32")


# ---- transform strings and parameters ----

def test_unknown_transform(graph):
    refuses(graph, "fold_batchnorms", "unknown transform 'fold_batchnorms'", "fold_batch_norms",
            error=leangraph.TransformError)


@pytest.mark.parametrize("text", ["fold_constants(", "fold_constants(ignore_errors=)x", 'rename_op(a="b)'])
def test_malformed_parameters(graph, text):
    with pytest.raises(leangraph.TransformError):
        leangraph.transform(graph, text, INPUTS, OUTPUTS)


def test_non_ascii_transform_string(graph):
    with pytest.raises(leangraph.TransformError, match="malformed transform string"):
        leangraph.transform(graph, "\ua6a6\ua6a6", INPUTS, OUTPUTS)


def test_bad_node_name_in_parameters_is_harmless(graph):
    """TF ignores a rename of a node that does not exist: the graph comes back unchanged."""
    result = leangraph.transform(graph, "rename_node(old_node_name=missing, new_node_name=x)",
                                 INPUTS, OUTPUTS)
    assert [n.name for n in result.node] == [n.name for n in graph.node]


def test_rename_onto_an_existing_node(graph):
    refuses(graph, "rename_node(old_node_name=relu1, new_node_name=bn1)", "bn1",
            error=leangraph.TransformError)


# ---- unsafe ops ----

def io_graph(path):
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2], name="input")
        contents = tf.io.read_file(tf.constant(str(path)), name="read")
        tf.identity(x + tf.cast(tf.strings.length(contents), tf.float32), name="output")
        tf.io.write_file(tf.constant(str(path) + ".out"), contents, name="write")
    return g.as_graph_def()


def test_graph_with_write_file_is_refused(tmp_path):
    message = refuses(io_graph(tmp_path / "secret.txt"), "fold_constants", "write (WriteFile)",
                      "read (ReadFile)", "allow_io_ops=True", error=leangraph.GraphError,
                      outputs=["output"])
    assert "ops that can read or write files" in message


def test_read_file_is_folded_when_io_ops_are_allowed(tmp_path):
    """Why io ops are refused by default: fold_constants executes the ReadFile."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"x" * 37)
    result = leangraph.transform(io_graph(secret), "fold_constants", ["input"], ["output"],
                                 allow_io_ops=True)
    assert "ReadFile" not in [n.op for n in result.node]
    folded = [tf.make_ndarray(n.attr["value"].tensor) for n in result.node if n.op == "Const"]
    assert any(np.ndim(v) == 0 and v == 37 for v in folded), folded


def test_unsafe_ops_inside_the_function_library():
    g = tf.Graph()
    with g.as_default():

        @tf.function
        def leak(name):
            return tf.io.read_file(name)

        tf.identity(leak(tf.constant("/etc/hostname")), name="output")
    found = leangraph.find_unsafe_ops(g.as_graph_def())
    assert any(op == "ReadFile" and "/" in name for name, op in found), found
    with pytest.raises(leangraph.GraphError, match="ReadFile"):
        leangraph.require_safe(g.as_graph_def())
    leangraph.require_safe(g.as_graph_def(), allow_io_ops=True)


def test_safe_graph_has_no_unsafe_ops(graph, keras_cnn_graph):
    assert leangraph.find_unsafe_ops(graph) == []
    assert leangraph.find_unsafe_ops(keras_cnn_graph) == []


@pytest.mark.parametrize("op,unsafe", [
    ("ReadFile", True), ("WriteFile", True), ("PyFunc", True), ("EagerPyFunc", True),
    ("SaveV2", True), ("RestoreV2", True), ("MatchingFiles", True), ("TextLineDataset", True),
    ("TFRecordReaderV2", True), ("WriteScalarSummary", True), ("CreateSummaryFileWriter", True),
    ("PrintV2", True), ("DebugIdentityV2", True), ("InitializeTableFromTextFileV2", True),
    ("Conv2D", False), ("MatMul", False), ("Print", False), ("ScalarSummary", False),
    ("FusedBatchNormV3", False), ("StatefulPartitionedCall", False),
])
def test_unsafe_op_classification(op, unsafe):
    from leangraph.safety import is_unsafe_op

    assert is_unsafe_op(op) is unsafe


# ---- files (the `leangraph transform` command) ----

def test_cli_output_equal_to_input(graph, tmp_path, capsys):
    path = tmp_path / "model.pb"
    path.write_bytes(graph.SerializeToString())
    code = cli.main(["transform", "--in_graph", str(path), "--out_graph", str(path),
                     "--transforms", "fold_constants"])
    assert code == 1
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert path.read_bytes() == graph.SerializeToString()


def test_cli_unwritable_output_directory(graph, tmp_path, capsys):
    path = tmp_path / "model.pb"
    path.write_bytes(graph.SerializeToString())
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where the output folder should be")
    out = blocker / "out.pb"
    code = cli.main(["transform", "--in_graph", str(path), "--out_graph", str(out),
                     "--transforms", "fold_constants"])
    assert code == 1
    assert str(blocker) in capsys.readouterr().err
    assert not out.exists()


def read_only_graph(path):
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2], name="input")
        contents = tf.io.read_file(tf.constant(str(path)), name="read")
        tf.identity(x + tf.cast(tf.strings.length(contents), tf.float32), name="output")
    return g.as_graph_def()


def test_benchmark_refuses_io_ops_unless_allowed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"x" * 5)
    graph_def = read_only_graph(secret)
    with pytest.raises(leangraph.GraphError, match=r"read \(ReadFile\)"):
        leangraph.benchmark(graph_def, runs=2, warmup=0)
    with pytest.raises(leangraph.GraphError, match=r"read \(ReadFile\)"):
        leangraph.compare(graph_def, graph_def, runs=2, warmup=0)
    allowed = leangraph.benchmark(graph_def, runs=2, warmup=0, allow_io_ops=True,
                                  measure_overhead=False)
    assert allowed.count == 2


@pytest.mark.slow
def test_bench_binary_refuses_io_ops_unless_allowed(tmp_path):
    from leangraph import bench_cli

    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"x" * 5)
    path = tmp_path / "io.pb"
    path.write_bytes(read_only_graph(secret).SerializeToString())
    refused = subprocess.run([sys.executable, "-c", "import sys; from leangraph.bench_cli import main; "
                              "sys.exit(main())", "--graph", str(path), "--runs", "2"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "read (ReadFile)" in refused.stderr
    assert bench_cli._graph_paths(["--graph=a.pb", "--compare", "b.pb", "--runs", "3"]) == ["a.pb", "b.pb"]


def test_transform_cli_io_ops_flag(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"x" * 5)
    src = tmp_path / "io.pb"
    src.write_bytes(read_only_graph(secret).SerializeToString())
    out = tmp_path / "out.pb"
    args = ["transform", "--in_graph", str(src), "--out_graph", str(out), "--outputs", "output",
            "--transforms", "fold_constants"]
    assert cli.main(args) == 1
    assert "read (ReadFile)" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(args + ["--allow-io-ops"]) == 0
    assert out.exists()


# ---- the error hierarchy ----

def test_graph_and_transform_errors_are_siblings(graph, tmp_path):
    assert not issubclass(leangraph.GraphError, leangraph.TransformError)
    assert not issubclass(leangraph.TransformError, leangraph.GraphError)
    with pytest.raises(leangraph.GraphError) as bad_graph:
        leangraph.transform(b"\x00garbage", "fold_constants", INPUTS, OUTPUTS)
    assert not isinstance(bad_graph.value, leangraph.TransformError)
    with pytest.raises(leangraph.TransformError) as bad_step:
        leangraph.transform(graph, "fold_batchnorms", INPUTS, OUTPUTS)
    assert not isinstance(bad_step.value, leangraph.GraphError)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"x")
    with pytest.raises(leangraph.GraphError) as unsafe:
        leangraph.benchmark(read_only_graph(secret), runs=1, warmup=0)
    assert not isinstance(unsafe.value, leangraph.TransformError)


def test_native_errors_keep_the_status_code(graph):
    with pytest.raises(leangraph.TransformError) as unknown:
        leangraph.transform(graph, "fold_batchnorms", INPUTS, OUTPUTS)
    with pytest.raises(leangraph.GraphError) as cycle:
        g = type(graph)()
        g.CopyFrom(graph)
        node(g, "conv1").input[0] = "relu1"
        leangraph.transform(g, "fold_batch_norms", INPUTS, OUTPUTS)
    for error in (unknown.value, cycle.value):
        assert isinstance(error.code, int) and error.code > 0  # absl: 0 is OK
    assert leangraph.UsageError("x").code is None


def test_bad_arguments_are_usage_errors_and_value_errors(keras_cnn_graph):
    from leangraph.freeze import freeze

    import graph_builders

    with pytest.raises(leangraph.UsageError, match="batch_size"):
        freeze(graph_builders.keras_cnn_model(), batch_size=0)
    with pytest.raises(leangraph.UsageError, match="batch_size"):
        leangraph.evaluate(keras_cnn_graph, np.zeros((2, 24, 24, 3), np.float32), batch_size=0)
    assert issubclass(leangraph.UsageError, ValueError)
    assert issubclass(leangraph.UsageError, leangraph.LeangraphError)


def test_every_cli_error_is_one_line(tmp_path, capsys):
    from leangraph.cli import main

    (tmp_path / "junk.pb").write_bytes(b"\x00\x01not a graph")
    cases = [
        ["optimize", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "o1"), "--no-progress"],
        ["optimize", str(tmp_path / "junk.pb"), "-o", str(tmp_path / "o2"), "--no-progress"],
        ["freeze", str(tmp_path / "junk.pb"), "-o", str(tmp_path / "f.pb")],
        ["transform", "--in_graph", str(tmp_path / "junk.pb"), "--out_graph",
         str(tmp_path / "t.pb"), "--transforms", "fold_constants"],
    ]
    for argv in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "error:" in err and "Traceback" not in err, err


# ---- leangraph.Graph: parsed once, scanned once ----

def test_graph_is_parsed_once_and_scanned_once(graph, tmp_path, monkeypatch):
    from leangraph import safety

    g = leangraph.Graph(graph.SerializeToString())
    assert g.graph_def is g.graph_def and len(g) == len(graph.node)
    assert leangraph.load_graph(g) is g.graph_def
    scans = []
    real = safety.find_unsafe_ops
    monkeypatch.setattr(safety, "find_unsafe_ops", lambda gd: scans.append(1) or real(gd))
    g.require_safe()
    g.require_safe()
    assert len(scans) == 1
    unsafe = leangraph.Graph(io_graph(tmp_path / "secret.txt"), outputs=["output"])
    with pytest.raises(leangraph.GraphError, match="read \\(ReadFile\\)"):
        unsafe.require_safe(what="the test graph")
    assert unsafe.require_safe(allow_io_ops=True) is unsafe and unsafe.outputs == ["output"]
    result = leangraph.transform(g, "fold_constants(ignore_errors=true)", INPUTS, OUTPUTS)
    assert len(result.node) <= len(graph.node)
    saved = g.save(tmp_path / "g.pb")
    assert saved.read_bytes() == g.data
    assert leangraph.Graph(saved).inputs == g.inputs


def test_an_unregistered_subclassed_keras_model_is_refused_in_one_line(tmp_path):
    """Keras's error for a class it cannot locate appends the model's whole config; the
    refusal names the class in one line without it."""
    import subprocess
    import sys

    script = (
        "import keras, sys\n"
        "@keras.saving.register_keras_serializable(package='elsewhere')\n"
        "class Net(keras.Model):\n"
        "    def __init__(self, **kw):\n"
        "        super().__init__(**kw)\n"
        "        self.dense = keras.layers.Dense(3)\n"
        "    def call(self, x):\n"
        "        return self.dense(x)\n"
        "model = Net()\n"
        "model(keras.ops.zeros((1, 4)))\n"
        "model.save(sys.argv[1])\n")
    path = tmp_path / "sub.keras"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, capture_output=True)
    with pytest.raises(leangraph.errors.FreezeError,
                       match="Could not locate class 'Net'") as refused:
        leangraph.freeze(path)
    message = str(refused.value)
    assert "\n" not in message and "config" not in message.split("decorated")[0]
    assert "Full object config" not in message and len(message) < 600
