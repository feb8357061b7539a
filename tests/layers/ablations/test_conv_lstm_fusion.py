"""Table 3's ConvLSTM fusion against a NumPy ConvLSTM over res5 -> res4 -> res3, checkpoints."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers.ablations.conv_lstm_fusion import ConvLSTMFusion
from tests.helpers import run_layer_test

B, H, W, CH = 2, 3, 4, 2


@pytest.fixture
def levels():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(B, H, W, CH)) for _ in range(3)]


def numpy_conv3x3_same(x, kernel):
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]] @ kernel[dy, dx]
    return out


def numpy_conv_lstm(levels, kernel, recurrent_kernel, bias):
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h = np.zeros_like(levels[0])
    c = np.zeros_like(levels[0])
    for x in levels:  # res5, res4, res3: high to low
        z = numpy_conv3x3_same(x, kernel) + numpy_conv3x3_same(h, recurrent_kernel) + bias
        i, f, g, o = np.split(z, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    return h


def test_matches_numpy_reference(levels):
    layer = ConvLSTMFusion(channels=CH, dtype="float64")
    layer(levels)
    cell = layer.conv_lstm.cell
    bias = cell.bias.numpy()
    np.testing.assert_array_equal(bias[CH : 2 * CH], 1.0)  # forget-gate bias starts at 1
    cell.bias.assign(bias + 0.1 * np.random.default_rng(1).normal(size=bias.shape))
    got = layer(levels).numpy()
    expected = numpy_conv_lstm(
        levels, cell.kernel.numpy(), cell.recurrent_kernel.numpy(), cell.bias.numpy()
    )
    assert got.shape == (B, H, W, CH)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # The order matters: the levels are a sequence, not a set.
    reversed_order = numpy_conv_lstm(
        levels[::-1], cell.kernel.numpy(), cell.recurrent_kernel.numpy(), cell.bias.numpy()
    )
    assert np.abs(reversed_order - got).max() > 1e-3


def test_checkpoint_and_config_round_trip(levels, tmp_path):
    layer = ConvLSTMFusion(channels=CH)
    expected = layer(levels).numpy()
    path = tf.train.Checkpoint(layer=layer).write(str(tmp_path / "ckpt"))
    saved = [n for n, _ in tf.train.list_variables(path) if n.endswith("VARIABLE_VALUE")]
    # kernel, recurrent kernel, bias and the dropout RNG state.
    assert len(saved) == len(layer.variables) == 4
    clone = ConvLSTMFusion.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(levels)
    tf.train.Checkpoint(layer=clone).read(path).assert_consumed()
    np.testing.assert_array_equal(clone(levels).numpy(), expected)
    assert isinstance(
        keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)),
        ConvLSTMFusion,
    )


def test_bad_arguments(levels):
    with pytest.raises(ValueError, match="`kernel_size`"):
        ConvLSTMFusion(channels=CH, kernel_size=0)
    with pytest.raises(ValueError, match="list of 3 feature maps"):
        ConvLSTMFusion(channels=CH)(levels + levels[:1])


def test_passes_the_layer_checks(levels):
    run_layer_test(
        ConvLSTMFusion,
        {"channels": CH},
        (levels,),
        expected_output_shape=(B, H, W, CH),
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=1,  # the dropout seed state, kept for checkpoints
    )
