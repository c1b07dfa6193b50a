"""The bf16 note's matmul probe keeps oneDNN's float16 ERROR line ("oneDNN supports DT_HALF
only on platforms with AVX-512", printed even where the CPU has AVX-512) out of a quiet run's
output (found on chars2vec, bench/results/2026-12-06-zen4-real_models-3.md). On a CPU where
TF does not print that line this test cannot fail; on the AMD Zen 4 it was found on, it does
without the fix."""

from leangraph.pipeline.throughput import matmul_gflops


def test_float16_probe_is_quiet_where_tf_logs_are_hidden(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    rates = matmul_gflops(("float16",), size=64, repeats=1)
    assert rates["float16"] > 0
    err = capfd.readouterr().err
    assert "DT_HALF" not in err and "E0000" not in err, err
