"""leangraph.metrics: the one top-1, SQNR, accuracy and budget; output kinds and their gates."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import leangraph
from leangraph import metrics as M
from leangraph.errors import UsageError
from leangraph.freeze import TensorInfo

PACKAGE = Path(leangraph.__file__).parent


def _graph(make):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        make(tf, x)
    return graph.as_graph_def()


def test_output_kind_comes_from_the_producing_op_through_identities():
    def heads(tf, x):
        tf.identity(tf.nn.softmax(x), name="probs")
        tf.identity(tf.identity(tf.sigmoid(x[:, :1])), name="yes")
        tf.sigmoid(x, name="tags")
        tf.matmul(x, tf.ones((4, 2)), name="value")

    graph = _graph(heads)
    assert M.output_kind(graph, "probs", (1, 4)) == "classes"
    assert M.output_kind(graph, "yes:0", (1, 1)) == "binary"
    assert M.output_kind(graph, "tags", (1, 4)) == "multilabel"
    assert M.output_kind(graph, "value", (1, 2)) == "regression"
    outputs = [TensorInfo(n, "float32", s) for n, s in
               (("probs", (1, 4)), ("yes", (1, 1)), ("tags", (1, 4)), ("value", (1, 2)))]
    gates = M.Gates.for_graph(graph, outputs, kinds=["value=classes"])
    assert gates.kinds == ["classes", "binary", "multilabel", "classes"]
    with pytest.raises(UsageError, match="unknown kind 'labels'"):
        M.Gates.for_graph(graph, outputs, kinds={"value": "labels"})
    with pytest.raises(UsageError, match="no output 'nope'"):
        M.Gates.for_graph(graph, outputs, gates=["nope=0.5"])


def _gated(kind, out, ref, lossy=True, **kw):
    gates = M.Gates(["o"], [kind], **kw)
    return {c.gate: c for c in gates.checks([out], [ref], lossy)}


def test_each_kind_has_its_own_gate_and_every_lossy_variant_needs_sqnr():
    rng = np.random.default_rng(0)
    # Regression (N, 1): top-1 would always agree; its gate is the relative error.
    ref = rng.normal(size=(50, 1))
    checks = _gated("regression", ref * 1.3, ref)
    assert not checks["max relative error"].passed and not checks["SQNR"].passed
    assert all(c.passed for c in _gated("regression", ref * 1.001, ref).values())
    # A sigmoid head: the thresholded class, not an argmax over one column.
    probs = rng.uniform(0.05, 0.95, size=(50, 1))
    flipped = probs.copy()
    flipped[:3] = 1 - flipped[:3]
    checks = _gated("binary", flipped, probs)
    assert checks["class agreement"].value == pytest.approx(47 / 50)
    assert not checks["class agreement"].passed
    # Multi-label: every label counts.
    tags = rng.uniform(0.05, 0.95, size=(20, 5))
    wrong = tags.copy()
    wrong[0, 4] = 1 - wrong[0, 4] if abs(wrong[0, 4] - 0.5) > 0.01 else 0.9
    assert _gated("multilabel", wrong, tags)["label agreement"].value == pytest.approx(99 / 100)
    # Segmentation (N, H, W, C): top-1 per pixel.
    seg = rng.normal(size=(2, 4, 4, 3))
    off = seg.copy()
    off[0, 0, 0] = seg[0, 0, 0][::-1] * 10
    assert _gated("classes", off, seg)["top-1 agreement"].value == pytest.approx(31 / 32)
    # A lossy variant with perfect agreement still needs SQNR.
    logits = rng.normal(size=(40, 3)) * 10
    clear = logits + (logits.argmax(1)[:, None] == np.arange(3)) * 1000
    checks = _gated("classes", clear + rng.normal(size=logits.shape) * 100, clear)
    assert checks["top-1 agreement"].passed and not checks["SQNR"].passed
    # fp32 keeps the relative tolerance, and --gate sets a threshold per output.
    assert not _gated("classes", logits * (1 + 1e-3), logits, lossy=False)["relative error"].passed
    loose = _gated("regression", ref * 1.3, ref, thresholds={"o": {None: 0.5, "sqnr": 5}})
    assert all(c.passed for c in loose.values())
    assert M.parse_gate("sqnr:25") == ("sqnr", 25.0) and M.parse_gate("0.98") == (None, 0.98)
    with pytest.raises(UsageError, match="unknown gate 'top5'"):
        M.parse_gate("top5:0.9")


def test_two_outputs_are_both_gated():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(30, 2))
    gates = M.Gates(["cls", "value"], ["classes", "regression"])
    checks = gates.checks([a, b * 2], [a, b], lossy=True)
    assert [c.name for c in checks if not c.passed] == ["value", "value"]
    assert "output 'value' (regression): max relative error" in M.failure(checks)


def test_sqnr_accuracy_mae_and_the_budget():
    ref = np.array([1.0, 2.0, 3.0])
    assert M.sqnr_db(ref, ref) == float("inf")
    assert M.sqnr_db(ref, ref + 0.1) == pytest.approx(10 * np.log10(14.0 / 0.03))
    assert M.sqnr_db(ref, np.array([1.0, np.nan, 3.0])) == float("-inf")
    assert M.sqnr_db(np.zeros(3), ref) == float("-inf")
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert M.accuracy(scores, [1, 0, 0]) == pytest.approx(2 / 3)
    assert M.accuracy(scores, np.eye(2)[[1, 0, 1]]) == 1.0  # one-hot labels
    assert M.accuracy(np.array([[0.2], [0.9]]), [0, 1], "binary") == 1.0
    assert M.held_out_score(np.array([[0.2], [0.9]]), [0, 0]) == 0.5  # a sigmoid head
    assert M.mae(np.array([[1.0], [2.0]]), [1.5, 2.0]) == pytest.approx(0.25)
    assert M.within_budget(0.90, 0.895, 0.5) and not M.within_budget(0.90, 0.89, 0.5)
    assert M.within_budget(1.0, 1.1, max_mae_increase=0.1, higher_is_better=False)
    assert not M.within_budget(1.0, 1.11, max_mae_increase=0.1, higher_is_better=False)


# What counts as a second definition: a function of these names, an inline
# `argmax(...) ==` agreement, or a hand-written accuracy budget comparison.
_METRIC_NAMES = {"top1", "sqnr", "sqnr_db", "output_sqnr", "worst_sqnr_db", "within_budget",
                 "agreement", "accuracy", "relative_error", "mae", "held_out_score"}
_INLINE = [re.compile(r"argmax\([^()]*(\([^()]*\)[^()]*)*\)\s*==|==\s*[\w.]*argmax\("),
           re.compile(r"[a-z_)]\s*<=\s*max_(accuracy_)?drop\b"),
           re.compile(r"log10\(\s*(signal|ratio)")]


def _delegates(function):
    """Whether a function calls one of the metrics (a wrapper, e.g. one that memoizes):
    that is a use of the one definition, not a second one."""
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in _METRIC_NAMES and name != function.name:
                return True
    return False


def test_one_definition_of_each_metric_in_the_package():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "metrics.py" and path.parent == PACKAGE:
            continue
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and node.name in _METRIC_NAMES and not _delegates(node):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} def {node.name}")
        for number, line in enumerate(source.splitlines(), 1):
            if any(p.search(line) for p in _INLINE):
                found.append(f"{path.relative_to(PACKAGE)}:{number} {line.strip()}")
    assert not found, "metrics defined outside leangraph/metrics.py:\n" + "\n".join(found)


def test_the_scan_finds_what_it_looks_for():
    # The patterns above catch the forms the package used to have.
    own = ast.parse("def sqnr(a, b):\n"
                    "    return 10 * np.log10(np.sum(a ** 2) / np.sum((a - b) ** 2))")
    wrapper = ast.parse("def sqnr(t):\n    return sqnr_db(ref[t], got[t])")
    assert not _delegates(own.body[0]) and _delegates(wrapper.body[0])
    for line in ("hits += int(np.sum(out.argmax(axis=-1) == target))",
                 "return float(np.mean(np.argmax(p, axis=-1) == y_test))",
                 "feasible = drop <= max_accuracy_drop",
                 "return 10.0 * np.log10(signal / noise)"):
        assert any(p.search(line) for p in _INLINE), line


def test_a_per_position_output_of_one_dominant_class_is_gated_off_it():
    """spliceai's case: a per-position softmax that is nearly all one class. Rounding that
    flips a quarter of the rare classes' positions leaves top-1 agreement at 99.9 %, which
    alone passes; the gate on the positions off the dominant class fails it."""
    rng = np.random.default_rng(0)
    ref = np.zeros((4, 1000, 3))
    ref[..., 0] = 1.0
    sites = rng.choice(4000, 40, replace=False)
    flat = ref.reshape(-1, 3)
    flat[sites] = [0.1, 0.8, 0.1]
    out = ref.copy().reshape(-1, 3)
    out[sites[:10]] = [0.6, 0.3, 0.1]  # 10 of the 40 sites lost
    out = out.reshape(ref.shape)
    gates = M.Gates(["y"], ["classes"])
    checks = {c.gate: c for c in gates.checks([out], [ref], lossy=True)}
    assert checks["top-1 agreement"].passed and checks["top-1 agreement"].value > 0.997
    off = next(c for g, c in checks.items() if g.startswith("top-1 agreement on the 40"))
    assert off.value == pytest.approx(0.75) and not off.passed
    assert "not of class 0 (99.0 % are)" in off.gate
    assert "75.0 %" in off.failure()
    # A classifier's (N, C) output, or too few positions off the dominant class: no such gate.
    assert M.off_dominant_agreement(out[:, :5], ref[:, :5]) is None
    plain = M.Gates(["y"], ["classes"]).checks([out[:, 0]], [ref[:, 0]], lossy=True)
    assert [c.gate for c in plain] == ["top-1 agreement", "SQNR"]


def test_a_per_position_output_says_how_many_examples_keep_every_position():
    """deepcut's case: 99.6 % of characters agree, and yet one sentence in five is
    segmented differently. The share of examples unchanged in every position is recorded
    beside the gates and shown in report.md; a classifier's (N, C) output has none."""
    from leangraph.pipeline.variants import Variant
    from leangraph.pipeline.verify import verify
    from leangraph.report import variant_line

    ref = np.zeros((10, 250, 2))
    ref[..., 0] = 1.0
    out = ref.copy()
    out[3, 17] = [0.2, 0.8]  # one position of two examples flipped
    out[8, 200] = [0.4, 0.6]
    assert M.examples_unchanged(out, ref) == pytest.approx(0.8)
    assert M.agreement(out, ref, "classes") == pytest.approx(1 - 2 / 2500)
    assert M.examples_unchanged(out[:, 0], ref[:, 0]) is None  # (N, C): no positions
    assert M.examples_unchanged(ref, ref) == 1.0
    v = Variant("int8", "int8 graph", "graph", precision="int8", gate="top1")
    verify(v, [out], [ref], 1e-4, gates=M.Gates(["tags"], ["classes"]))
    assert v.passed and v.verification["examples_unchanged"] == {"tags": pytest.approx(0.8)}
    # Time-major examples (axis 0 holds steps, not examples): no per-example share.
    steps = Variant("int8", "int8 graph", "graph", precision="int8", gate="top1")
    verify(steps, [out], [ref], 1e-4, gates=M.Gates(["tags"], ["classes"]), examples=2)
    assert "examples_unchanged" not in steps.verification
    assert "every position's top-1 class unchanged: `tags` 80.0 %" in variant_line(v)
    assert "unchanged" not in variant_line(steps)
