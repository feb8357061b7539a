"""Kernels of the official-code form of the cross-modal self-attention (Eq. 2-4).

The official form (docs/design.md, "The official-code form"): `q, k, v = ReLU(1x1 conv)` of the
multimodal features `f` (or of their reduction `ReLU(Wr f)`), `k` and `v` max-pooled 2x2x2 over
(row, column, word), softmax without scaling over the real pooled key slots,
`g = ReLU(Wo r + bo) + f` and `G` the mean of `g` over the real words.

Two kernels compute the same function:

- `official_attention(features, ...)` from the materialised features [B, H, W, T, C], dense or in
  query chunks recomputed in the backward pass (the reference).
- `official_factorized_attention(visual, words, spatial, ...)`: the fast one. As in the paper
  form's factorisation (docs/design.md, "The exact factorisation"), a 1x1 projection of
  `f[p, n] = concat(v[p], e[n], s[p])` is `A[p] + B[n]`, so the first projection (Wr, or Wq, Wk,
  Wv when there is no reduction) costs `P*Cv + T*Cl` instead of `P*T*C` rows, and the residual's
  mean over words is `concat(v[p], mean_n e[n], s[p])`. The attention itself (`[P*T, K]` scores)
  runs in query chunks with a hand-written backward pass (`chunked_softmax_attention`): the
  forward keeps only the inputs and each row's log-sum-exp, the backward recomputes each chunk's
  scores once (5 matmuls of the `[P*T, K]` size per step in the backward, 2 in the forward,
  against 4 + 4 for autodiff of a recomputed chunk), and only one chunk's `[c*T, K]` attention is
  alive at a time. When the whole attention fits `attention_memory_bytes` it is kept from the
  forward pass instead (one chunk, no recomputation).
"""

import tensorflow as tf

from cmsa_tf.layers.attention_kernels import mask_value, word_weights

# Default memory allowed to the [B, P*T, K] attention kept for the backward pass: 1 GiB.
DEFAULT_ATTENTION_MEMORY_BYTES = 1 << 30


def _static_or_dynamic(x):
    static = x.shape.as_list()
    dynamic = tf.shape(x)
    return [dim if dim is not None else dynamic[i] for i, dim in enumerate(static)]


def max_pool_2x2x2(x, fill):
    """Max over 2x2x2 blocks of axes 1-3 of [B, D1, D2, D3, K], stride 2, padding 'same'.

    Odd sizes are padded at the end with `fill`, which must not exceed any real
    value, so the padded cells never win (as TensorFlow's 'same' max pooling).
    float32 and half types use TensorFlow's MaxPool3D (several times faster, forward and
    backward); float64, which it lacks, uses pairwise maxima.

    Returns:
        [B, ceil(D1/2), ceil(D2/2), ceil(D3/2), K].
    """
    if x.dtype in (tf.float32, tf.float16, tf.bfloat16):
        return tf.nn.max_pool3d(x, ksize=2, strides=2, padding="SAME")
    sizes = _static_or_dynamic(x)
    for axis in (1, 2, 3):
        paddings = [[0, 0]] * 5
        paddings[axis] = [0, sizes[axis] % 2]
        x = tf.pad(x, paddings, constant_values=fill)
        even = [slice(None)] * 5
        odd = [slice(None)] * 5
        even[axis] = slice(0, None, 2)
        odd[axis] = slice(1, None, 2)
        x = tf.maximum(x[tuple(even)], x[tuple(odd)])  # halves axis `axis`
    return x


def pooled_keys(key, value, word_mask):
    """The pooled key and value slots of the official form and their additive mask.

    Args:
        key, value: [B, H, W, T, d].
        word_mask: bool [B, T], real words first.

    Returns:
        `(key [B, K, d], value [B, K, d], key_bias [B, K], pooled_shape)`: `K = H2 * W2 * T2`
        slots (halved sizes, rounded up), `key_bias` 0 on real slots and a large negative value
        on slots without a real word, `pooled_shape` the list `[B, H2, W2, T2]`.
    """
    dtype = key.dtype
    fill = mask_value(dtype)
    batch, _, _, num_words, key_dim = _static_or_dynamic(key)
    real = word_mask[:, None, None, :, None]
    slot_real = (
        tf.reduce_max(
            tf.reshape(
                tf.pad(tf.cast(word_mask, dtype), [[0, 0], [0, num_words % 2]]),
                [batch, (num_words + 1) // 2, 2],
            ),
            axis=-1,
        )
        > 0
    )  # [B, T2]
    slot_mask = slot_real[:, None, None, :, None]

    def pool(x):  # [B, H2, W2, T2, d]; padding words never win the max
        pooled = max_pool_2x2x2(tf.where(real, x, fill), fill)
        return tf.where(slot_mask, pooled, tf.zeros([], dtype))

    key, value = pool(key), pool(value)
    pooled_shape = _static_or_dynamic(key)[:4]
    num_slots = pooled_shape[1] * pooled_shape[2] * pooled_shape[3]
    key = tf.reshape(key, [batch, num_slots, key_dim])
    value = tf.reshape(value, [batch, num_slots, key_dim])
    key_real = tf.reshape(
        tf.broadcast_to(slot_real[:, None, None, :], pooled_shape), [batch, num_slots]
    )
    key_bias = tf.where(key_real, tf.zeros([], dtype), fill)  # [B, K]
    return key, value, key_bias, pooled_shape


def _attention_maps(key_attention, pooled_shape, positions):
    key_attention = tf.reshape(key_attention, pooled_shape) / tf.cast(
        positions, key_attention.dtype
    )
    return tf.reduce_sum(key_attention, axis=[1, 2]), tf.reduce_sum(key_attention, axis=3)


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
    shape = _static_or_dynamic(x)
    x = tf.reshape(x, [shape[0], -1, chunk_rows] + shape[2:])
    return tf.transpose(x, [1, 0, 2] + list(range(3, len(shape) + 1)))


def _unchunk(x):  # [num_chunks, B, chunk_rows, ...] -> [B, N, ...]
    shape = _static_or_dynamic(x)
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


def official_factorized_attention(
    visual,
    words,
    spatial,
    word_mask,
    weights,
    reduce_weights=None,
    query_chunk_size=256,
    attention_memory_bytes=DEFAULT_ATTENTION_MEMORY_BYTES,
):
    """Official-code-form Eq. 2-4 for one level, with the factorised first projection.

    The same function as `official_attention` on `features = concat(visual, words, spatial)`
    (broadcast to [B, H, W, T, C]), reduced by `reduce_weights` when given.

    Args:
        visual: [B, H, W, Cv] normalised visual features.
        words: [B, T, Cl] normalised word embeddings, zero on padding, real words first.
        spatial: [B, H, W, 8] spatial features.
        word_mask: bool [B, T], real words first.
        weights: `ProjectionWeights` (kernels of C rows, or R rows after a reduction).
        reduce_weights: None, or `(kernel [C, R], bias [R])` of the reduction `ReLU(Wr f)`.
        query_chunk_size: query positions per chunk of the attention.
        attention_memory_bytes: when the [B, P*T, K] attention takes at most this many bytes,
            it is computed in one piece and kept for the backward pass; otherwise in chunks of
            `query_chunk_size` positions, recomputed in the backward pass.

    Returns:
        `(G [B, H, W, C_out], slot_attention [B, ceil(T/2)], cell_attention
        [B, ceil(H/2), ceil(W/2)])`, as `official_attention`.
    """
    dtype = visual.dtype
    batch, height, width, visual_channels = _static_or_dynamic(visual)
    word_channels = words.shape[-1]
    num_words = _static_or_dynamic(words)[1]
    positions = height * width
    split_at = [visual_channels, visual_channels + word_channels]
    mean_weights, has_words = word_weights(word_mask, dtype)  # [B, T], [B]

    def separable(kernel, bias):  # [B, H, W, T, k]: (concat(v, e, s) @ kernel + bias)
        image = (
            tf.einsum("bhwc,ck->bhwk", visual, kernel[: split_at[0]])
            + tf.einsum("bhws,sk->bhwk", spatial, kernel[split_at[1] :])
            + bias
        )  # [B, H, W, k]
        word = tf.einsum("btc,ck->btk", words, kernel[split_at[0] : split_at[1]])  # [B, T, k]
        return image[:, :, :, None, :] + word[:, None, None, :, :]

    kernels = tf.concat([weights.query_kernel, weights.key_kernel, weights.value_kernel], axis=1)
    biases = tf.concat([weights.query_bias, weights.key_bias, weights.value_bias], axis=0)
    if reduce_weights is None:
        projected = tf.nn.relu(separable(kernels, biases))  # [B, H, W, T, 3d]
        mean_word = tf.einsum("btc,bt->bc", words, mean_weights)  # [B, Cl]
        mean_word = tf.broadcast_to(
            mean_word[:, None, None, :],
            tf.stack([tf.shape(visual)[0], height, width, tf.shape(mean_word)[-1]]),
        )
        mean_residual = tf.concat([visual, mean_word, spatial], axis=-1)  # [B, H, W, C]
        mean_residual = mean_residual * has_words[:, None, None, None]
    else:
        reduced = tf.nn.relu(separable(*reduce_weights))  # [B, H, W, T, R]
        projected = tf.nn.relu(tf.einsum("bhwtr,rk->bhwtk", reduced, kernels) + biases)
        mean_residual = tf.einsum("bhwtr,bt->bhwr", reduced, mean_weights)  # [B, H, W, R]
    query, key, value = tf.split(projected, 3, axis=-1)  # [B, H, W, T, d]
    key_dim = query.shape[-1]
    key, value, key_bias, pooled_shape = pooled_keys(key, value, word_mask)

    num_slots = pooled_shape[1] * pooled_shape[2] * pooled_shape[3]
    rows = positions * num_words
    query = tf.reshape(query, [batch, rows, key_dim])  # [B, P*T, d]
    query_weights = tf.reshape(
        tf.broadcast_to(mean_weights[:, None, :], tf.stack([batch, positions, num_words])),
        [batch, rows],
    )  # [B, P*T]
    shared = (key, value, key_bias)

    def whole():  # one chunk, the attention kept for the backward pass
        return chunked_softmax_attention(query, *shared, query_weights, rows, keep=True)

    def chunked():  # chunks of `query_chunk_size` positions, recomputed in the backward pass
        chunk = tf.minimum(int(query_chunk_size), positions)
        num_chunks = (positions + chunk - 1) // chunk
        extra = (num_chunks * chunk - positions) * num_words
        attended, key_attention = chunked_softmax_attention(
            tf.pad(query, [[0, 0], [0, extra], [0, 0]]),
            *shared,
            tf.pad(query_weights, [[0, 0], [0, extra]]),
            chunk * num_words,
            keep=False,
        )
        return attended[:, :rows], key_attention

    itemsize = tf.as_dtype(dtype).size
    attention_bytes = [batch, rows, num_slots]
    if all(isinstance(size, int) for size in attention_bytes):
        fits = batch * rows * num_slots * itemsize <= attention_memory_bytes
        attended, key_attention = whole() if fits else chunked()
    else:
        size = tf.cast(batch, tf.float64) * tf.cast(rows, tf.float64)
        size = size * tf.cast(num_slots, tf.float64) * itemsize
        attended, key_attention = tf.cond(size <= float(attention_memory_bytes), whole, chunked)
    # attended [B, P*T, d], key_attention [B, K]

    outputs = tf.nn.relu(
        tf.einsum("bkd,dc->bkc", attended, weights.output_kernel) + weights.output_bias
    )  # [B, P*T, C_out]
    outputs = tf.reshape(outputs, [batch, positions, num_words, outputs.shape[-1]])
    outputs = tf.einsum("bptc,bt->bpc", outputs, mean_weights)  # [B, P, C_out]
    outputs = tf.reshape(outputs, [batch, height, width, outputs.shape[-1]]) + mean_residual
    slot_attention, cell_attention = _attention_maps(key_attention, pooled_shape, positions)
    return outputs, slot_attention, cell_attention


def official_attention(features, word_mask, weights):
    """Official-code-form Eq. 2-4 for one level, straight from the materialised features.

    `q, k, v = ReLU(1x1 conv)` of `features`; `k` and `v` max-pooled 2x2x2
    (stride 2, 'same') over (row, column, word) with only real words taking
    part; softmax (no scaling) over the real pooled key slots;
    `g = ReLU(Wo r + bo) + f`; `G` = mean of `g` over real words. The reference
    of `official_factorized_attention`, with [B, P*T, K] scores.

    Real words must come first in every row of `word_mask` (the layer sorts
    them there), so that the pooled word slots pair up the real words exactly
    as the authors' one-sample code, which drops the padding words.

    Args:
        features: [B, H, W, T, C] (the reduced feature when a reduction is used).
        word_mask: bool [B, T], real words first.
        weights: `ProjectionWeights` (the output kernel maps d -> C).

    Returns:
        `(G [B, H, W, C], slot_attention [B, ceil(T/2)], cell_attention
        [B, ceil(H/2), ceil(W/2)])`: the attention each pooled word slot /
        spatial slot receives, averaged over query positions and real query words.
    """
    dtype = features.dtype
    batch, height, width, num_words, channels = _static_or_dynamic(features)
    positions = height * width
    mean_weights, _ = word_weights(word_mask, dtype)  # [B, T]

    def project(kernel, bias):  # [B, H, W, T, d]
        return tf.nn.relu(tf.einsum("bhwtc,cd->bhwtd", features, kernel) + bias)

    query = project(weights.query_kernel, weights.query_bias)
    key = project(weights.key_kernel, weights.key_bias)
    value = project(weights.value_kernel, weights.value_bias)
    key, value, key_bias, pooled_shape = pooled_keys(key, value, word_mask)
    query = tf.reshape(query, [batch, positions, num_words, query.shape[-1]])  # [B, P, T, d]
    residual = tf.reshape(features, [batch, positions, num_words, channels])  # [B, P, T, C]

    scores = tf.einsum("bptd,bkd->bptk", query, key) + key_bias[:, None, None, :]
    attention = tf.nn.softmax(scores, axis=-1)  # [B, P, T, K]
    attended = tf.einsum("bptk,bkd->bptd", attention, value)
    outputs = tf.nn.relu(
        tf.einsum("bptd,dr->bptr", attended, weights.output_kernel) + weights.output_bias
    )
    outputs = tf.einsum("bptr,bt->bpr", outputs + residual, mean_weights)  # [B, P, C]
    key_attention = tf.einsum("bptk,bt->bk", attention, mean_weights)
    outputs = tf.reshape(outputs, [batch, height, width, channels])
    slot_attention, cell_attention = _attention_maps(key_attention, pooled_shape, positions)
    return outputs, slot_attention, cell_attention
