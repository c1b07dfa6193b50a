"""Mutated int8 graphs through leangraph.run, benchmark, quantize and `leangraph optimize`:
no case may kill the process, and the valid controls must still run.

A short slice of seed 1 (tests/int8_fuzz_cases.py); `python bench/int8_fuzz.py`
runs the long, held-out version.
"""

import concurrent.futures

import numpy as np
import pytest

import int8_fuzz_cases

CORPUS_SEED = 1
CORPUS_SIZE = 300
CHILDREN = 2


@pytest.fixture(scope="module")
def seed():
    return int8_fuzz_cases.seed_graph()


def test_the_seed_holds_every_fused_int8_kernel(seed):
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(seed)
    ops = {n.op for n in graph.node}
    assert {"QuantizeV2", "Dequantize", "_FusedQuantizedConv2D", "_FusedQuantizedDepthwiseConv2D",
            "_QuantizedMatMul", "QuantizedMaxPool"} <= ops
    fused = [list(n.attr["fused_ops"].list.s) for n in graph.node]
    assert [b"BiasAdd", b"Sum", b"Relu", b"Requantize"] in fused
    # The matmuls that hand an 8-bit tensor to the next one (a factorised pair, a hidden layer).
    matmuls = {n.name: n for n in graph.node if n.op == "_QuantizedMatMul"}
    requantized = {tuple(n.attr["fused_ops"].list.s): n.attr["Tout"].type
                   for n in matmuls.values() if b"Requantize" in n.attr["fused_ops"].list.s}
    assert requantized.get((b"BiasAdd", b"Requantize")) == 11  # qint8
    assert requantized.get((b"BiasAdd", b"Relu", b"Requantize")) == 12  # quint8


def test_a_vector_range_is_refused_by_every_runner(seed):
    """The fuzzer's most common death: a range constant of 16 values where the int8 kernel
    reads a scalar (TF: 'Check failed: 1 == NumElements()'). Each runner refuses it."""
    import leangraph
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(seed)
    conv = next(n for n in graph.node if n.op == "_FusedQuantizedConv2D")
    wide = graph.node.add()
    wide.CopyFrom(next(n for n in graph.node if n.name == conv.input[-1]))
    wide.name = "wide_range"
    int8_fuzz_cases._set_values(wide, [6.0] * 16, (16,))
    conv.input[-1] = "wide_range"
    x = np.zeros((1, 16, 16, 3), np.float32)
    for call in (lambda: leangraph.run(graph, {"input": x}),
                 lambda: leangraph.benchmark(graph, runs=1, warmup=0, measure_overhead=False),
                 lambda: leangraph.quantize(graph, np.random.default_rng(0).random((2, 16, 16, 3), np.float32),
                                            require_int8_cpu=False)):
        with pytest.raises(leangraph.LeangraphError, match="holds 16 values"):
            call()


def test_cases_are_reproducible(seed):
    a = int8_fuzz_cases.make_case(seed, CORPUS_SEED, 5)
    b = int8_fuzz_cases.make_case(seed, CORPUS_SEED, 5)
    assert (a.graph, a.entry, a.mutations) == (b.graph, b.entry, b.mutations)


@pytest.mark.slow
def test_fixed_seed_int8_corpus_never_kills_the_process(seed):
    cases = [int8_fuzz_cases.make_case(seed, CORPUS_SEED, i) for i in range(CORPUS_SIZE)]
    shards = [cases[i::CHILDREN] for i in range(CHILDREN)]
    with concurrent.futures.ThreadPoolExecutor(CHILDREN) as pool:
        reports = list(pool.map(lambda shard: int8_fuzz_cases.run_batch(shard, timeout_per_case=300),
                                shards))
    deaths = [d for r in reports for d in r.deaths]
    unexpected = [u for r in reports for u in r.unexpected]
    assert not deaths, "\n".join(f"{how}: {int8_fuzz_cases.describe(c)}" for c, how in deaths)
    assert not unexpected, "\n".join(f"{what}: {int8_fuzz_cases.describe(c)}"
                                     for c, what in unexpected)
    assert sum(r.ran for r in reports) == CORPUS_SIZE
    entries = {c.entry for c in cases}
    assert entries == {"run", "benchmark", "quantize", "optimize"}
    # Refusing everything is not safety: the valid controls ran (a refusal of one is
    # counted as unexpected above), and so did some mutants that stay valid.
    assert sum(c.valid for c in cases) >= 10
    assert sum(r.accepted for r in reports) > sum(c.valid for c in cases)
    assert sum(r.refused for r in reports) > CORPUS_SIZE // 3


@pytest.mark.slow
def test_harness_sees_a_death_that_leangraph_prevents(seed):
    """The corpus test could fail: the same mutated graph kills a plain TF session."""
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(seed)
    conv = next(n for n in graph.node if n.op == "_FusedQuantizedDepthwiseConv2D")
    del conv.attr["fused_ops"].list.s[:]
    conv.attr["fused_ops"].list.s.extend([b"BiasAdd", b"Relu"])
    case = int8_fuzz_cases.Case(0, 0, graph.SerializeToString(), "run", False, ["no Requantize"])
    report = int8_fuzz_cases.run_batch([case], tensorflow_alone=True)
    assert [how for _, how in report.deaths] == [-6]  # SIGABRT
    report = int8_fuzz_cases.run_batch([case])
    assert report.deaths == [] and report.refused == 1
