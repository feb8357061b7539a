"""Memory-bounded pieces of the official-form attention: query chunks with hand-written backward
passes that recompute what they do not keep.

- `chunked_softmax_attention`: `softmax(q k^T + bias) v` over `[N, K]` scores, one chunk of query
  rows alive at a time, each chunk's scores recomputed once in the backward pass.
- `chunked_word_mean_output`: the output stage `sum_t w[t] ReLU(r[p, t] Wo + bo)`, whose
  `[P, T, C]` pre-activations (C = 2008 channels at res5) are computed a chunk of positions at a
  time and recomputed in the backward pass; only its input is kept.

Both equal plain autodiff of the same formula (tests/layers/test_chunked_kernels.py).
"""

import tensorflow as tf

from cmsa_tf.layers.attention_kernels import static_or_dynamic


def chunked_softmax_attention(query, key, value, key_bias, query_weights, chunk_rows, keep):
    """`softmax(q k^T + bias) v` and the attention each key receives, in chunks of query rows.

    Args:
        query: [B, N, d] with N a multiple of `chunk_rows`.
        key, value: [B, K, d]; key_bias: [B, K] additive logits (0 or a large negative value).
        query_weights: [B, N] weights of the query rows in `key_attention`.
        chunk_rows: query rows per chunk (an int or a scalar int32 tensor).
        keep: whether the forward pass keeps the attention for the backward pass (only
            sensible with one chunk); otherwise the backward pass recomputes each chunk's.

    Returns:
        `(attended [B, N, d], key_attention [B, K])` with
        `key_attention[b, k] = sum_i query_weights[b, i] * attention[b, i, k]`.
        Gradients flow to `query`, `key` and `value` (none to the bias and the weights).
    """
    return _chunked_softmax_attention(query, key, value, key_bias, query_weights, chunk_rows, keep)


def _chunks(x, chunk_rows):  # [B, N, ...] -> [N / chunk_rows, B, chunk_rows, ...]
    shape = static_or_dynamic(x)
    x = tf.reshape(x, [shape[0], -1, chunk_rows] + shape[2:])
    return tf.transpose(x, [1, 0, 2] + list(range(3, len(shape) + 1)))


def _unchunk(x):  # [num_chunks, B, chunk_rows, ...] -> [B, N, ...]
    shape = static_or_dynamic(x)
    x = tf.transpose(x, [1, 0, 2] + list(range(3, len(shape))))
    return tf.reshape(x, [shape[1], -1] + shape[3:])


def _chunked_softmax_attention(query, key, value, key_bias, query_weights, chunk_rows, keep):
    dtype = query.dtype

    @tf.custom_gradient
    def attention(query, key, value):
        bias = key_bias[:, None, :]  # [B, 1, K]

        def probabilities(query_c):  # [B, c, K]
            return tf.nn.softmax(tf.matmul(query_c, key, transpose_b=True) + bias, axis=-1)

        if keep:
            probs = probabilities(query)  # [B, N, K]
            attended = tf.matmul(probs, value)  # [B, N, d]
            key_attention = tf.matmul(query_weights[:, None, :], probs)[:, 0]  # [B, K]
        else:

            def forward_chunk(elems):
                query_c, weights_c = elems
                probs_c = probabilities(query_c)
                return (
                    tf.matmul(probs_c, value),  # [B, c, d]
                    tf.matmul(weights_c[:, None, :], probs_c)[:, 0],  # [B, K]
                )

            attended, key_attention = tf.map_fn(
                forward_chunk,
                (_chunks(query, chunk_rows), _chunks(query_weights, chunk_rows)),
                fn_output_signature=(dtype, dtype),
                parallel_iterations=1,
            )
            attended = _unchunk(attended)
            key_attention = tf.reduce_sum(key_attention, axis=0)

        def grad(d_attended, d_key_attention):
            def backward(query_c, weights_c, d_attended_c, probs_c):
                # d_probs = d_attended v^T + w_i d_key_attention; softmax backward.
                d_probs = (
                    tf.matmul(d_attended_c, value, transpose_b=True)
                    + weights_c[:, :, None] * d_key_attention[:, None, :]
                )  # [B, c, K]
                row = tf.reduce_sum(d_probs * probs_c, axis=-1, keepdims=True)
                d_scores = probs_c * (d_probs - row)  # [B, c, K]
                return (
                    tf.matmul(d_scores, key),  # d_query [B, c, d]
                    tf.matmul(d_scores, query_c, transpose_a=True),  # d_key [B, K, d]
                    tf.matmul(probs_c, d_attended_c, transpose_a=True),  # d_value [B, K, d]
                )

            if keep:
                return backward(query, query_weights, d_attended, probs)

            def backward_chunk(elems):
                query_c, weights_c, d_attended_c = elems
                return backward(query_c, weights_c, d_attended_c, probabilities(query_c))

            d_query, d_key, d_value = tf.map_fn(
                backward_chunk,
                (
                    _chunks(query, chunk_rows),
                    _chunks(query_weights, chunk_rows),
                    _chunks(d_attended, chunk_rows),
                ),
                fn_output_signature=(dtype, dtype, dtype),
                parallel_iterations=1,
            )
            return _unchunk(d_query), tf.reduce_sum(d_key, 0), tf.reduce_sum(d_value, 0)

        return (attended, key_attention), grad

    return attention(query, key, value)


def word_mean_output(attended, kernel, bias, word_weights):
    """`out[b, p] = sum_t word_weights[b, t] * ReLU(attended[b, p, t] @ kernel + bias)`.

    Args:
        attended: [B, P, T, d]; kernel: [d, C]; bias: [C]; word_weights: [B, T].

    Returns:
        [B, P, C], by plain autodiff (the [B, P, T, C] activations kept for the backward pass).
    """
    outputs = tf.nn.relu(tf.einsum("bptd,dc->bptc", attended, kernel) + bias)  # [B, P, T, C]
    return tf.einsum("bptc,bt->bpc", outputs, word_weights)  # [B, P, C]


def chunked_word_mean_output(attended, kernel, bias, word_weights, chunk_positions):
    """`word_mean_output` in chunks of positions, the activations recomputed in the backward pass.

    Only one chunk's [B, c, T, C] pre-activations are alive at a time, forward or backward; the
    backward pass recomputes them (one matmul of the [P*T, d] x [d, C] size) instead of keeping
    the [B, P, T, C] activations.

    Args:
        attended: [B, P, T, d] with P a multiple of `chunk_positions`.
        kernel: [d, C]; bias: [C]; word_weights: [B, T] (no gradient flows to it).
        chunk_positions: positions per chunk (an int or a scalar int32 tensor).

    Returns:
        [B, P, C]; gradients flow to `attended`, `kernel` and `bias`.
    """
    dtype = attended.dtype
    weights = tf.convert_to_tensor(word_weights, dtype)[:, None, :, None]  # [B, 1, T, 1]

    @tf.custom_gradient
    def output(attended, kernel, bias):
        def pre_activation(attended_c):  # [B, c, T, C]
            return tf.einsum("bctd,dk->bctk", attended_c, kernel) + bias

        def forward_chunk(attended_c):
            return tf.reduce_sum(tf.nn.relu(pre_activation(attended_c)) * weights, axis=2)

        outputs = _unchunk(
            tf.map_fn(
                forward_chunk,
                _chunks(attended, chunk_positions),
                fn_output_signature=dtype,
                parallel_iterations=1,
            )
        )  # [B, P, C]

        def grad(d_outputs):  # [B, P, C]
            def backward_chunk(elems):
                attended_c, d_outputs_c = elems
                d_pre = tf.where(
                    pre_activation(attended_c) > 0,
                    d_outputs_c[:, :, None, :] * weights,
                    tf.zeros([], dtype),
                )  # [B, c, T, C]
                return (
                    tf.einsum("bctk,dk->bctd", d_pre, kernel),  # d_attended [B, c, T, d]
                    tf.einsum("bctd,bctk->dk", attended_c, d_pre),  # d_kernel [d, C]
                    tf.reduce_sum(d_pre, axis=[0, 1, 2]),  # d_bias [C]
                )

            d_attended, d_kernel, d_bias = tf.map_fn(
                backward_chunk,
                (_chunks(attended, chunk_positions), _chunks(d_outputs, chunk_positions)),
                fn_output_signature=(dtype, dtype, dtype),
                parallel_iterations=1,
            )
            return _unchunk(d_attended), tf.reduce_sum(d_kernel, 0), tf.reduce_sum(d_bias, 0)

        return outputs, grad

    return output(attended, tf.convert_to_tensor(kernel), tf.convert_to_tensor(bias))
