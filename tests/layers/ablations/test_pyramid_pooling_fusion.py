"""Table 3's PPM fusion against a NumPy reference, adaptive pooling, checkpoints, errors."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers.ablations.pyramid_pooling_fusion import (
    PyramidPoolingFusion,
    adaptive_average_pool,
)
from tests.helpers import run_layer_test

B, H, W, CH = 2, 4, 5, 4
BINS = (1, 2, 3, 6)  # 6 > H, W: bins then share cells


@pytest.fixture
def levels():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(B, H, W, CH)) for _ in range(3)]


def numpy_adaptive_pool(x, bins):
    out = np.zeros((x.shape[0], bins, bins, x.shape[-1]))
    for i in range(bins):
        r0, r1 = (i * x.shape[1]) // bins, math.ceil((i + 1) * x.shape[1] / bins)
        for j in range(bins):
            c0, c1 = (j * x.shape[2]) // bins, math.ceil((j + 1) * x.shape[2] / bins)
            out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return out


def bilinear_matrix(in_size, out_size):
    """Half-pixel-centre bilinear resizing as a [out, in] matrix."""
    matrix = np.zeros((out_size, in_size))
    for o in range(out_size):
        x = max((o + 0.5) * in_size / out_size - 0.5, 0.0)
        x0 = int(math.floor(x))
        x1 = min(x0 + 1, in_size - 1)
        matrix[o, x0] += 1 - (x - x0)
        matrix[o, x1] += x - x0
    return matrix


def numpy_conv_same(x, kernel, bias):
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for dy in range(k):
        for dx in range(k):
            out += padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]] @ kernel[dy, dx]
    return out + bias


def test_adaptive_average_pool_matches_numpy():
    x = np.random.default_rng(1).normal(size=(2, 5, 7, 3))
    for bins in (1, 2, 3, 6, 8):
        np.testing.assert_allclose(
            adaptive_average_pool(tf.constant(x), bins).numpy(),
            numpy_adaptive_pool(x, bins),
            rtol=0,
            atol=1e-12,
        )


def test_matches_numpy_reference(levels):
    layer = PyramidPoolingFusion(channels=CH, bins=BINS, dtype="float64")
    layer(levels)
    rng = np.random.default_rng(2)
    for conv in layer.branch_convs + [layer.output_conv]:
        conv.bias.assign(0.1 * rng.normal(size=conv.bias.shape))
    got = layer(levels).numpy()
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    x = np.concatenate(levels, axis=-1)
    pyramid = [x]
    for bins, conv in zip(BINS, layer.branch_convs):
        branch = relu(
            numpy_conv_same(numpy_adaptive_pool(x, bins), conv.kernel.numpy(), conv.bias.numpy())
        )
        pyramid.append(
            np.einsum(
                "hi,wj,bijc->bhwc", bilinear_matrix(bins, H), bilinear_matrix(bins, W), branch
            )
        )
    expected = relu(
        numpy_conv_same(
            np.concatenate(pyramid, -1),
            layer.output_conv.kernel.numpy(),
            layer.output_conv.bias.numpy(),
        )
    )
    assert got.shape == (B, H, W, CH) and layer.branch_channels == 1
    assert np.abs(expected).max() > 0.1
    # tf.image.resize computes its interpolation weights in float32, even for float64 maps.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_checkpoint_and_config_round_trip(levels, tmp_path):
    layer = PyramidPoolingFusion(channels=CH, bins=(1, 2))
    expected = layer(levels).numpy()
    path = tf.train.Checkpoint(layer=layer).write(str(tmp_path / "ckpt"))
    saved = [n for n, _ in tf.train.list_variables(path) if n.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(layer.variables) == 6
    config = layer.get_config()
    assert config["bins"] == (1, 2)
    clone = PyramidPoolingFusion.from_config(config)
    assert clone.get_config() == config
    clone(levels)
    tf.train.Checkpoint(layer=clone).read(path).assert_consumed()
    np.testing.assert_array_equal(clone(levels).numpy(), expected)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, PyramidPoolingFusion) and restored.bins == (1, 2)


def test_bad_arguments(levels):
    with pytest.raises(ValueError, match="`bins`"):
        PyramidPoolingFusion(channels=CH, bins=(1, 0))
    with pytest.raises(ValueError, match="`bins`"):
        PyramidPoolingFusion(channels=CH, bins=())
    with pytest.raises(ValueError, match="list of 3 feature maps"):
        PyramidPoolingFusion(channels=CH)(levels[0])


def test_passes_the_layer_checks(levels):
    run_layer_test(
        PyramidPoolingFusion,
        {"channels": CH, "bins": (1, 2)},
        (levels,),
        expected_output_shape=(B, H, W, CH),
        expected_num_trainable_weights=6,
    )
