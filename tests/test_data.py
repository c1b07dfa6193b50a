"""pipeline.data: every --data form, the checks against the model's inputs, the seeded split."""

import numpy as np
import pytest

from leangraph.errors import DataError
from leangraph.freeze import TensorInfo
from leangraph.pipeline import data as D

ONE = [TensorInfo("image", "float32", (1, 8, 8, 3))]
TWO = [TensorInfo("tokens", "int32", (1, 6)), TensorInfo("extra", "float32", (1, 3))]
OUT = [TensorInfo("probs", "float32", (1, 4))]
TWO_OUT = [TensorInfo("cls", "float32", (1, 4)), TensorInfo("value", "float32", (1, 1))]


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 8, 8, 3)).astype(np.float32)


def _two(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"tokens": rng.integers(0, 100, (n, 6)).astype(np.int64),
            "extra": rng.normal(size=(n, 3))}


def test_npz_named_after_the_inputs_with_labels_per_output(tmp_path):
    arrays = _two(5)
    np.savez(tmp_path / "d.npz", **arrays, y_cls=np.arange(5) % 4, y_value=np.ones((5, 1)))
    got = D.read(tmp_path / "d.npz", TWO, TWO_OUT)
    assert got.count == 5 and not got.per_example
    # Token ids keep an integer dtype (the model's), floats become the model's float32.
    assert got.arrays[0].dtype == np.int32 and got.arrays[1].dtype == np.float32
    np.testing.assert_array_equal(got.arrays[0], arrays["tokens"])
    assert sorted(got.labels) == ["cls", "value"]
    np.testing.assert_array_equal(got.labels["cls"], np.arange(5) % 4)


def test_one_input_npz_under_any_name_and_npy(tmp_path):
    x = _images(4)
    np.savez(tmp_path / "d.npz", pixels=x, y=np.arange(4))
    got = D.read(tmp_path / "d.npz", ONE, OUT)
    np.testing.assert_array_equal(got.arrays[0], x)
    np.testing.assert_array_equal(got.labels["probs"], np.arange(4))
    np.save(tmp_path / "d.npy", x)
    got = D.read(tmp_path / "d.npy", ONE, OUT)
    assert got.count == 4 and got.labels == {}


def test_api_forms_arrays_dicts_pairs_and_datasets():
    import tensorflow as tf

    x = _images(6)
    assert D.read(x, ONE).count == 6
    assert D.read((x, np.arange(6)), ONE, OUT).labels["probs"].tolist() == list(range(6))
    two = _two(7)
    assert D.read(two, TWO).arrays[0].dtype == np.int32
    batched = tf.data.Dataset.from_tensor_slices((x, np.arange(6))).batch(4)
    got = D.read(batched, ONE, OUT)
    np.testing.assert_allclose(got.arrays[0], x)
    assert got.labels["probs"].tolist() == list(range(6))
    unbatched = tf.data.Dataset.from_tensor_slices(two)
    got = D.read(unbatched, TWO)
    assert got.count == 7
    np.testing.assert_array_equal(got.arrays[0], two["tokens"])


def test_image_folder_uses_the_preprocessing(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (10, 12), (255, 0, 127 + i)).save(folder / f"{i}.png")
    got = D.read(folder, ONE, preprocessing="tf")
    assert got.count == 3 and got.kind == "images"
    np.testing.assert_allclose(got.arrays[0][0, 0, 0], [1.0, -1.0, 127 / 127.5 - 1], atol=1e-6)
    with pytest.raises(DataError, match="one-input model; this one has 2"):
        D.read(folder, TWO)


def test_folder_of_one_example_files_for_time_major_inputs(tmp_path):
    # Time-major: sequences (T, batch, F) of different lengths T, a lengths vector and a state,
    # which cannot be stacked on axis 0: each file is fed as is.
    inputs = [TensorInfo("seq", "float32", (None, 1, 2)), TensorInfo("lengths", "int32", (1,)),
              TensorInfo("state", "float32", (1, 5))]
    rng = np.random.default_rng(0)
    folder = tmp_path / "ex"
    folder.mkdir()
    for i, steps in enumerate((3, 7, 5)):
        np.savez(folder / f"{i}.npz", seq=rng.normal(size=(steps, 1, 2)),
                 lengths=np.array([steps]), state=rng.normal(size=(1, 5)))
    got = D.read(folder, inputs)
    assert got.per_example and got.count == 3 and got.kind == "files"
    seq = got.arrays[0]
    assert seq[1:2].shape == (7, 1, 2) and seq[1:2].dtype == np.float32  # fed as is
    assert got.arrays[1][2:3].dtype == np.int32 and got.arrays[1][2:3].tolist() == [5]
    assert D.shapes_from_data(inputs, got) == [(None, 1, 2), (1,), (1, 5)]
    np.save(folder / "3.npy", np.zeros((2, 1, 2)))  # a one-input file for a 3-input model
    with pytest.raises(DataError, match="no array for input"):
        D.read(folder, inputs)


def test_unknown_dimensions_are_taken_from_the_data():
    inputs = [TensorInfo("tokens", "int32", (None, None)), TensorInfo("extra", "float32", None)]
    got = D.read(_two(4), inputs)
    assert D.shapes_from_data(inputs, got) == [(None, 6), (None, 3)]


@pytest.mark.parametrize("arrays, message", [
    ({"tokenz": np.zeros((3, 6)), "extra": np.zeros((3, 3))}, "no array for input.*tokens"),
    ({"tokens": np.zeros((3, 6)), "extra": np.zeros((3, 3)), "more": np.zeros(3)},
     "more that name no input"),
    ({"tokens": np.zeros((3, 5)), "extra": np.zeros((3, 3))},
     "input 'tokens' takes shape \\(N, 6\\).*axis 1: 5, not 6"),
    ({"tokens": np.zeros((3, 6, 1)), "extra": np.zeros((3, 3))},
     "input 'tokens' takes rank 2.*rank 3"),
    ({"tokens": np.full((3, 6), 0.5), "extra": np.zeros((3, 3))},
     "input 'tokens' takes int32 \\(integers\\).*fractions"),
    ({"tokens": np.zeros((3, 6), np.int32), "extra": np.array([["a"] * 3] * 3)},
     "input 'extra' takes float32, but the data is <U1"),
    ({"tokens": np.zeros((3, 6)), "extra": np.array([[0, 1, np.nan]] * 3)},
     "input 'extra' holds NaN or Inf in example 0"),
    ({"tokens": np.zeros((0, 6)), "extra": np.zeros((0, 3))}, "no examples"),
    ({"tokens": np.zeros((3, 6)), "extra": np.zeros((2, 3))}, "'extra' has 2 examples"),
])
def test_each_bad_input_gives_one_line_naming_it(arrays, message):
    with pytest.raises(DataError, match=message) as caught:
        D.read(arrays, TWO)
    assert "\n" not in str(caught.value)


def test_bad_files_and_labels(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        D.read(tmp_path / "none.npz", ONE)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read .*bad.npz as .npz"):
        D.read(tmp_path / "bad.npz", ONE)
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(DataError, match="is not an .npz"):
        D.read(tmp_path / "d.csv", ONE)
    with pytest.raises(DataError, match="3 labels for output 'probs', but 4 examples"):
        D.read((_images(4), np.arange(3)), ONE, OUT)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images and no .npy"):
        D.read(tmp_path / "empty", ONE)


@pytest.mark.parametrize("n, held, calibration", [
    (31, 31, None), (32, 16, 16), (64, 16, 48), (100, 25, 75), (1000, 250, 128),
    (4000, 512, 128)])
def test_the_split_holds_out_a_quarter_and_never_shares_examples(n, held, calibration):
    parts = D.split(n)
    assert len(parts.verification) == held
    if calibration is None:
        assert not parts.held_out
        assert D.too_few_note(n) == (f"speed only: too few examples to hold out ({n} given, "
                                     "32 needed)")
        return
    assert len(parts.calibration) == calibration
    assert not set(parts.calibration) & set(parts.verification)
    assert np.array_equal(parts.verification, D.split(n).verification)  # seeded
    assert not np.array_equal(parts.verification, D.split(n, seed=1).verification)


def test_a_scalar_input_missing_from_the_data_points_to_feed():
    """A scalar (or unknown-rank) input the data leaves out, such as keep_prob, is named
    with the flag that sets it instead."""
    inputs = [TensorInfo("x", "float32", (None, 3)), TensorInfo("keep_prob", "float32", None)]
    with pytest.raises(DataError, match=r"no array for input\(s\) keep_prob .*set instead "
                                        r"with --feed keep_prob=VALUE"):
        D.read({"x": np.zeros((4, 3), np.float32)}, inputs)
    inputs = [TensorInfo("x", "float32", (None, 3)), TensorInfo("y", "float32", (None, 3))]
    with pytest.raises(DataError) as missing:
        D.read({"x": np.zeros((4, 3), np.float32)}, inputs)
    assert "--feed" not in str(missing.value)  # a tensor input needs its data
