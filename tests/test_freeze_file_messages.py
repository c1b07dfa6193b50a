"""What the command line says about Keras files a package ships (found in
bench/results/2026-12-06-zen4-real_models-3.md): a weights-only .h5, and a legacy .h5 whose
layers make Keras warn while it loads."""

import warnings

import pytest

from leangraph.cli import main as cli_main

keras = pytest.importorskip("keras")


def legacy_h5(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
        model.save(path)
    return model


def test_weights_only_h5_says_how_to_give_the_model(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save_weights(tmp_path / "w.weights.h5")
    code = cli_main(["optimize", str(tmp_path / "w.weights.h5"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    # the progress line, then the error on one line
    assert code == 1 and err[-1].startswith("leangraph optimize: error:"), err
    assert "weights only" in err[-1] and "model.save('model.keras')" in err[-1]
    assert "--weights" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists()


def test_keras_load_warnings_stay_out_of_the_command_output(tmp_path, capfd, monkeypatch):
    # the command's quiet mode is the default one: TF_CPP_MIN_LOG_LEVEL not set
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    legacy_h5(tmp_path / "m.h5")
    code = cli_main(["freeze", str(tmp_path / "m.h5"), "-o", str(tmp_path / "m.pb")])
    err = capfd.readouterr().err
    assert code == 0, err
    assert "UserWarning" not in err and "input_shape" not in err
    assert (tmp_path / "m.pb").exists()
