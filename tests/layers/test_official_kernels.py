"""The official-form kernels: 2x2x2 pooling and the chunked attention's hand-written gradient."""

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers import attention_kernels, official_kernels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_matches_tensorflow_same_pooling(dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 3, 7, 4)).astype(np.float32)  # odd sizes: 'same' padding
    expected = tf.nn.max_pool3d(x, ksize=2, strides=2, padding="SAME")
    got = official_kernels.max_pool_2x2x2(
        tf.constant(x.astype(dtype)), attention_kernels.mask_value(dtype)
    )
    assert got.shape == (2, 3, 2, 4, 4)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)


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
        return official_kernels.chunked_softmax_attention(
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
            attended, _ = official_kernels.chunked_softmax_attention(
                query, key, value, key_bias, query_weights, chunk_rows, keep=False
            )
            loss = tf.reduce_sum(attended**2)
        return attended, tape.gradient(loss, query)

    attended_6, grad_6 = run(tf.constant(6))
    attended_2, grad_2 = run(tf.constant(2))
    np.testing.assert_allclose(attended_6, attended_2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grad_6, grad_2, rtol=0, atol=1e-12)
