"""leangraph.RECIPES / leangraph.recipe() and `leangraph transform --recipe`."""

import numpy as np
import pytest

import leangraph
from leangraph import cli, graphs

TF_DEPLOY = (
    'strip_unused_nodes(type=float, shape="1,299,299,3") remove_nodes(op=Identity, op=CheckNumerics) '
    "fold_constants(ignore_errors=true) fold_batch_norms fold_old_batch_norms"
)
TF_EIGHTBIT = (
    'add_default_attributes strip_unused_nodes(type=float, shape="1,299,299,3") '
    "remove_nodes(op=Identity, op=CheckNumerics) fold_constants(ignore_errors=true) "
    "fold_batch_norms fold_old_batch_norms quantize_weights quantize_nodes "
    "strip_unused_nodes sort_by_execution_order"
)


def test_recipes_are_named_transform_strings():
    assert set(leangraph.RECIPES) == {"deploy", "tf-deploy", "tf-eightbit"}
    for name, text in leangraph.RECIPES.items():
        steps = leangraph.parse_transforms(text.replace("{shape}", "1,2,2,3"))
        assert steps, name
    known = {t.name for t in leangraph.list_transforms()}
    for text in leangraph.RECIPES.values():
        for step, _ in leangraph.parse_transforms(text.replace("{shape}", "1,2")):
            assert step in known


def test_tf_recipes_are_tf_docs_verbatim():
    assert leangraph.RECIPES["tf-deploy"].replace("{shape}", "1,299,299,3") == TF_DEPLOY
    assert leangraph.RECIPES["tf-eightbit"].replace("{shape}", "1,299,299,3") == TF_EIGHTBIT


def test_deploy_contains_tf_recipe_steps_and_own_transforms():
    steps = [name for name, _ in leangraph.parse_transforms(leangraph.recipe("deploy"))]
    for name in ("strip_unused_nodes", "fold_keras_batch_norms",
                 "strip_freeze_artifacts", "remove_identity_chains", "fuse_bias_add",
                 "inline_grouped_convs"):
        assert name in steps


def test_recipe_fills_shape_from_placeholder(keras_cnn_graph):
    text = leangraph.recipe("tf-deploy", keras_cnn_graph)
    assert 'shape="1,24,24,3"' in text
    assert "{shape}" not in text


def test_recipe_without_graph_leaves_shape_out():
    text = leangraph.recipe("deploy")
    assert "shape=" not in text and "{shape}" not in text
    assert "strip_unused_nodes(type=float)" in text


def test_recipe_with_unknown_batch_pins_it_to_one():
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 5], name="input")
        tf.identity(x * 2.0, name="output")
    assert 'shape="1,5"' in leangraph.recipe("deploy", graph.as_graph_def())


def test_unknown_recipe_lists_known_ones():
    with pytest.raises(leangraph.UsageError, match="deploy, tf-deploy, tf-eightbit"):
        leangraph.recipe("deplyo")


def test_deploy_on_tf1_graph_keeps_outputs(conv_bn_graph):
    deployed = leangraph.transform(conv_bn_graph, leangraph.recipe("deploy", conv_bn_graph))
    ops = {n.op for n in deployed.node}
    assert "FusedBatchNorm" not in ops and "CheckNumerics" not in ops
    x = np.random.default_rng(0).normal(size=(1, 16, 16, 3)).astype(np.float32)
    (expected,) = leangraph.run(conv_bn_graph, {"input": x}, ["output"])
    (actual,) = leangraph.run(deployed, {"input": x}, ["output"])
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_deploy_is_idempotent_on_small_graphs(keras_cnn_graph, keras_mlp_graph, conv_bn_graph):
    for graph_def in (keras_cnn_graph, keras_mlp_graph, conv_bn_graph):
        once = leangraph.transform(graph_def, leangraph.recipe("deploy", graph_def))
        twice = leangraph.transform(once, leangraph.recipe("deploy", once))
        assert twice.SerializeToString(deterministic=True) == once.SerializeToString(deterministic=True)


def test_tf_eightbit_quantizes(conv_bn_graph):
    result = leangraph.transform(conv_bn_graph, leangraph.recipe("tf-eightbit", conv_bn_graph))
    assert any(n.op.startswith("Quantize") or n.op == "Dequantize" for n in result.node)


def test_cli_recipe(tmp_path, keras_cnn_graph, capsys):
    src = tmp_path / "in.pb"
    dst = tmp_path / "out.pb"
    graphs.save_graph(keras_cnn_graph, src)
    assert cli.main(["transform", "--in_graph", str(src), "--out_graph", str(dst), "--recipe", "deploy"]) == 0
    assert "wrote" in capsys.readouterr().out
    expected = leangraph.transform(keras_cnn_graph, leangraph.recipe("deploy", keras_cnn_graph))
    assert graphs.load_graph(str(dst)).SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


def test_cli_recipe_and_transforms_are_exclusive(tmp_path, keras_cnn_graph):
    src = tmp_path / "in.pb"
    graphs.save_graph(keras_cnn_graph, src)
    with pytest.raises(SystemExit):
        cli.main(["transform", "--in_graph", str(src), "--out_graph", str(tmp_path / "o.pb"),
                  "--recipe", "deploy", "--transforms", "fold_constants"])


def test_cli_unknown_recipe_is_an_error(tmp_path, keras_cnn_graph, capsys):
    src = tmp_path / "in.pb"
    graphs.save_graph(keras_cnn_graph, src)
    code = cli.main(["transform", "--in_graph", str(src), "--out_graph", str(tmp_path / "o.pb"),
                     "--recipe", "nope"])
    assert code == 1
    assert "unknown recipe 'nope'" in capsys.readouterr().err
