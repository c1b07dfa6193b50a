"""The TensorFlow version check: which releases leangraph accepts, and what it says otherwise.

Mismatches are simulated by replacing what the check detects; the real TF stays loaded.
"""

import importlib.util
import sys
import types
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import leangraph
from leangraph import _extras, _tfcheck
from leangraph.cli import main

BUILT = _tfcheck.build_info().TF_VERSION
MAJOR, MINOR = _tfcheck.series(BUILT)
OTHER_PATCH = f"{MAJOR}.{MINOR}.97"


@pytest.fixture
def fresh(monkeypatch):
    """No release vetted yet in this process."""
    monkeypatch.setattr(_tfcheck, "_VETTED", set())
    return monkeypatch


def _pretend_installed(monkeypatch, version, distribution="tensorflow-cpu"):
    monkeypatch.setattr(_tfcheck, "installed_tf", lambda: [(distribution, version)])
    monkeypatch.setattr(_tfcheck, "running_tf_version", lambda: version)


def test_build_info_describes_the_loaded_tensorflow():
    info = _tfcheck.build_info()
    native = _tfcheck.load_native()
    assert info.TF_VERSION == native.TF_VERSION == tf.__version__
    assert info.CXX11_ABI == tf.sysconfig.CXX11_ABI_FLAG
    assert "-D_GLIBCXX_USE_CXX11_ABI=%d" % info.CXX11_ABI in info.TF_COMPILE_FLAGS
    assert any("TransformGraph" in s for s in info.TF_SYMBOLS)
    assert _tfcheck.missing_symbols(info) == []


def test_series_parsing():
    assert _tfcheck.series("2.21.0") == (2, 21)
    assert _tfcheck.series("2.22.0rc1") == (2, 22)
    assert _tfcheck.series("nightly") is None


def test_no_tensorflow_names_both_extras(monkeypatch):
    monkeypatch.setattr(_tfcheck, "installed_tf", lambda: [])
    with pytest.raises(leangraph.VersionError) as err:
        _tfcheck.check_tf_version()
    message = str(err.value)
    assert "pip install 'leangraph[cpu]'" in message
    assert "'leangraph[tensorflow]'" in message
    assert "\n" not in message


@pytest.mark.parametrize("distribution", ["tensorflow", "tensorflow-cpu"])
@pytest.mark.parametrize("minor", [MINOR - 1, MINOR + 1])
def test_other_minor_release_is_refused_with_what_to_install(monkeypatch, distribution, minor):
    version = f"{MAJOR}.{minor}.0"
    _pretend_installed(monkeypatch, version, distribution)
    with pytest.raises(leangraph.VersionError) as err:
        _tfcheck.check_tf_version()
    message = str(err.value)
    assert f"{distribution} {version} is installed" in message
    assert f"pip install '{distribution}=={MAJOR}.{MINOR}.*'" in message


def test_other_minor_release_is_refused_when_loading_native(fresh):
    version = f"{MAJOR}.{MINOR + 1}.0"
    fresh.setattr(_tfcheck, "running_tf_version", lambda: version)
    with pytest.raises(leangraph.VersionError, match=rf"=={MAJOR}\.{MINOR}\.\*"):
        _tfcheck.load_native()


def test_either_distribution_of_the_series_passes_the_import_check(monkeypatch):
    for distribution in ("tensorflow", "tensorflow-cpu"):
        monkeypatch.setattr(_tfcheck, "installed_tf", lambda: [(distribution, OTHER_PATCH)])
        assert _tfcheck.check_tf_version() == OTHER_PATCH


def test_two_distributions_at_once_are_accepted_with_a_warning(monkeypatch):
    monkeypatch.setattr(_tfcheck, "installed_tf", lambda: [
        ("tensorflow", f"{MAJOR}.{MINOR - 1}.0"), ("tensorflow-cpu", OTHER_PATCH)])
    with pytest.warns(RuntimeWarning, match="share one tensorflow/ folder"):
        assert _tfcheck.check_tf_version() == OTHER_PATCH


def test_other_patch_release_is_accepted_after_the_self_check(fresh):
    _pretend_installed(fresh, OTHER_PATCH)
    probes = []
    real = _tfcheck.transform_mismatch
    fresh.setattr(_tfcheck, "transform_mismatch", lambda n: probes.append(1) or real(n))
    native = _tfcheck.load_native()
    assert native.TF_VERSION == BUILT
    assert probes == [1]
    assert OTHER_PATCH in _tfcheck._VETTED
    _tfcheck.load_native()
    assert probes == [1], "the self-check runs once per release and process"


def test_the_exact_build_release_needs_no_self_check(fresh):
    fresh.setattr(_tfcheck, "transform_mismatch", lambda n: pytest.fail("self-check ran"))
    assert _tfcheck.load_native().TF_VERSION == BUILT


def test_other_patch_release_lacking_a_symbol_is_refused(fresh):
    _pretend_installed(fresh, OTHER_PATCH)
    real = _tfcheck.build_info()
    fake = types.SimpleNamespace(
        TF_VERSION=real.TF_VERSION, CXX11_ABI=real.CXX11_ABI,
        TF_SYMBOLS=list(real.TF_SYMBOLS) + ["_ZN10tensorflow16graph_transforms13NoSuchEntryIsEv"])
    fresh.setattr(_tfcheck, "build_info", lambda: fake)
    with pytest.raises(leangraph.VersionError) as err:
        _tfcheck.load_native()
    message = str(err.value)
    assert "lacks tensorflow::graph_transforms::NoSuchEntryIs" in message
    assert f"pip install 'tensorflow-cpu=={BUILT}'" in message
    assert OTHER_PATCH not in _tfcheck._VETTED


def test_other_patch_release_with_a_different_abi_is_refused(fresh):
    _pretend_installed(fresh, OTHER_PATCH)
    real = _tfcheck.build_info()
    fake = types.SimpleNamespace(TF_VERSION=real.TF_VERSION, CXX11_ABI=1 - real.CXX11_ABI,
                                 TF_SYMBOLS=real.TF_SYMBOLS)
    fresh.setattr(_tfcheck, "build_info", lambda: fake)
    with pytest.raises(leangraph.VersionError, match="string ABI"):
        _tfcheck.load_native()


def test_other_patch_release_whose_transforms_differ_is_refused(fresh):
    _pretend_installed(fresh, OTHER_PATCH)
    # TF's "own" output is replaced by the untransformed probe graph.
    fresh.setattr(_tfcheck, "tf_reference_transform", lambda graph, *rest: graph)
    with pytest.raises(leangraph.VersionError, match="probe transform gave"):
        _tfcheck.load_native()
    assert OTHER_PATCH not in _tfcheck._VETTED


def test_the_probe_agrees_with_tensorflow_here():
    assert _tfcheck.transform_mismatch(_tfcheck.load_native()) is None


def test_the_installed_extras_name_the_build_series():
    requires = metadata.requires("leangraph")
    assert f'tensorflow-cpu=={MAJOR}.{MINOR}.*; extra == "cpu"' in requires
    assert f'tensorflow=={MAJOR}.{MINOR}.*; extra == "tensorflow"' in requires
    assert not [r for r in requires if r.startswith("tensorflow") and "extra ==" not in r], \
        "TensorFlow must come from an extra only"


def _tf_extras_provider():
    path = Path(__file__).resolve().parents[1] / "packaging" / "tf_extras.py"
    spec = importlib.util.spec_from_file_location("tf_extras", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_extras_provider_pins_the_series_it_finds(monkeypatch):
    provider = _tf_extras_provider()
    assert provider.series_pins("2.22.0rc1") == {
        "cpu": ["tensorflow-cpu==2.22.*"], "tensorflow": ["tensorflow==2.22.*"]}
    monkeypatch.setattr(provider, "build_tf_version", lambda: "2.23.1")
    assert provider.dynamic_metadata({}, {}) == {"optional-dependencies": {
        "cpu": ["tensorflow-cpu==2.23.*"], "tensorflow": ["tensorflow==2.23.*"]}}
    with pytest.raises(RuntimeError, match="major.minor"):
        provider.series_pins("nightly")


def test_the_extras_provider_without_tensorflow_says_what_to_do(monkeypatch):
    provider = _tf_extras_provider()

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(provider.metadata, "version", missing)
    with pytest.raises(RuntimeError, match="pip install --no-build-isolation"):
        provider.build_tf_version()


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(_extras.MissingExtraError, match=r"pip install 'leangraph\[tune\]'"):
        _extras.require("optuna", "leangraph tune")


def test_tune_without_optuna_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((2, 4), np.float32))
    rc = main(["tune", str(tmp_path / "model.pb"), "--data", str(data),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1
    assert "optuna" in err and "pip install 'leangraph[tune]'" in err
    assert not (tmp_path / "out").exists()


def test_a_console_script_without_tensorflow_exits_with_one_line(monkeypatch):
    monkeypatch.setattr(_tfcheck, "installed_tf", lambda: [])
    monkeypatch.setattr(sys, "argv", ["/venv/bin/leangraph", "tune", "model.pb"])
    with pytest.raises(SystemExit) as exit_:
        _tfcheck.check_at_import()
    message = str(exit_.value.code)
    assert message.startswith("leangraph: error: leangraph needs TensorFlow")
    assert "'leangraph[cpu]'" in message and "\n" not in message


def test_a_library_import_without_tensorflow_raises(monkeypatch):
    monkeypatch.setattr(_tfcheck, "installed_tf", lambda: [])
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with pytest.raises(leangraph.VersionError, match=r"leangraph\[tensorflow\]"):
        _tfcheck.check_at_import()
