"""The one-level "fusion": the level itself."""

import numpy as np
import pytest

from cmsa_tf.layers.ablations.single_level import SingleLevel
from tests.helpers import run_layer_test

LEVEL = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype("float32")


def test_returns_the_level_and_checks_it():
    np.testing.assert_array_equal(SingleLevel(channels=5)([LEVEL]), LEVEL)
    with pytest.raises(ValueError, match="expected a list of 1 feature maps"):
        SingleLevel(channels=5)([LEVEL, LEVEL])
    with pytest.raises(ValueError, match=r"\[batch, height, width, 4\]"):
        SingleLevel(channels=4)([LEVEL])


def test_passes_the_layer_checks():
    run_layer_test(
        SingleLevel,
        {"channels": 5},
        ([LEVEL],),
        expected_output_shape=(2, 3, 4, 5),
        expected_num_trainable_weights=0,
    )
