"""Eq. 1: normalisation, concatenation order, padding, mask dtypes, parts, errors, config."""

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers.multimodal_features import MultimodalFeatures
from cmsa_tf.layers.spatial_coordinates import spatial_coordinates
from tests.helpers import run_layer_test

B, H, W, T, CV, CL = 2, 3, 4, 5, 6, 7
MASK = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 1]])


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(B, H, W, CV)), rng.normal(size=(B, T, CL)), MASK


def test_features_equal_the_numpy_definition(inputs):
    visual, words, mask = inputs
    f = MultimodalFeatures(dtype="float64")(visual, words, mask).numpy()
    assert f.shape == (B, H, W, T, CV + CL + 8)
    v_hat = visual / np.linalg.norm(visual, axis=-1, keepdims=True)
    e_hat = words / np.linalg.norm(words, axis=-1, keepdims=True)
    s = spatial_coordinates(H, W, "float64").numpy()
    for b in range(B):
        for n in range(T):
            if mask[b, n]:
                expected = np.concatenate(
                    [v_hat[b], np.broadcast_to(e_hat[b, n], (H, W, CL)), s], axis=-1
                )
            else:
                expected = np.zeros((H, W, CV + CL + 8))
            np.testing.assert_allclose(f[b, :, :, n], expected, atol=1e-14)


def test_parts_are_what_call_concatenates(inputs):
    visual, words, mask = inputs
    layer = MultimodalFeatures(dtype="float64")
    f = layer(visual, words, mask).numpy()
    v_hat, e_hat, s = [x.numpy() for x in layer.parts(visual, words, mask)]
    assert v_hat.shape == (B, H, W, CV) and e_hat.shape == (B, T, CL) and s.shape == (B, H, W, 8)
    np.testing.assert_array_equal(e_hat[mask == 0], 0.0)
    np.testing.assert_allclose(np.linalg.norm(e_hat[mask == 1], axis=-1), 1.0, atol=1e-14)
    np.testing.assert_array_equal(f[0, :, :, 1, :CV], v_hat[0])
    np.testing.assert_array_equal(f[1, 2, 3, 4, CV : CV + CL], e_hat[1, 4])
    np.testing.assert_array_equal(f[1, :, :, 2, CV + CL :], s[1])


@pytest.mark.parametrize(
    "mask", [MASK.astype(bool), MASK.astype(np.float32), MASK.astype(np.int64) * 7]
)
def test_any_mask_dtype_gives_the_same_features(inputs, mask):
    visual, words, _ = inputs
    layer = MultimodalFeatures(dtype="float64")
    np.testing.assert_array_equal(layer(visual, words, mask), layer(visual, words, MASK))


def test_zero_vectors_stay_finite():
    layer = MultimodalFeatures()
    f = layer(np.zeros((1, 2, 2, 3), np.float32), np.zeros((1, 2, 4), np.float32), np.ones((1, 2)))
    assert np.all(np.isfinite(f.numpy()))


def test_symbolic_shape_and_dynamic_graph(inputs):
    import keras

    layer = MultimodalFeatures()
    out = layer(keras.Input((H, W, CV)), keras.Input((T, CL)), keras.Input((T,), dtype="int32"))
    assert out.shape == (None, H, W, T, CV + CL + 8)
    fn = tf.function(
        layer,
        input_signature=[
            tf.TensorSpec([None, None, None, CV], tf.float32),
            tf.TensorSpec([None, None, CL], tf.float32),
            tf.TensorSpec([None, None], tf.int32),
        ],
    )
    visual, words, mask = inputs
    np.testing.assert_allclose(
        fn(visual.astype(np.float32), words.astype(np.float32), mask.astype(np.int32)),
        layer(visual, words, mask),
        atol=1e-7,
    )


def test_errors_name_the_input(inputs):
    visual, words, mask = inputs
    layer = MultimodalFeatures()
    with pytest.raises(ValueError, match="`visual`"):
        layer(visual[0], words, mask)
    with pytest.raises(ValueError, match="`word_mask`"):
        layer(visual, words, mask[:, :, None])
    with pytest.raises(ValueError, match="number of words"):
        layer(visual, words, mask[:, :3])
    with pytest.raises(ValueError, match="batch size"):
        layer(visual, words[:1], mask[:1])
    with pytest.raises(ValueError, match="epsilon"):
        MultimodalFeatures(epsilon=0.0)


def test_config_round_trip(inputs):
    layer = MultimodalFeatures(epsilon=1e-6, dtype="float64")
    clone = MultimodalFeatures.from_config(layer.get_config())
    assert clone.epsilon == 1e-6
    np.testing.assert_array_equal(clone(*inputs), layer(*inputs))


def test_passes_the_layer_checks(inputs):
    run_layer_test(
        MultimodalFeatures,
        {"epsilon": 1e-6},
        inputs,
        expected_output_shape=(B, H, W, T, CV + CL + 8),
        expected_num_trainable_weights=0,
    )
