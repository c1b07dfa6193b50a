"""int8 on a trained model: the digits reference (Xception's layout, trained on real digits)
loses at most half a point of held-out accuracy, and `tune` searches its fallback threshold."""

import numpy as np
import pytest

import leangraph
from leangraph import quantization
from leangraph.reference_model import reference_model
from leangraph.tune import tune


# Trains the digits reference model and quantizes it several ways.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits():
    return reference_model()


@pytest.fixture(scope="module")
def deploy_graph(digits):
    g = digits.graph_def
    return leangraph.transform(g, leangraph.recipe("deploy", g))


def test_int8_keeps_held_out_accuracy(digits, deploy_graph):
    result = quantization.quantize(deploy_graph, digits.x_train[:32], require_int8_cpu=False)
    assert result.int8_mac_share > 0.9
    fp32 = leangraph.evaluate(deploy_graph, digits.x_test, digits.y_test)
    int8 = leangraph.evaluate(result.graph_def, digits.x_test, digits.y_test,
                              reference=deploy_graph)
    assert fp32.accuracy - int8.accuracy <= 0.005
    assert int8.top1_agreement >= 0.99
    # 8-bit weights: a quarter of the file, plus ranges and biases.
    assert result.graph_def.ByteSize() <= 0.3 * deploy_graph.ByteSize()


def test_percentile_and_kl_calibration_also_hold(digits, deploy_graph):
    fp32 = leangraph.evaluate(deploy_graph, digits.x_test, digits.y_test).accuracy
    for method in ("percentile", "kl"):
        result = quantization.quantize(deploy_graph, digits.x_train[:16], method=method,
                                       require_int8_cpu=False)
        got = leangraph.evaluate(result.graph_def, digits.x_test, digits.y_test).accuracy
        assert fp32 - got <= 0.01, method


def test_tune_searches_int8_thresholds_on_the_real_timer(digits, int8_anywhere):
    x, y = digits.x_test[:120], digits.y_test[:120]
    result = tune(digits.graph_path, x, y, recipes=["deploy"], max_accuracy_drop=0.5,
                  precisions=["fp32", "int8", "int8@30"], threads=[2], n_trials=4,
                  log=lambda line: None)
    int8 = {t.precision: t for t in result.trials if t.precision.startswith("int8")}
    assert set(int8) == {"int8", "int8@30"}
    for trial in int8.values():
        assert trial.error is None, trial.error
        assert trial.latency_ms > 0
    assert result.best.accuracy_drop <= 0.5


def test_unknown_int8_threshold_is_refused(digits):
    with pytest.raises(leangraph.LeangraphError, match="unknown precision"):
        tune(digits.graph_path, digits.x_test[:8], digits.y_test[:8], precisions=["int8@x"],
             log=lambda line: None)


def test_tune_confirms_its_winner_side_by_side(digits, deploy_graph):
    from leangraph.pipeline.confirm import confirm
    from leangraph.tune import Trial

    lines = []
    best = Trial(1, "original", "deploy", "fp32", 2)
    confirmed = confirm(digits.graph_def, deploy_graph, best, {"input": digits.x_test[:1]},
                        lines.append)
    lo, hi = confirmed["speedup_ci95"]
    assert lo <= confirmed["speedup"] <= hi and confirmed["pairs"] >= 20
    assert confirmed["threads"] == 2
    assert "interleaved pairs" in lines[-1]
