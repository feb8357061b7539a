"""Eq. 1's spatial feature: hand-computed values, shapes, dtype, dynamic sizes, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers.spatial_coordinates import SpatialCoordinates, spatial_coordinates
from tests.helpers import run_layer_test


def test_values_match_hand_computed_grid():
    coords = spatial_coordinates(2, 4, dtype="float64").numpy()
    assert coords.shape == (2, 4, 8)
    # Cell (row 1, column 2) of a 2 x 4 map: x in [0, 0.5], y in [0, 1].
    np.testing.assert_allclose(coords[1, 2], [0.0, 0.0, 0.5, 1.0, 0.25, 0.5, 0.25, 0.5], atol=1e-15)
    # Cell (row 0, column 0): x in [-1, -0.5], y in [-1, 0].
    np.testing.assert_allclose(
        coords[0, 0], [-1.0, -1.0, -0.5, 0.0, -0.75, -0.5, 0.25, 0.5], atol=1e-15
    )
    # xmin varies along columns only, ymin along rows only.
    np.testing.assert_allclose(coords[0, :, 0], [-1.0, -0.5, 0.0, 0.5], atol=1e-15)
    np.testing.assert_allclose(coords[:, 3, 1], [-1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(coords[:, :, 2], coords[:, :, 0] + 0.5, atol=1e-15)


def test_last_cell_ends_at_one_and_dtype():
    coords = spatial_coordinates(3, 5, dtype=tf.float16)
    assert coords.dtype == tf.float16
    coords = spatial_coordinates(3, 5).numpy()
    assert coords.dtype == np.float32
    np.testing.assert_allclose(coords[-1, -1, 2:4], [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(coords[..., 6], 1 / 5, atol=1e-7)
    np.testing.assert_allclose(coords[..., 7], 1 / 3, atol=1e-7)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dtype"):
        spatial_coordinates(2, 2, dtype="int32")
    with pytest.raises(ValueError, match="height"):
        spatial_coordinates(0, 2)


def test_layer_broadcasts_over_batch_and_follows_input_size():
    layer = SpatialCoordinates(dtype="float64")
    features = np.random.normal(size=(3, 2, 4, 5))
    out = layer(features).numpy()
    assert out.shape == (3, 2, 4, 8) and out.dtype == np.float64
    for b in range(3):
        np.testing.assert_array_equal(out[b], spatial_coordinates(2, 4, "float64").numpy())
    assert layer.compute_output_shape((None, 7, 9, 3)) == (None, 7, 9, 8)


def test_layer_with_dynamic_size_in_graph():
    layer = SpatialCoordinates()
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 2])])
    out = fn(tf.zeros([1, 3, 6, 2]))
    np.testing.assert_array_equal(out.numpy()[0], spatial_coordinates(3, 6).numpy())


def test_layer_rejects_wrong_rank_and_round_trips_config():
    layer = SpatialCoordinates(name="coords")
    with pytest.raises(ValueError, match="features"):
        layer(np.zeros((2, 3, 4), np.float32))
    clone = SpatialCoordinates.from_config(layer.get_config())
    assert clone.name == "coords"
    x = keras.Input((4, 5, 3))
    assert clone(x).shape == (None, 4, 5, 8)


def test_passes_the_layer_checks():
    run_layer_test(
        SpatialCoordinates,
        {},
        np.zeros((2, 3, 5, 4), "float32"),
        expected_output_shape=(2, 3, 5, 8),
        expected_num_trainable_weights=0,
    )
