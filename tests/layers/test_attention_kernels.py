"""The pure kernels: the word-by-word softmax mean and its custom gradient, word weights."""

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers import attention_kernels


@pytest.mark.parametrize("memory_bytes", [0, 1, 1 << 30])  # word by word, or all words at once
def test_word_averaged_softmax_matches_autodiff_of_the_naive_sum(memory_bytes):
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
                fn(base, per_word, weights, memory_bytes)
                if fn is not naive
                else naive(base, per_word, weights)
            )
            loss = tf.reduce_sum(out * cotangent)
        results.append([out] + tape.gradient(loss, [base, per_word, weights]))
    for expected, got in zip(*results):
        np.testing.assert_allclose(got, expected, atol=1e-13)


@pytest.mark.parametrize("memory_bytes", [0, 1, 1 << 30])
def test_word_averaged_softmax_in_a_graph_with_dynamic_words(memory_bytes):
    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None])] * 2 + [tf.TensorSpec([None, None])],
    )
    def fn(base, word_logits, weights):
        with tf.GradientTape() as tape:
            tape.watch(word_logits)
            out = attention_kernels.word_averaged_softmax(base, word_logits, weights, memory_bytes)
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
