"""The chunked kernels' hand-written gradients equal autodiff of the same formulas."""

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers import attention_kernels, chunked_kernels


def _attention_inputs(rows=12, slots=5, dim=3):
    rng = np.random.default_rng(2)
    query = tf.constant(rng.normal(size=(2, rows, dim)))
    key = tf.constant(rng.normal(size=(2, slots, dim)))
    value = tf.constant(rng.normal(size=(2, slots, dim)))
    real = np.ones((2, slots), bool)
    real[1, 3:] = False  # masked key slots
    key_bias = tf.where(real, 0.0, attention_kernels.mask_value(tf.float64))
    query_weights = tf.constant(rng.uniform(size=(2, rows)))
    return query, key, value, key_bias, query_weights


@pytest.mark.parametrize("keep,chunk_rows", [(True, 12), (False, 12), (False, 4), (False, 3)])
def test_chunked_softmax_attention_matches_autodiff(keep, chunk_rows):
    query, key, value, key_bias, query_weights = _attention_inputs()
    rng = np.random.default_rng(3)
    d_attended = tf.constant(rng.normal(size=(2, 12, 3)))
    d_key_attention = tf.constant(rng.normal(size=(2, 5)))

    def reference(query, key, value):
        probs = tf.nn.softmax(tf.matmul(query, key, transpose_b=True) + key_bias[:, None], -1)
        return tf.matmul(probs, value), tf.einsum("bi,bik->bk", query_weights, probs)

    def kernel(query, key, value):
        return chunked_kernels.chunked_softmax_attention(
            query, key, value, key_bias, query_weights, chunk_rows, keep
        )

    results = []
    for fn in (reference, kernel):
        with tf.GradientTape() as tape:
            tape.watch([query, key, value])
            attended, key_attention = fn(query, key, value)
            loss = tf.reduce_sum(attended * d_attended) + tf.reduce_sum(
                key_attention * d_key_attention
            )
        results.append([attended, key_attention] + tape.gradient(loss, [query, key, value]))
    for expected, got in zip(*results):
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # Masked key slots get no attention and no gradient.
    np.testing.assert_array_equal(results[1][1][1, 3:], 0.0)
    np.testing.assert_array_equal(results[1][3][1, 3:], 0.0)


def test_chunked_softmax_attention_with_a_dynamic_chunk_size_in_a_graph():
    query, key, value, key_bias, query_weights = _attention_inputs()

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def run(chunk_rows):
        with tf.GradientTape() as tape:
            tape.watch(query)
            attended, _ = chunked_kernels.chunked_softmax_attention(
                query, key, value, key_bias, query_weights, chunk_rows, keep=False
            )
            loss = tf.reduce_sum(attended**2)
        return attended, tape.gradient(loss, query)

    attended_6, grad_6 = run(tf.constant(6))
    attended_2, grad_2 = run(tf.constant(2))
    np.testing.assert_allclose(attended_6, attended_2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grad_6, grad_2, rtol=0, atol=1e-12)


def _output_inputs(positions=6, num_words=4, dim=3, channels=5):
    rng = np.random.default_rng(4)
    attended = tf.constant(rng.normal(size=(2, positions, num_words, dim)))
    kernel = tf.constant(rng.normal(size=(dim, channels)))
    bias = tf.constant(rng.normal(size=(channels,)))
    word_weights = np.full((2, num_words), 1.0 / num_words)
    word_weights[1] = [0.5, 0.5, 0.0, 0.0]  # two real words
    return attended, kernel, bias, tf.constant(word_weights)


@pytest.mark.parametrize("chunk_positions", [6, 3, 2, 1])
def test_chunked_word_mean_output_matches_autodiff(chunk_positions):
    attended, kernel, bias, word_weights = _output_inputs()
    d_outputs = tf.constant(np.random.default_rng(5).normal(size=(2, 6, 5)))

    def reference(attended, kernel, bias):
        return chunked_kernels.word_mean_output(attended, kernel, bias, word_weights)

    def chunked(attended, kernel, bias):
        return chunked_kernels.chunked_word_mean_output(
            attended, kernel, bias, word_weights, chunk_positions
        )

    results = []
    for fn in (reference, chunked):
        with tf.GradientTape() as tape:
            tape.watch([attended, kernel, bias])
            outputs = fn(attended, kernel, bias)
            loss = tf.reduce_sum(outputs * d_outputs)
        results.append([outputs] + tape.gradient(loss, [attended, kernel, bias]))
    assert results[1][0].shape == (2, 6, 5)
    for expected, got in zip(*results):
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # The mean over words by hand, and padding words get no gradient.
    by_hand = np.einsum(
        "bptc,bt->bpc",
        np.maximum(np.einsum("bptd,dc->bptc", attended, kernel) + bias, 0),
        word_weights,
    )
    np.testing.assert_allclose(results[1][0], by_hand, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(results[1][1][1, :, 2:], 0.0)


def test_chunked_word_mean_output_with_a_dynamic_chunk_size_in_a_graph():
    attended, kernel, bias, word_weights = _output_inputs()

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def run(chunk_positions):
        with tf.GradientTape() as tape:
            tape.watch([attended, kernel])
            outputs = chunked_kernels.chunked_word_mean_output(
                attended, kernel, bias, word_weights, chunk_positions
            )
            loss = tf.reduce_sum(outputs**2)
        return [outputs] + tape.gradient(loss, [attended, kernel])

    for got, expected in zip(run(tf.constant(2)), run(tf.constant(6))):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
