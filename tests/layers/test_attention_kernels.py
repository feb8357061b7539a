"""The pure kernels: the softmax mean over words (product, all-words and word-by-word paths, the
last with its custom gradient), word weights."""

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers import attention_kernels

PRODUCT = [None, -1]  # the product path where the spreads allow (all of these tests), or never


@pytest.mark.parametrize("product_range", PRODUCT)
@pytest.mark.parametrize("memory_bytes", [0, 1, 1 << 30])  # word by word, or all words at once
def test_word_averaged_softmax_matches_autodiff_of_the_naive_sum(memory_bytes, product_range):
    rng = np.random.default_rng(0)
    base = tf.constant(rng.normal(size=(2, 3, 4)))
    per_word = tf.constant(rng.normal(size=(2, 5, 4)))
    weights = tf.constant(rng.uniform(size=(2, 5)))
    cotangent = tf.constant(rng.normal(size=(2, 3, 4)))

    def naive(base, per_word, weights):  # materialises [B, T, P, Q]
        sigma = tf.nn.softmax(base[:, None] + per_word[:, :, None], axis=-1)
        return tf.einsum("btpq,bt->bpq", sigma, weights)

    results = []
    for fn in (naive, attention_kernels.word_averaged_softmax):
        with tf.GradientTape() as tape:
            tape.watch([base, per_word, weights])
            out = (
                fn(base, per_word, weights, memory_bytes, product_range)
                if fn is not naive
                else naive(base, per_word, weights)
            )
            loss = tf.reduce_sum(out * cotangent)
        results.append([out] + tape.gradient(loss, [base, per_word, weights]))
    for expected, got in zip(*results):
        np.testing.assert_allclose(got, expected, atol=1e-13)


@pytest.mark.parametrize("product_range", PRODUCT)
@pytest.mark.parametrize("memory_bytes", [0, 1, 1 << 30])
def test_word_averaged_softmax_in_a_graph_with_dynamic_words(memory_bytes, product_range):
    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None])] * 2 + [tf.TensorSpec([None, None])],
    )
    def fn(base, word_logits, weights):
        with tf.GradientTape() as tape:
            tape.watch(word_logits)
            out = attention_kernels.word_averaged_softmax(
                base, word_logits, weights, memory_bytes, product_range
            )
            loss = tf.reduce_sum(out * tf.range(3, dtype=out.dtype))
        return out, tape.gradient(loss, word_logits)

    rng = np.random.default_rng(4)
    base = tf.constant(rng.normal(size=(1, 2, 3)), tf.float32)
    logits = tf.constant(rng.normal(size=(1, 4, 3)), tf.float32)
    weights = tf.fill([1, 4], 0.25)
    out, grad = fn(base, logits, weights)
    expected, expected_grad = fn.python_function(base, logits, weights)
    np.testing.assert_allclose(out.numpy().sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, atol=1e-6)
    assert np.abs(grad).max() > 0


def test_word_weights_and_mask_value():
    weights, has_words = attention_kernels.word_weights(
        tf.constant([[True, False, True], [False, False, False]]), tf.float64
    )
    np.testing.assert_allclose(weights, [[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(has_words, [1.0, 0.0])
    for dtype in (tf.float16, tf.bfloat16, tf.float32, tf.float64):
        value = attention_kernels.mask_value(dtype)
        assert value.dtype == dtype
        assert float(tf.exp(tf.cast(value, tf.float32) - 50.0)) == 0.0


def _naive_with_gradients(base, per_word, weights, cotangent, fn):
    with tf.GradientTape() as tape:
        tape.watch([base, per_word, weights])
        out = fn(base, per_word, weights)
        loss = tf.reduce_sum(out * cotangent)
    return [out] + tape.gradient(loss, [base, per_word, weights])


def _naive(base, per_word, weights):  # materialises [B, T, P, Q]
    sigma = tf.nn.softmax(base[:, None] + per_word[:, :, None], axis=-1)
    return tf.einsum("btpq,bt->bpq", sigma, weights)


@pytest.mark.parametrize("memory_bytes", [0, 1 << 30])
def test_product_path_equals_the_softmax_mean_padding_words_with_any_logits(memory_bytes):
    rng = np.random.default_rng(7)
    base = tf.constant(rng.normal(scale=4.0, size=(2, 6, 5)))
    per_word = rng.normal(scale=4.0, size=(2, 4, 5))
    per_word[1, 3] = [1e4, -1e4, 0.0, 3e3, -7.0]  # a padding word (weight 0): never read
    per_word = tf.constant(per_word)
    weights = tf.constant([[0.25, 0.25, 0.25, 0.25], [0.5, 0.0, 0.5, 0.0]], tf.float64)
    cotangent = tf.constant(rng.normal(size=(2, 6, 5)))
    expected = _naive_with_gradients(base, per_word, weights, cotangent, _naive)
    forced = _naive_with_gradients(  # the product path whatever the spreads
        base,
        per_word,
        weights,
        cotangent,
        lambda *a: attention_kernels.word_averaged_softmax(*a, memory_bytes, product_range=1e9),
    )
    chosen = _naive_with_gradients(
        base,
        per_word,
        weights,
        cotangent,
        lambda *a: attention_kernels.word_averaged_softmax(*a, memory_bytes),
    )
    for got in (forced, chosen):
        np.testing.assert_allclose(got[0], expected[0], atol=1e-13)
        np.testing.assert_allclose(got[1], expected[1], atol=1e-12)
        np.testing.assert_allclose(got[2][0], expected[2][0], atol=1e-12)
        np.testing.assert_allclose(got[2][1, :3], expected[2][1, :3], atol=1e-12)
        np.testing.assert_allclose(got[3], expected[3], atol=1e-12)


def test_logits_spread_beyond_the_product_range_take_the_exact_paths():
    # Both spreads about 300 in float32: a product normaliser underflows (exp(-300) = 0), so
    # the product alone returns zeros and NaNs there; the guard takes the word loop instead.
    rng = np.random.default_rng(8)
    base = np.zeros((1, 3, 4), np.float32)
    base[0, :, 0] = 300.0
    per_word = np.zeros((1, 2, 4), np.float32)
    per_word[0, :, 1] = 300.0
    per_word += rng.normal(size=per_word.shape).astype(np.float32)
    base, per_word = tf.constant(base), tf.constant(per_word)
    weights = tf.constant([[0.5, 0.5]])
    assert attention_kernels.product_logit_range(tf.float32) == pytest.approx(61.1, abs=0.1)
    expected = _naive(base, per_word, weights)
    forced = attention_kernels.word_averaged_softmax(base, per_word, weights, product_range=1e9)
    assert not np.allclose(forced, expected, atol=1e-3)
    for memory_bytes in (0, 1 << 30):
        got = attention_kernels.word_averaged_softmax(base, per_word, weights, memory_bytes)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        np.testing.assert_allclose(tf.reduce_sum(got, -1), 1.0, atol=1e-6)
