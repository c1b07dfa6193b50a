"""What quantize does to save time must not change what it computes: the stepwise runs of the
bias correction (settled tensors fed back instead of recomputed) give the corrections that
full runs give, to the bit, and never feed a fused op's summand; the blockwise error sums
and the SQNR of values left in the parts the runs fetched equal those of the joined arrays,
to the bit; and the float graph is opened once per quantize, by calibration, whose runs give
the checks' values, the outputs' reference (where nothing was equalized) and the shapes."""

import sys

import numpy as np
import pytest
import tensorflow as tf

from leangraph import quantization as Q
from leangraph.quantization import bias
from leangraph.quantization import runs
from leangraph.quantization.values import Parts

RNG = np.random.default_rng(5)
calibrate_module = sys.modules["leangraph.quantization.calibrate"]
int8_module = sys.modules["leangraph.quantization.int8"]


def _c(value):
    return tf.constant(np.asarray(value, dtype=np.float32))


def _residual_net(x):
    # A chain of units (one level each) with identity and projection residuals: the
    # adds become Sum fusions, whose summands must never be fed.
    y = tf.nn.conv2d(x, _c(RNG.normal(size=(3, 3, 8, 8)) * 0.3), 1, "SAME", name="stem")
    a = tf.nn.relu(tf.nn.bias_add(y, _c(RNG.normal(size=8) * 0.1)), name="stem_act")
    for block in range(3):
        y = tf.nn.conv2d(a, _c(RNG.normal(size=(1, 1, 8, 8)) * 0.3), 1, "SAME", name=f"b{block}c1")
        y = tf.nn.relu(tf.nn.bias_add(y, _c(RNG.normal(size=8) * 0.1)), name=f"b{block}r1")
        y = tf.nn.conv2d(y, _c(RNG.normal(size=(3, 3, 8, 8)) * 0.2), 1, "SAME", name=f"b{block}c2")
        y = tf.nn.bias_add(y, _c(RNG.normal(size=8) * 0.1), name=f"b{block}b2")
        a = tf.nn.relu(tf.add(y, a, name=f"b{block}add"), name=f"b{block}out")
    tf.identity(a, name="output")


def _graph():
    graph = tf.Graph()
    with graph.as_default():
        _residual_net(tf.compat.v1.placeholder(tf.float32, (1, 10, 10, 8), name="input"))
    return graph.as_graph_def()


def _samples(n):
    return np.random.default_rng(3).standard_normal((n, 10, 10, 8)).astype(np.float32)


def _quantize(graph_def, x):
    return Q.quantize(graph_def, x, require_int8_cpu=False, weight_bits=8)


def test_stepwise_bias_correction_matches_full_runs_to_the_bit(monkeypatch):
    g, x = _graph(), _samples(12)
    cuts, fed = [], []
    real_cut, real_run = runs.StepwiseRunner._cut, calibrate_module._Session.run

    def recorded_cut(self, fitted):
        cut = real_cut(self, fitted)
        cuts.append((cut, set(self._pinned), set(self._bias_readers)))
        return cut

    def recorded_run(self, fetches, feeds):
        fed.append(set(feeds))
        return real_run(self, fetches, feeds)

    monkeypatch.setattr(runs.StepwiseRunner, "_cut", recorded_cut)
    monkeypatch.setattr(calibrate_module._Session, "run", recorded_run)
    fast = _quantize(g, x)
    assert fast.bias_corrected and any(cut for cut, _, _ in cuts)
    assert any(pinned for _, pinned, _ in cuts)  # the residual adds are Sum fusions
    for cut, pinned, _ in cuts:
        assert not set(cut) & pinned
    # Later runs feed settled tensors, and only the biases their live nodes read.
    biases = set().union(*(b for _, _, b in cuts))
    assert any(feeds & {t for cut, _, _ in cuts for t in cut} for feeds in fed)
    assert any(0 < len(feeds & biases) < len(biases) / 2 for feeds in fed)

    monkeypatch.setattr(runs.StepwiseRunner, "_cut", lambda self, fitted: [])
    full = _quantize(g, x)
    assert full.bias_corrected == fast.bias_corrected
    assert (full.graph_def.SerializeToString(deterministic=True)
            == fast.graph_def.SerializeToString(deterministic=True))
    assert full.output_sqnr_db == fast.output_sqnr_db
    assert [l.sqnr_db for l in full.layers] == [l.sqnr_db for l in fast.layers]


def test_a_graph_with_a_cond_gets_no_cut():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (1, 4), name="input")
        flag = tf.compat.v1.placeholder_with_default(True, (), name="flag")
        tf.identity(tf.compat.v1.cond(flag, lambda: x * 2.0, lambda: x - 1.0), name="output")
    g = graph.as_graph_def()
    assert runs.bias_masks(g, []) is None


@pytest.mark.parametrize("op", [None, "Relu", "Relu6"])
def test_blockwise_error_sums_equal_whole_array_sums(op):
    rng = np.random.default_rng(1)
    channels = 24
    scale = rng.uniform(0.01, 100.0, channels)
    reference = (rng.standard_normal((3, 61, 53, channels)) * scale).astype(np.float32)
    value = (reference + rng.standard_normal(reference.shape) * 0.05 * scale).astype(np.float32)
    a = reference.reshape(-1, channels).astype(np.float64)
    b = value.reshape(a.shape).astype(np.float64)
    live = np.ones(a.shape, bool)
    if op:
        live = (a > 0) & (b > 0)
        if op == "Relu6":
            live &= (a < 6) & (b < 6)
    total, count = bias._error_sums(reference, value, op)
    # The sums run over many blocks here (3*61*53 rows of 24 channels).
    assert len(a) > (1 << 16) // channels
    np.testing.assert_array_equal(count, live.sum(0))
    assert np.array_equal(total, np.where(live, b - a, 0.0).sum(0))
    # ... and from the parts the runs fetched, one example each, never joined.
    parts = [Parts(np.split(x, 3)) for x in (reference, value)]
    from_parts = bias._error_sums(*parts, op)
    assert np.array_equal(from_parts[0], total) and np.array_equal(from_parts[1], count)


def _count_sessions(monkeypatch):
    """([whether each session opened is of a float graph], [the fetches of each float run])."""
    float_runs, opened = [], []
    real_init, real_run = calibrate_module._Session.__init__, calibrate_module._Session.run

    def counted_init(self, graph_def, *args, **kwargs):
        self.is_float = not any(n.op.startswith("_Fused") for n in graph_def.node)
        opened.append(self.is_float)
        return real_init(self, graph_def, *args, **kwargs)

    def counted_run(self, fetches, feeds):
        if self.is_float:
            float_runs.append(fetches)
        return real_run(self, fetches, feeds)

    monkeypatch.setattr(calibrate_module._Session, "__init__", counted_init)
    monkeypatch.setattr(calibrate_module._Session, "run", counted_run)
    return opened, float_runs


def test_the_float_graph_is_opened_once_and_run_only_by_calibration(monkeypatch):
    g, x = _graph(), _samples(12)
    opened, float_runs = _count_sessions(monkeypatch)
    shape_imports = []
    real_shape_graph = int8_module.summary._shape_graph
    monkeypatch.setattr(int8_module.summary, "_shape_graph",
                        lambda *a: shape_imports.append(a) or real_shape_graph(*a))
    result = _quantize(g, x)
    assert any(n.startswith("bias correction") for n in result.notes)
    # Nothing to equalize here: calibration's session is the float graph's only one, and its
    # 12 runs (the graph is frozen at batch 1) are the only float runs: the checks' values
    # and the outputs' reference on the 8 check samples and on the 4 held-out ones that judge
    # the bias correction are kept from them, and its imported graph gives the shapes.
    assert opened.count(True) == 1 and len(float_runs) == 12
    assert all("output:0" in fetches for fetches in float_runs)
    assert not shape_imports
    # The 8-bit sessions: each round's bias fit, whose session then measures the layers' SQNR;
    # the final fit; the rewrite without the corrections on the held-out samples; the result,
    # with them, on the held-out samples and then the check samples.
    assert opened.count(False) == 4


def _separable_graph():
    rng = np.random.default_rng(4)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (1, 10, 10, 8), name="input")
        scale = np.linspace(0.05, 3.0, 8)[None, None, :, None]
        y = tf.nn.depthwise_conv2d(x, _c(rng.normal(size=(3, 3, 8, 1)) * scale),
                                   [1, 1, 1, 1], "SAME", name="dw")
        y = tf.nn.conv2d(y, _c(rng.normal(size=(1, 1, 8, 8)) * 0.3), 1, "SAME", name="pw")
        y = tf.nn.relu(tf.nn.bias_add(y, _c(rng.normal(size=8) * 0.1)), name="pw_act")
        y = tf.nn.conv2d(y, _c(rng.normal(size=(3, 3, 8, 8)) * 0.3), 1, "SAME", name="last")
        tf.identity(tf.nn.bias_add(y, _c(rng.normal(size=8) * 0.1)), name="output")
    return graph.as_graph_def()


def test_an_equalized_graph_takes_its_reference_from_the_callers_graph(monkeypatch):
    opened, float_runs = _count_sessions(monkeypatch)
    result = _quantize(_separable_graph(), _samples(12))
    assert any("separable conv" in n for n in result.notes)
    # Equalized, the graph calibrated computes other bits than the caller's: the reference
    # outputs come from a session of the caller's graph, run on the 4 held-out samples (where
    # a bias correction is judged) and the 8 check samples, for the outputs alone.
    assert opened.count(True) == 2
    judged = 4 if any(n.startswith("bias correction") for n in result.notes) else 0
    assert len(float_runs) == 12 + judged + 8
    assert all(fetches == ["output:0"] for fetches in float_runs[12:])


def test_an_open_batch_takes_its_shapes_from_a_graph_pinned_at_one(monkeypatch):
    graph = tf.Graph()
    with graph.as_default():
        _residual_net(tf.compat.v1.placeholder(tf.float32, (None, 10, 10, 8), name="input"))
    shape_imports = []
    real_shape_graph = int8_module.summary._shape_graph
    monkeypatch.setattr(int8_module.summary, "_shape_graph",
                        lambda *a: shape_imports.append(a) or real_shape_graph(*a))
    result = _quantize(graph.as_graph_def(), _samples(4))
    assert len(shape_imports) == 1 and shape_imports[0][1] == 1
    assert all(l.macs > 0 for l in result.layers)


def _split(array, sizes):
    """array cut on axis 0 into parts of these sizes (as runs of batches fetch it)."""
    return np.split(array, np.cumsum(sizes)[:-1])


@pytest.mark.parametrize("shape,sizes", [
    ((8, 61, 53, 23), [1] * 8),   # batch 1, each part over several blocks
    ((5, 300, 7), [2, 3]),        # a frozen batch of 2 with its filler cut off
    ((3, 1000), [1, 1, 1]),       # under one block in all
])
def test_sqnr_over_parts_is_the_joined_arrays_sqnr_to_the_bit(shape, sizes):
    from leangraph.metrics import sqnr_db
    from leangraph.quantization.calibrate import join
    from leangraph.quantization.values import Parts
    from leangraph.quantization.values import parts_sqnr_db as parts_sqnr

    rng = np.random.default_rng(7)
    reference = (rng.standard_normal(shape) * rng.uniform(0.01, 50.0, shape[-1])).astype(np.float32)
    value = (reference + rng.standard_normal(shape) * 0.03).astype(np.float32)
    value[value < -2] = 0.0  # a Relu's zeros, so values differ in kind along the way
    r, v = Parts(_split(reference, sizes)), Parts(_split(value, sizes))
    assert r.shape == join(r.parts).shape == reference.shape
    assert parts_sqnr(r, v) == sqnr_db(reference, value)
    assert parts_sqnr(r, Parts(_split(reference.copy(), sizes))) == float("inf")
    broken = value.copy()
    broken.flat[-1] = np.inf
    assert parts_sqnr(r, Parts(_split(broken, sizes))) == sqnr_db(reference, broken) == -np.inf


def test_parts_of_examples_that_differ_in_shape_read_as_join_lays_them_out():
    # Examples fed one by one (a sequence's length differs): join lays them out as rows of
    # the last axis, and the error sums and SQNR read them so.
    from leangraph.metrics import sqnr_db
    from leangraph.quantization.calibrate import join
    from leangraph.quantization.values import Parts
    from leangraph.quantization.values import parts_sqnr_db as parts_sqnr

    rng = np.random.default_rng(2)
    refs = [rng.standard_normal((1, n, 6)).astype(np.float32) for n in (5, 9, 2)]
    vals = [(a + 0.1 * rng.standard_normal(a.shape)).astype(np.float32) for a in refs]
    r, v = Parts(refs), Parts(vals)
    assert r.shape == join(refs).shape == (16, 6)
    assert parts_sqnr(r, v) == sqnr_db(join(refs), join(vals))
    total, count = bias._error_sums(r, v, "Relu")
    whole_total, whole_count = bias._error_sums(join(refs), join(vals), "Relu")
    assert np.array_equal(total, whole_total) and np.array_equal(count, whole_count)
