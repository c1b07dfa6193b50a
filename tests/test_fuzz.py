"""A fixed-seed corpus of mutated graphs through every transform: no case may kill the process.

Each case runs in a child process (tests/fuzz_cases.py); `python bench/fuzz.py`
runs the long version of the same corpus.
"""

import concurrent.futures

import pytest
import tensorflow as tf

import fuzz_cases

CORPUS_SEED = 1
CORPUS_SIZE = 300
CHILDREN = 2


@pytest.fixture(scope="module")
def seeds(conv_bn_graph, keras_cnn_graph):
    return {
        "conv_bn": conv_bn_graph.SerializeToString(),
        "keras_cnn": keras_cnn_graph.SerializeToString(),
    }


@pytest.fixture(scope="module")
def transforms():
    return fuzz_cases.available_transforms()


def test_cases_are_reproducible(seeds, transforms):
    a = fuzz_cases.make_case(seeds, CORPUS_SEED, 17, transforms)
    b = fuzz_cases.make_case(seeds, CORPUS_SEED, 17, transforms)
    assert (a.graph, a.transforms, a.mutations) == (b.graph, b.transforms, b.mutations)
    assert fuzz_cases.make_case(seeds, CORPUS_SEED, 18, transforms).graph != a.graph


@pytest.mark.slow
def test_fixed_seed_corpus_never_kills_the_process(seeds, transforms):
    cases = [fuzz_cases.make_case(seeds, CORPUS_SEED, i, transforms) for i in range(CORPUS_SIZE)]
    shards = [cases[i::CHILDREN] for i in range(CHILDREN)]
    with concurrent.futures.ThreadPoolExecutor(CHILDREN) as pool:
        reports = list(pool.map(fuzz_cases.run_batch, shards))
    deaths = [d for r in reports for d in r.deaths]
    unexpected = [u for r in reports for u in r.unexpected]
    assert not deaths, "\n".join(f"{how}: {fuzz_cases.describe(c)}" for c, how in deaths)
    assert not unexpected, "\n".join(f"{what}: {fuzz_cases.describe(c)}" for c, what in unexpected)
    assert sum(r.ran for r in reports) == CORPUS_SIZE
    # A corpus that is all refused (or all accepted) would test little.
    assert sum(r.refused for r in reports) > CORPUS_SIZE // 10
    assert sum(r.accepted for r in reports) > CORPUS_SIZE // 20


@pytest.mark.slow
def test_harness_detects_a_death_and_carries_on(seeds, conv_bn_graph):
    """The corpus test could fail: TF alone aborts on a 2-D conv weight, and the harness sees it."""
    graph = tf.compat.v1.GraphDef()
    graph.CopyFrom(conv_bn_graph)
    conv = next(n for n in graph.node if n.name == "conv3")
    weight = next(n for n in graph.node if n.name == conv.input[1])
    value = tf.make_ndarray(weight.attr["value"].tensor)
    weight.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value.reshape(8, 4)))
    fatal = fuzz_cases.Case(0, 1, graph.SerializeToString(), "fold_batch_norms",
                            ["input"], ["output"], ["2-D conv weight"])
    fine = fuzz_cases.Case(0, 2, conv_bn_graph.SerializeToString(), "remove_device",
                           ["input"], ["output"], [])
    report = fuzz_cases.run_batch([fatal, fine], tensorflow_alone=True)
    assert [(c.index, how) for c, how in report.deaths] == [(1, -6)]  # SIGABRT
    assert report.accepted == 1  # the case after the death still ran
    # ... and through leangraph the same case is refused, not fatal.
    report = fuzz_cases.run_batch([fatal])
    assert report.deaths == [] and report.refused == 1


def test_a_hung_child_reports_where_it_hung(tmp_path):
    """The watchdog asks a silent child for its Python stacks before it kills it, so a hang
    is reported with the call it hung in."""
    import os
    import sys

    script = tmp_path / "stuck_child.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {os.path.dirname(fuzz_cases.__file__)!r})\n"
        "import fuzz_cases\n"
        "fuzz_cases.dump_stacks_on_signal()\n"
        "def stuck_in_this_call():\n"
        "    time.sleep(600)\n"
        "print('start 7', flush=True)\n"
        "stuck_in_this_call()\n")
    case = fuzz_cases.Case(seed=0, index=7, graph=b"", transforms="", inputs=None,
                           outputs=None, mutations=[])
    report = fuzz_cases.run_batch([case], timeout_per_case=3, python=sys.executable,
                                  script=str(script))
    assert len(report.deaths) == 1
    dead, how = report.deaths[0]
    assert dead.index == 7 and how.startswith("hang") and "stuck_in_this_call" in how
