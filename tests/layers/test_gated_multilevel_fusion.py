"""Eq. 5: the gated fusion against a NumPy reference, gammas, errors, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers.gated_multilevel_fusion import GatedMultiLevelFusion
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
            out += padded[:, dy : dy + H, dx : dx + W] @ kernel[dy, dx]
    return out + bias


def numpy_fusion(levels, convs, gammas):
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    total = 0.0
    for i, (kernel, bias) in enumerate(convs):
        j, k = [other for other in range(3) if other != i]
        y = numpy_conv3x3_same(levels[i], kernel, bias)
        c, m, r = y[..., :CH], sigmoid(y[..., CH : 2 * CH] + 1), sigmoid(y[..., 2 * CH :] + 1)
        cell = gammas[i] * m * levels[j] + (1 - gammas[i]) * m * levels[k] + (1 - m) * c
        total = total + r * np.tanh(cell) + (1 - r) * levels[i]
    return total


def test_matches_numpy_reference(levels):
    layer = GatedMultiLevelFusion(channels=CH, dtype="float64")
    layer(levels)
    # Distinct gammas and non-zero biases so a swapped level or gate would show.
    for gamma, value in zip(layer.gammas, (0.2, 0.5, 0.9)):
        gamma.assign(value)
    for conv in layer.gate_convs:
        conv.bias.assign(np.random.default_rng(1).normal(size=3 * CH))
    got = layer(levels).numpy()
    convs = [(c.kernel.numpy(), c.bias.numpy()) for c in layer.gate_convs]
    expected = numpy_fusion(levels, convs, [0.2, 0.5, 0.9])
    assert got.shape == (B, H, W, CH)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_gammas_are_trainable_scalars_initialised_to_half(levels):
    layer = GatedMultiLevelFusion(channels=CH)
    levels32 = [tf.constant(x, tf.float32) for x in levels]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(levels32) ** 2)
    grads = tape.gradient(loss, layer.gammas)
    assert len(layer.gammas) == 3
    for gamma, grad in zip(layer.gammas, grads):
        assert gamma.shape == () and gamma.trainable and float(gamma.numpy()) == 0.5
        assert abs(float(grad)) > 0
    assert len(layer.trainable_weights) == 3 + 3 * 2
    custom = GatedMultiLevelFusion(channels=CH, gamma_initializer=0.25)
    custom(levels32)
    assert [float(g.numpy()) for g in custom.gammas] == [0.25] * 3


def test_level_order_matters(levels):
    layer = GatedMultiLevelFusion(channels=CH, dtype="float64")
    out = layer(levels).numpy()
    swapped = layer([levels[1], levels[0], levels[2]]).numpy()
    assert np.abs(out - swapped).max() > 1e-3


def test_errors(levels):
    layer = GatedMultiLevelFusion(channels=CH)
    with pytest.raises(ValueError, match="list of 3"):
        layer(levels[:2])
    with pytest.raises(ValueError, match="x2 must have shape"):
        layer([levels[0], levels[1][..., :2], levels[2]])
    with pytest.raises(ValueError, match="`channels`"):
        GatedMultiLevelFusion(channels=0)
    with pytest.raises(ValueError, match="`gamma_initializer`"):
        GatedMultiLevelFusion(gamma_initializer="no_such_initializer")


def test_config_round_trip_and_saved_model(levels, tmp_path):
    layer = GatedMultiLevelFusion(channels=CH, gamma_initializer=0.3, name="fusion")
    config = layer.get_config()
    assert config["channels"] == CH and config["gamma_initializer"] == 0.3
    clone = GatedMultiLevelFusion.from_config(config)
    levels32 = [x.astype(np.float32) for x in levels]
    expected = layer(levels32)
    clone(levels32)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(levels32), expected)

    inputs = [keras.Input((H, W, CH)) for _ in range(3)]
    model = keras.Model(inputs, GatedMultiLevelFusion(channels=CH)(inputs))
    assert model.output_shape == (None, H, W, CH)
    expected = model.predict(levels32, verbose=0)
    model.save(tmp_path / "fusion.keras")
    restored = keras.saving.load_model(tmp_path / "fusion.keras")
    np.testing.assert_array_equal(restored.predict(levels32, verbose=0), expected)


def test_gate_convolutions_are_initialised_independently(levels):
    layer = GatedMultiLevelFusion(channels=CH)
    layer([x.astype(np.float32) for x in levels])
    kernels = [conv.kernel.numpy() for conv in layer.gate_convs]
    assert np.abs(kernels[0] - kernels[1]).max() > 1e-3
    assert np.abs(kernels[1] - kernels[2]).max() > 1e-3


def test_passes_the_layer_checks(levels):
    run_layer_test(
        GatedMultiLevelFusion,
        {"channels": levels[0].shape[-1]},
        (levels,),
        expected_output_shape=levels[0].shape,
        expected_num_trainable_weights=9,
    )
