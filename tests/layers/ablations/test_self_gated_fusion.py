"""Table 3's self-gated fusion against a NumPy reference, checkpoints, serialization, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers.ablations.self_gated_fusion import SelfGatedFusion
from tests.helpers import run_layer_test

B, H, W, CH = 2, 4, 5, 3


@pytest.fixture
def levels():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(B, H, W, CH)) for _ in range(3)]


def numpy_conv3x3_same(x, kernel, bias):
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]] @ kernel[dy, dx]
    return out + bias


def numpy_self_gated(levels, convs):
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    total = 0.0
    for x, (kernel, bias) in zip(levels, convs):
        y = numpy_conv3x3_same(x, kernel, bias)
        c, m, r = y[..., :CH], sigmoid(y[..., CH : 2 * CH] + 1), sigmoid(y[..., 2 * CH :] + 1)
        cell = m * x + (1 - m) * c
        total = total + r * np.tanh(cell) + (1 - r) * x
    return total


def test_matches_numpy_reference(levels):
    layer = SelfGatedFusion(channels=CH, dtype="float64")
    layer(levels)
    for index, conv in enumerate(layer.gate_convs):
        conv.bias.assign(np.random.default_rng(index).normal(size=3 * CH))
    got = layer(levels).numpy()
    convs = [(c.kernel.numpy(), c.bias.numpy()) for c in layer.gate_convs]
    expected = numpy_self_gated(levels, convs)
    assert got.shape == (B, H, W, CH)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # No cross-level interaction: changing x2 leaves level 1's and level 3's terms alone.
    changed = [levels[0], levels[1] + 1.0, levels[2]]
    delta = layer(changed).numpy() - got
    only_level_2 = numpy_self_gated([0 * levels[0], changed[1], 0 * levels[2]], convs) - (
        numpy_self_gated([0 * levels[0], levels[1], 0 * levels[2]], convs)
    )
    np.testing.assert_allclose(delta, only_level_2, rtol=0, atol=1e-12)


def test_checkpoint_and_config_round_trip(levels, tmp_path):
    layer = SelfGatedFusion(channels=CH)
    expected = layer(levels).numpy()
    path = tf.train.Checkpoint(layer=layer).write(str(tmp_path / "ckpt"))
    saved = [n for n, _ in tf.train.list_variables(path) if n.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(layer.variables) == 6
    clone = SelfGatedFusion.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(levels)
    assert np.abs(clone(levels).numpy() - expected).max() > 1e-6  # distinct initial weights
    tf.train.Checkpoint(layer=clone).read(path).assert_consumed()
    np.testing.assert_array_equal(clone(levels).numpy(), expected)
    assert isinstance(
        keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)),
        SelfGatedFusion,
    )


def test_bad_inputs(levels):
    with pytest.raises(ValueError, match="`channels`"):
        SelfGatedFusion(channels=0)
    layer = SelfGatedFusion(channels=CH)
    with pytest.raises(ValueError, match="list of 3 feature maps"):
        layer(levels[:2])
    with pytest.raises(ValueError, match=r"x2 must have shape \[batch, height, width, 3\]"):
        layer([levels[0], levels[1][..., :2], levels[2]])


def test_passes_the_layer_checks(levels):
    run_layer_test(
        SelfGatedFusion,
        {"channels": CH},
        (levels,),
        expected_output_shape=(B, H, W, CH),
        expected_num_trainable_weights=6,
    )
