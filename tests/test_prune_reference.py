"""The MNIST reference models' data and structure (training is left to the bench)."""

import numpy as np
import pytest

from leangraph import PruneError
from leangraph.prune import groups as G
from leangraph.prune import reference


@pytest.mark.slow
def test_mnist_split_is_fixed_and_disjoint():
    x_train, y_train, x_test, y_test = reference.mnist_data()
    assert x_train.shape == (4250, 28, 28, 1) and x_test.shape == (750, 28, 28, 1)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert sorted(set(y_train.tolist())) == list(range(10))
    again = reference.mnist_data()
    np.testing.assert_array_equal(again[3], y_test)
    # no test image is also a training image
    train_rows = {row.tobytes() for row in x_train.reshape(len(x_train), -1)}
    assert not any(row.tobytes() in train_rows for row in x_test.reshape(len(x_test), -1))


@pytest.mark.parametrize("name, coupled", [
    ("resnet", ("s1b1_conv2", "s1b2_conv2", "stem")),
    ("mobilenet", ("ir1_project", "ir2_project")),
    ("densenet", ("d1l1_conv2",)),
])
def test_reference_models_are_fully_prunable(name, coupled):
    model = reference._BUILDERS[name]()
    graph = G.ChannelGraph(model)
    assert graph.unsupported == []
    assert graph.prunable_share() == 1.0
    assert graph.group_of(coupled[0]).producers == coupled


def test_unknown_reference_name():
    with pytest.raises(PruneError, match="unknown reference model 'vgg'"):
        reference.reference("vgg")
