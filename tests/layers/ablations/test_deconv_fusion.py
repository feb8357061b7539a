"""Table 3's Deconv fusion against a NumPy reference, checkpoints, serialization, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers.ablations.deconv_fusion import DeconvFusion
from tests.helpers import run_layer_test

B, H, W, CH = 2, 3, 4, 2


@pytest.fixture
def levels():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(B, H, W, CH)) for _ in range(3)]


def numpy_transposed_conv_same(x, kernel, bias, stride):
    """'same' transposed convolution: every input cell paints kernel-sized patches at stride
    `stride`; the full result is cropped by (k - stride) / 2 at the start (TF's padding)."""
    k = kernel.shape[0]  # kernel [k, k, out, in]
    full = np.zeros(
        (x.shape[0], (x.shape[1] - 1) * stride + k, (x.shape[2] - 1) * stride + k, kernel.shape[2])
    )
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            full[:, i * stride : i * stride + k, j * stride : j * stride + k] += np.einsum(
                "bc,yxoc->byxo", x[:, i, j], kernel
            )
    crop = (k - stride) // 2
    return full[:, crop : crop + stride * x.shape[1], crop : crop + stride * x.shape[2]] + bias


def numpy_conv3x3_same(x, kernel, bias):
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]] @ kernel[dy, dx]
    return out + bias


@pytest.mark.parametrize("factor", [1, 2])
def test_matches_numpy_reference(levels, factor):
    layer = DeconvFusion(channels=CH, upsample_factor=factor, dtype="float64")
    layer(levels)
    rng = np.random.default_rng(1)
    for conv in (layer.upsample, layer.refine):
        conv.bias.assign(0.1 * rng.normal(size=conv.bias.shape))
    got = layer(levels).numpy()
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    up = relu(
        numpy_transposed_conv_same(
            np.concatenate(levels, -1),
            layer.upsample.kernel.numpy(),
            layer.upsample.bias.numpy(),
            factor,
        )
    )
    expected = relu(numpy_conv3x3_same(up, layer.refine.kernel.numpy(), layer.refine.bias.numpy()))
    assert got.shape == (B, factor * H, factor * W, CH)
    assert layer.compute_output_shape([(None, H, W, CH)] * 3) == (None, factor * H, factor * W, CH)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_checkpoint_and_config_round_trip(levels, tmp_path):
    layer = DeconvFusion(channels=CH)
    expected = layer(levels).numpy()
    path = tf.train.Checkpoint(layer=layer).write(str(tmp_path / "ckpt"))
    saved = [n for n, _ in tf.train.list_variables(path) if n.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(layer.variables) == 4
    clone = DeconvFusion.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(levels)
    tf.train.Checkpoint(layer=clone).read(path).assert_consumed()
    np.testing.assert_array_equal(clone(levels).numpy(), expected)
    assert isinstance(
        keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)),
        DeconvFusion,
    )


def test_bad_arguments(levels):
    with pytest.raises(ValueError, match="`upsample_factor`"):
        DeconvFusion(channels=CH, upsample_factor=0)
    with pytest.raises(ValueError, match=r"x3 must have shape"):
        DeconvFusion(channels=CH)([levels[0], levels[1], levels[2][0]])


def test_passes_the_layer_checks(levels):
    run_layer_test(
        DeconvFusion,
        {"channels": CH, "upsample_factor": 2},
        (levels,),
        expected_output_shape=(B, 2 * H, 2 * W, CH),
        expected_num_trainable_weights=4,
    )
