"""Table 2's attention ablations against NumPy references of their definitions (float64)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers.ablations.ablated_cross_modal_attention import (
    VARIANTS,
    AblatedCrossModalAttention,
)
from cmsa_tf.layers.cross_modal_self_attention import CrossModalSelfAttention
from tests.helpers import run_layer_test

B, H, W, T, CV, CL, D = 2, 3, 4, 5, 6, 5, 4
P, C = H * W, CV + CL + 8
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(B, H, W, CV)), rng.normal(size=(B, T, CL)), MASK


def make_layer(variant, inputs, dtype="float64"):
    layer = AblatedCrossModalAttention(variant=variant, key_dim=D, dtype=dtype)
    layer(*inputs)
    # Non-zero biases, so a dropped bias term would show.
    rng = np.random.default_rng(3)
    for weight in layer.weights:
        if weight.path.endswith("_bias"):
            weight.assign(rng.normal(size=weight.shape))
    return layer


# ---------------------------------------------------------------- NumPy reference


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_features(visual, words):
    """f[b, p, n] of Eq. 1 for all words, [B, P, T, C], straight from its definition."""

    def normalize(x):
        return x / np.sqrt(np.maximum((x**2).sum(-1, keepdims=True), 1e-12))

    spatial = np.zeros((H, W, 8))
    for h in range(H):
        for w in range(W):
            xmin, xmax = 2 * w / W - 1, 2 * (w + 1) / W - 1
            ymin, ymax = 2 * h / H - 1, 2 * (h + 1) / H - 1
            spatial[h, w] = [
                xmin,
                ymin,
                xmax,
                ymax,
                (xmin + xmax) / 2,
                (ymin + ymax) / 2,
                1 / W,
                1 / H,
            ]
    v = np.broadcast_to(normalize(visual).reshape(B, P, 1, CV), (B, P, T, CV))
    e = np.broadcast_to(normalize(words)[:, None], (B, P, T, CL))
    s = np.broadcast_to(spatial.reshape(1, P, 1, 8), (B, P, T, 8))
    return np.concatenate([v, e, s], axis=-1)


def reference(variant, visual, words, mask, weights):
    """G [B, H, W, C], word attention [B, T], position attention [B, H, W], from the definitions.

    Only the real words of each sample are kept, so padding cannot enter anything.
    """
    f_all = np_features(visual, words)
    outputs = np.zeros((B, P, C))
    word_attention, position_attention = np.zeros((B, T)), np.zeros((B, P))
    for b in range(B):
        real = np.flatnonzero(mask[b])
        n_real = len(real)
        if n_real == 0:
            continue
        f = f_all[b][:, real]  # [P, N, C]
        if variant == "none":
            g = f
            word_attention[b, real] = 1 / n_real
            position_attention[b] = 1 / P
        else:
            v = f @ weights["value_kernel"] + weights["value_bias"]  # [P, N, d]
            if variant in ("word", "pixel"):
                q = f @ weights["query_kernel"] + weights["query_bias"]
                k = f @ weights["key_kernel"] + weights["key_bias"]
            r = np.zeros((P, n_real, D))
            if variant == "word":  # over the words n' at the query's position
                for p in range(P):
                    a = softmax(q[p] @ k[p].T)  # [N (query n), N (key n')]
                    r[p] = a @ v[p]
                    word_attention[b, real] += a.mean(0) / P
                position_attention[b] = 1 / P
            elif variant == "pixel":  # over the positions p' of the query's word
                for n in range(n_real):
                    a = softmax(q[:, n] @ k[:, n].T)  # [P (query p), P (key p')]
                    r[:, n] = a @ v[:, n]
                    position_attention[b] += a.mean(0) / n_real
                word_attention[b, real] = 1 / n_real
            else:  # word_pixel_pair: one distribution over all pairs, no query
                a = softmax((f @ weights["score_kernel"])[..., 0].ravel()).reshape(P, n_real)
                r[:] = np.einsum("pn,pnd->d", a, v)
                word_attention[b, real] = a.sum(0)
                position_attention[b] = a.sum(1)
            g = r @ weights["output_kernel"] + weights["output_bias"] + f
        outputs[b] = g.mean(axis=1)
    return (
        outputs.reshape(B, H, W, C),
        word_attention,
        position_attention.reshape(B, H, W),
    )


def layer_weights(layer):
    return {w.path.split("/")[-1]: w.numpy() for w in layer.weights}


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_numpy_reference(variant, inputs):
    layer = make_layer(variant, inputs)
    outputs, attention = layer(*inputs, return_attention=True)
    expected, word_attention, position_attention = reference(variant, *inputs, layer_weights(layer))
    assert outputs.shape == (B, H, W, C)
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(attention["word_attention"], word_attention, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        attention["position_attention"], position_attention, rtol=0, atol=1e-12
    )
    # Distributions over the real words / all positions.
    np.testing.assert_allclose(np.sum(attention["word_attention"], -1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.sum(attention["position_attention"], (1, 2)), 1.0, atol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_match_numpy_reference(variant, inputs):
    """Directional derivatives of sum(G * c) w.r.t. inputs and weights, against central
    differences of the NumPy reference (checks the pixel variant's custom-gradient softmax)."""
    layer = make_layer(variant, inputs)
    visual, words, mask = inputs
    rng = np.random.default_rng(5)
    cotangent = rng.normal(size=(B, H, W, C))
    visual_t, words_t = tf.constant(visual), tf.constant(words)
    with tf.GradientTape() as tape:
        tape.watch([visual_t, words_t])
        loss = tf.reduce_sum(layer(visual_t, words_t, mask) * cotangent)
    names = [w.path.split("/")[-1] for w in layer.trainable_weights]
    grads = tape.gradient(loss, [visual_t, words_t] + layer.trainable_weights)
    directions = [rng.normal(size=np.shape(g)) for g in grads]
    analytic = sum(float(np.sum(np.asarray(g) * u)) for g, u in zip(grads, directions))

    def numpy_loss(eps):
        weights = layer_weights(layer)
        for name, u in zip(names, directions[2:]):
            weights[name] = weights[name] + eps * u
        out, _, _ = reference(
            variant, visual + eps * directions[0], words + eps * directions[1], mask, weights
        )
        return float(np.sum(out * cotangent))

    eps = 1e-6
    numeric = (numpy_loss(eps) - numpy_loss(-eps)) / (2 * eps)
    assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric)), (analytic, numeric)


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_takes_no_part_and_empty_sentences_are_zero(variant, inputs):
    layer = make_layer(variant, inputs, dtype="float32")
    visual, words, mask = inputs
    outputs = layer(visual, words, mask).numpy()
    # Padding slots may hold anything, and more of them changes nothing.
    noise = 1e3 * np.random.default_rng(1).normal(size=words.shape)
    noisy = np.where(mask[..., None] > 0, words, noise)
    np.testing.assert_allclose(layer(visual, noisy, mask), outputs, rtol=1e-5, atol=1e-5)
    longer = np.concatenate([words, np.ones((B, 3, CL))], axis=1)
    longer_mask = np.pad(mask, ((0, 0), (0, 3)))
    out, attention = layer(visual, longer, longer_mask, return_attention=True)
    np.testing.assert_allclose(out, outputs, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(attention["word_attention"].numpy()[0, 3:], 0.0)
    # A sample with no word: zeros, no NaN, in the outputs and the gradients.
    empty = np.zeros_like(mask)
    visual_t = tf.constant(visual, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(visual_t)
        out, attention = layer(visual_t, words, empty, return_attention=True)
        loss = tf.reduce_sum(out)
    np.testing.assert_array_equal(out.numpy(), 0.0)
    np.testing.assert_array_equal(attention["word_attention"].numpy(), 0.0)
    np.testing.assert_array_equal(attention["position_attention"].numpy(), 0.0)
    grads = tape.gradient(loss, [visual_t] + layer.trainable_weights)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads if g is not None)


def test_word_and_pixel_attention_are_the_marginals_of_cmsa(inputs):
    """With the same Wq and Wk, the full attention is the product of the two partial ones."""
    full = CrossModalSelfAttention(key_dim=D, dtype="float64")
    full(*inputs)
    for variant, key in (("word", "word_attention"), ("pixel", "position_attention")):
        layer = make_layer(variant, inputs)
        weights = layer_weights(layer)
        for weight in full.weights:
            weight.assign(weights[weight.path.split("/")[-1]])
        _, expected = full(*inputs, return_attention=True)
        _, got = layer(*inputs, return_attention=True)
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-12)


def test_weights_and_symbolic_shapes(inputs):
    expected = {
        "none": set(),
        "word": {
            "query_kernel",
            "query_bias",
            "key_kernel",
            "key_bias",
            "value_kernel",
            "value_bias",
            "output_kernel",
            "output_bias",
        },
        "pixel": {
            "query_kernel",
            "query_bias",
            "key_kernel",
            "key_bias",
            "value_kernel",
            "value_bias",
            "output_kernel",
            "output_bias",
        },
        "word_pixel_pair": {
            "score_kernel",
            "value_kernel",
            "value_bias",
            "output_kernel",
            "output_bias",
        },
    }
    for variant in VARIANTS:
        layer = AblatedCrossModalAttention(variant=variant, key_dim=D)
        layer(*inputs)
        shapes = {w.path.split("/")[-1]: tuple(w.shape) for w in layer.weights}
        assert set(shapes) == expected[variant], variant
        if variant != "none":
            assert shapes["value_kernel"] == (C, D) and shapes["output_kernel"] == (D, C)
        assert layer.compute_output_shape((None, H, W, CV), (None, T, CL), (None, T)) == (
            None,
            H,
            W,
            C,
        )
        symbolic, attention = layer(
            keras.Input((None, None, CV)),
            keras.Input((None, CL)),
            keras.Input((None,)),
            return_attention=True,
        )
        assert symbolic.shape == (None, None, None, C)
        assert attention["position_attention"].shape == (None, None, None)


def test_config_round_trip(inputs):
    layer = AblatedCrossModalAttention(variant="word_pixel_pair", key_dim=D, epsilon=1e-9)
    expected = layer(*inputs).numpy()
    config = layer.get_config()
    assert config["variant"] == "word_pixel_pair" and config["key_dim"] == D
    clone = AblatedCrossModalAttention.from_config(config)
    assert clone.get_config() == config
    clone(*inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(*inputs), expected)
    # Registered for .keras files.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, AblatedCrossModalAttention)
    assert restored.variant == "word_pixel_pair"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"variant": "cmsa"}, "`variant`.*CrossModalSelfAttention"),
        ({"variant": "words"}, "`variant`"),
        ({"key_dim": 0}, "`key_dim`"),
        ({"epsilon": -1.0}, "`epsilon`"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AblatedCrossModalAttention(**kwargs)


def test_bad_inputs(inputs):
    visual, words, mask = inputs
    layer = AblatedCrossModalAttention(variant="word", key_dim=D)
    with pytest.raises(ValueError, match="`words` must have shape"):
        layer(visual, words[0], mask)
    layer(visual, words, mask)
    with pytest.raises(ValueError, match="built for 6 visual"):
        layer(visual[..., :4], words, mask)


@pytest.mark.parametrize(
    "variant,weights", [("none", 0), ("word", 8), ("pixel", 8), ("word_pixel_pair", 5)]
)
def test_passes_the_layer_checks(inputs, variant, weights):
    run_layer_test(
        AblatedCrossModalAttention,
        {"variant": variant, "key_dim": D},
        inputs,
        call_kwargs={"return_attention": True},
        expected_output_shape=(
            (B, H, W, C),
            {"word_attention": (B, T), "position_attention": (B, H, W)},
        ),
        expected_num_trainable_weights=weights,
    )
