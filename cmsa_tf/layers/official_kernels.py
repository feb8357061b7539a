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
  forward pass instead (one chunk, no recomputation). The output stage
  `mean_t ReLU(Wo r + bo)` is chunked the same way (`chunked_word_mean_output`) when its
  [B, P*T, C_out] activations exceed the budget. A chunk holds `query_chunk_size` positions
  summed over the batch, so its memory does not grow with the batch size.
"""

import tensorflow as tf

from cmsa_tf.layers.attention_kernels import (
    by_memory,
    mask_value,
    static_or_dynamic,
    word_weights,
)
from cmsa_tf.layers.chunked_kernels import (
    chunked_softmax_attention,
    chunked_word_mean_output,
    word_mean_output,
)

# Default memory allowed to the [B, P*T, K] attention kept for the backward pass: 1 GiB.
DEFAULT_ATTENTION_MEMORY_BYTES = 1 << 30


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
    sizes = static_or_dynamic(x)
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
    batch, _, _, num_words, key_dim = static_or_dynamic(key)
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
    pooled_shape = static_or_dynamic(key)[:4]
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
        query_chunk_size: query positions per chunk, summed over the batch: a chunk takes
            `max(1, query_chunk_size // B)` positions of each example.
        attention_memory_bytes: when the [B, P*T, K] attention takes at most this many bytes,
            it is computed in one piece and kept for the backward pass; otherwise in chunks,
            recomputed in the backward pass. The same budget decides for the output stage's
            [B, P*T, C_out] activations (`chunked_kernels.chunked_word_mean_output`).

    Returns:
        `(G [B, H, W, C_out], slot_attention [B, ceil(T/2)], cell_attention
        [B, ceil(H/2), ceil(W/2)])`, as `official_attention`.
    """
    dtype = visual.dtype
    batch, height, width, visual_channels = static_or_dynamic(visual)
    word_channels = words.shape[-1]
    num_words = static_or_dynamic(words)[1]
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

    # One projection at a time (not one 3d-wide product split in three): the [B, H, W, T, d]
    # ReLU outputs are then the only copies kept for the backward pass.
    projections = [
        (weights.query_kernel, weights.query_bias),
        (weights.key_kernel, weights.key_bias),
        (weights.value_kernel, weights.value_bias),
    ]
    if reduce_weights is None:
        query, key, value = [tf.nn.relu(separable(*p)) for p in projections]  # [B, H, W, T, d]
        mean_word = tf.einsum("btc,bt->bc", words, mean_weights)  # [B, Cl]
        mean_word = tf.broadcast_to(
            mean_word[:, None, None, :],
            tf.stack([tf.shape(visual)[0], height, width, tf.shape(mean_word)[-1]]),
        )
        mean_residual = tf.concat([visual, mean_word, spatial], axis=-1)  # [B, H, W, C]
        mean_residual = mean_residual * has_words[:, None, None, None]
    else:
        reduced = tf.nn.relu(separable(*reduce_weights))  # [B, H, W, T, R]
        query, key, value = [
            tf.nn.relu(tf.einsum("bhwtr,rk->bhwtk", reduced, kernel) + bias)
            for kernel, bias in projections
        ]  # [B, H, W, T, d]
        mean_residual = tf.einsum("bhwtr,bt->bhwr", reduced, mean_weights)  # [B, H, W, R]
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
    # Query positions of each example per chunk: `query_chunk_size` shared by the batch, so that a
    # chunk's [B, c*T, K] scores take the same memory whatever the batch size.
    if isinstance(batch, int) and isinstance(positions, int):
        chunk = min(max(1, int(query_chunk_size) // batch), positions)
    else:
        chunk = tf.minimum(tf.maximum(1, int(query_chunk_size) // batch), positions)
    num_chunks = (positions + chunk - 1) // chunk
    extra = num_chunks * chunk - positions  # padding positions of the last chunk
    itemsize = tf.as_dtype(dtype).size

    def attention_whole():  # one chunk, the attention kept for the backward pass
        return chunked_softmax_attention(query, *shared, query_weights, rows, keep=True)

    def attention_chunked():  # chunks of `chunk` positions, recomputed in the backward pass
        attended, key_attention = chunked_softmax_attention(
            tf.pad(query, [[0, 0], [0, extra * num_words], [0, 0]]),
            *shared,
            tf.pad(query_weights, [[0, 0], [0, extra * num_words]]),
            chunk * num_words,
            keep=False,
        )
        return attended[:, :rows], key_attention

    attended, key_attention = by_memory(
        [batch, rows, num_slots],
        itemsize,
        attention_memory_bytes,
        attention_whole,
        attention_chunked,
    )  # attended [B, P*T, d], key_attention [B, K]
    attended = tf.reshape(attended, [batch, positions, num_words, key_dim])  # [B, P, T, d]
    output_weights = (weights.output_kernel, weights.output_bias, mean_weights)

    def output_whole():  # the [B, P, T, C_out] activations kept for the backward pass
        return word_mean_output(attended, *output_weights)

    def output_chunked():  # chunks of `chunk` positions, recomputed in the backward pass
        padded = tf.pad(attended, [[0, 0], [0, extra], [0, 0], [0, 0]])
        return chunked_word_mean_output(padded, *output_weights, chunk)[:, :positions]

    output_channels = weights.output_kernel.shape[-1]
    outputs = by_memory(
        [batch, rows, output_channels],
        itemsize,
        attention_memory_bytes,
        output_whole,
        output_chunked,
    )  # [B, P, C_out]
    outputs = tf.reshape(outputs, [batch, height, width, output_channels]) + mean_residual
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
    batch, height, width, num_words, channels = static_or_dynamic(features)
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
