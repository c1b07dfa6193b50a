"""Shared fixtures: small graphs built here, so no test needs a download."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import graph_builders  # noqa: E402
import pg  # noqa: E402


@pytest.fixture(scope="session")
def conv_bn_graph():
    return graph_builders.conv_bn_graph()


@pytest.fixture(scope="session")
def keras_cnn_graph():
    return graph_builders.keras_cnn_graph()


@pytest.fixture(scope="session")
def keras_mlp_graph():
    return graph_builders.keras_mlp_graph()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def modern_blocks_graph():
    return graph_builders.keras_modern_blocks_graph()


@pytest.fixture(scope="module")
def server():
    """A throwaway PostgreSQL server (tests/pg.py) for the shared-study tests."""
    why = pg.missing()
    if why is not None:
        # `make test` runs `make postgres` first, so missing binaries are a failure, not a skip:
        # a skip would let a run without the server pass with the shared-study tests unrun.
        pytest.fail(f"no PostgreSQL server for the shared-study tests: {why}")
    running = pg.Server().start()
    yield running
    running.stop()


@pytest.fixture
def int8_anywhere(monkeypatch):
    """int8 variants built on any x86-64 CPU: the policy that leaves them out without
    VNNI or AVX2 (cpu_supports_int8) is set aside, while the graphs still take the
    weights this CPU computes right (quantize's weight_bits follows cpu_has_vnni)."""
    from leangraph.quantization import int8

    monkeypatch.setattr(int8, "cpu_supports_int8", lambda: True)
