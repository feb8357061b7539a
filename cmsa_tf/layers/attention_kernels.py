"""Pure TensorFlow kernels of the cross-modal self-attention (Eq. 2-4).

The layer `CrossModalSelfAttention` owns the weights and the multimodal
features; these functions only do the arithmetic, so they can be tested and
benchmarked on their own.

Conventions: `P = H * W` positions, `T` words, `d` the key dimension.
`word_mask` is a bool [B, T] (True for real words). All inputs of one call
share one floating dtype.

Paper form (affine projections, no 1/sqrt(d) scaling):
    `paper_dense_attention` materialises the [B, P*T, P*T] scores;
    `paper_factorized_attention` computes the same function through the exact
    factorisation (docs/design.md, "The exact factorisation"), with O(P*P + P*T*T) memory.
Official-code form (ReLU projections, 2x2x2 max-pooled keys and values):
    `official_attention`, either dense or in query chunks recomputed in the
    backward pass.
"""

import collections

import tensorflow as tf

ProjectionWeights = collections.namedtuple(
    "ProjectionWeights",
    [
        "query_kernel",  # [C, d]
        "query_bias",  # [d]
        "key_kernel",  # [C, d]
        "key_bias",  # [d]
        "value_kernel",  # [C, d]
        "value_bias",  # [d]
        "output_kernel",  # [d, C]
        "output_bias",  # [C]
    ],
)
ProjectionWeights.__doc__ = "Kernels and biases of Wq, Wk, Wv (C -> d) and Wo (d -> C)."


def mask_value(dtype):
    """A large negative logit for masked attention slots: exp() of it underflows to 0."""
    dtype = tf.as_dtype(dtype)
    if dtype in (tf.float32, tf.float64):
        return tf.constant(-1e9, dtype)
    return tf.constant(0.5 * dtype.min, dtype)


def word_weights(word_mask, dtype):
    """Weights of the mean over real words and whether a sample has any.

    Args:
        word_mask: bool [B, T].
        dtype: floating dtype of the results.

    Returns:
        `(weights [B, T], has_words [B])`: `weights` is 1/N on the N real words
        and 0 on padding (all zero when N = 0); `has_words` is 1.0 when N > 0.
    """
    real = tf.cast(word_mask, dtype)  # [B, T]
    count = tf.reduce_sum(real, axis=1, keepdims=True)  # [B, 1]
    weights = real / tf.maximum(count, tf.ones([], dtype))
    return weights, tf.cast(count[:, 0] > 0, dtype)


def _static_or_dynamic(x):
    """The shape of `x` as a list of Python ints where known, scalar tensors elsewhere."""
    static = x.shape.as_list()
    dynamic = tf.shape(x)
    return [dim if dim is not None else dynamic[i] for i, dim in enumerate(static)]


def word_averaged_softmax(base, word_logits, weights):
    """`S[b, p, q] = sum_n weights[b, n] * softmax_q(base[b, p, q] + word_logits[b, n, q])`.

    One word at a time, forward and backward (the backward pass recomputes each
    word's softmax), so memory stays O(B * P * Q) whatever the number of words.

    Args:
        base: [B, P, Q] logits shared by all words.
        word_logits: [B, T, Q] per-word logits, broadcast over P.
        weights: [B, T] word weights.

    Returns:
        [B, P, Q].
    """
    return _word_averaged_softmax(base, word_logits, weights)


@tf.custom_gradient
def _word_averaged_softmax(base, word_logits, weights):
    num_words = tf.shape(word_logits)[1]

    def softmax_of_word(n):  # [B, P, Q]
        return tf.nn.softmax(base + word_logits[:, n][:, None, :], axis=-1)

    def forward_body(n, total):
        return n + 1, total + weights[:, n][:, None, None] * softmax_of_word(n)

    _, total = tf.while_loop(
        lambda n, _: n < num_words,
        forward_body,
        (tf.constant(0), tf.zeros_like(base)),
        parallel_iterations=1,
    )

    def grad(d_total):
        def backward_body(n, d_base, d_words, d_weights):
            # Softmax backward, with the word's weight w_n applied last:
            # d_logits = w_n * sigma * (d_total - sum_q d_total * sigma).
            sigma = softmax_of_word(n)  # [B, P, Q]
            row = tf.reduce_sum(d_total * sigma, axis=-1, keepdims=True)  # [B, P, 1]
            unweighted = sigma * (d_total - row)  # [B, P, Q]
            weight = weights[:, n]  # [B]
            d_word = weight[:, None] * tf.reduce_sum(unweighted, axis=1)  # [B, Q]
            d_words = d_words.write(n, d_word)
            d_weights = d_weights.write(n, tf.reduce_sum(row, axis=[1, 2]))  # [B]
            return n + 1, d_base + weight[:, None, None] * unweighted, d_words, d_weights

        _, d_base, d_words, d_weights = tf.while_loop(
            lambda n, *_: n < num_words,
            backward_body,
            (
                tf.constant(0),
                tf.zeros_like(base),
                tf.TensorArray(base.dtype, size=num_words, element_shape=word_logits[:, 0].shape),
                tf.TensorArray(base.dtype, size=num_words, element_shape=weights[:, 0].shape),
            ),
            parallel_iterations=1,
        )
        d_words = tf.transpose(d_words.stack(), [1, 0, 2])  # [T, B, Q] -> [B, T, Q]
        d_weights = tf.transpose(d_weights.stack(), [1, 0])  # [T, B] -> [B, T]
        return d_base, d_words, d_weights

    return total, grad


def paper_factorized_attention(visual, words, spatial, word_mask, weights):
    """Paper-form Eq. 2-4 through the exact factorisation of the affine projections.

    With `f = concat(v, e, s)` and affine `Wq, Wk, Wv`, `q[p, n] = A[p] + B[n]`
    (`A` from the visual and spatial rows of the kernel plus the bias, `B` from
    the word rows), likewise `k = C + D`, `v = E + F`. Then the softmax over
    (p', n') factorises into `sigma[p, n](p') * tau[p, n](n')`, and
    `G[p] = Wo(S E + U F) + bo + mean_n f[p, n]` with `S[p, p'] = mean_n
    sigma[p, n](p')` and `U[p, n'] = mean_n tau[p, n](n')`.

    Args:
        visual: [B, P, Cv] normalised visual features.
        words: [B, T, Cl] normalised word embeddings (padding rows may hold anything).
        spatial: [B, P, 8] spatial features.
        word_mask: bool [B, T].
        weights: `ProjectionWeights` with kernels of C = Cv + Cl + 8 rows.

    Returns:
        `(G [B, P, C], word_attention [B, T], position_attention [B, P])`:
        `word_attention[n']` / `position_attention[p']` is the attention that key
        word n' / key position p' receives, averaged over query positions and
        real query words. A sample with no real word gets G = 0.
    """
    dtype = visual.dtype
    visual_channels = visual.shape[-1]
    word_channels = words.shape[-1]
    split_at = [visual_channels, visual_channels + word_channels]
    mean_weights, has_words = word_weights(word_mask, dtype)  # [B, T], [B]
    words = words * tf.cast(word_mask, dtype)[:, :, None]

    # Wq, Wk, Wv side by side: one matmul per input part instead of three.
    kernels = tf.concat([weights.query_kernel, weights.key_kernel, weights.value_kernel], axis=1)
    biases = tf.concat([weights.query_bias, weights.key_bias, weights.value_bias], axis=0)
    image = (
        tf.einsum("bpc,cd->bpd", visual, kernels[: split_at[0]])
        + tf.einsum("bps,sd->bpd", spatial, kernels[split_at[1] :])
        + biases
    )  # [B, P, 3d]
    word = tf.einsum("btc,cd->btd", words, kernels[split_at[0] : split_at[1]])  # [B, T, 3d]
    query_image, key_image, value_image = tf.split(image, 3, axis=-1)  # A, C, E: [B, P, d]
    query_word, key_word, value_word = tf.split(word, 3, axis=-1)  # B, D, F: [B, T, d]

    # sigma: softmax over key positions, averaged over real query words.
    base = tf.matmul(query_image, key_image, transpose_b=True)  # [B, P, P]
    per_word = tf.matmul(query_word, key_image, transpose_b=True)  # [B, T, P]
    position_mix = word_averaged_softmax(base, per_word, mean_weights)  # S: [B, P, P]

    # tau: softmax over real key words for every (query position, query word).
    tau_logits = (
        tf.matmul(query_image, key_word, transpose_b=True)[:, :, None, :]
        + tf.matmul(query_word, key_word, transpose_b=True)[:, None, :, :]
    )  # [B, P, T, T]
    tau_logits = tf.where(word_mask[:, None, None, :], tau_logits, mask_value(dtype))
    tau = tf.nn.softmax(tau_logits, axis=-1)
    word_mix = tf.einsum("bpnm,bn->bpm", tau, mean_weights)  # U: [B, P, T]

    attended = tf.matmul(position_mix, value_image) + tf.matmul(word_mix, value_word)  # [B, P, d]
    mean_word = tf.einsum("btc,bt->bc", words, mean_weights)  # [B, Cl]
    visual_shape = tf.shape(visual)
    mean_word = tf.broadcast_to(
        mean_word[:, None, :], tf.stack([visual_shape[0], visual_shape[1], tf.shape(mean_word)[-1]])
    )  # [B, P, Cl]
    mean_features = tf.concat([visual, mean_word, spatial], axis=-1)  # [B, P, C]
    outputs = tf.einsum("bpd,dc->bpc", attended, weights.output_kernel) + weights.output_bias
    outputs = (outputs + mean_features) * has_words[:, None, None]
    word_attention = tf.reduce_mean(word_mix, axis=1)  # [B, T]
    position_attention = tf.reduce_mean(position_mix, axis=1)  # [B, P]
    return outputs, word_attention, position_attention


def paper_dense_attention(features, word_mask, weights):
    """Paper-form Eq. 2-4, straight from the definition: [B, P*T, P*T] scores.

    Args:
        features: [B, P, T, C] multimodal features.
        word_mask: bool [B, T].
        weights: `ProjectionWeights`.

    Returns:
        `(G [B, P, C], word_attention [B, T], position_attention [B, P])`, as
        `paper_factorized_attention`.
    """
    dtype = features.dtype
    batch, positions, num_words, channels = _static_or_dynamic(features)
    mean_weights, _ = word_weights(word_mask, dtype)  # [B, T]
    flat = tf.reshape(features, [batch, positions * num_words, channels])  # [B, P*T, C]

    def project(kernel, bias):  # [B, P*T, d]
        return tf.einsum("bkc,cd->bkd", flat, kernel) + bias

    query = project(weights.query_kernel, weights.query_bias)
    key = project(weights.key_kernel, weights.key_bias)
    value = project(weights.value_kernel, weights.value_bias)
    scores = tf.matmul(query, key, transpose_b=True)  # [B, P*T, P*T]
    key_real = tf.reshape(
        tf.broadcast_to(word_mask[:, None, :], [batch, positions, num_words]),
        [batch, 1, positions * num_words],
    )
    scores = tf.where(key_real, scores, mask_value(dtype))
    attention = tf.nn.softmax(scores, axis=-1)
    attended = tf.matmul(attention, value)  # [B, P*T, d]
    outputs = tf.einsum("bkd,dc->bkc", attended, weights.output_kernel) + weights.output_bias + flat
    outputs = tf.reshape(outputs, [batch, positions, num_words, channels])  # [B, P, T, C]
    outputs = tf.einsum("bptc,bt->bpc", outputs, mean_weights)  # [B, P, C]

    # [B, P, T, P', T']
    attention = tf.reshape(attention, [batch, positions, num_words, positions, num_words])
    word_attention = tf.einsum("bpnqm,bn->bm", attention, mean_weights) / tf.cast(positions, dtype)
    position_attention = tf.einsum("bpnqm,bn->bq", attention, mean_weights) / tf.cast(
        positions, dtype
    )
    return outputs, word_attention, position_attention


def max_pool_2x2x2(x, fill):
    """Max over 2x2x2 blocks of axes 1-3 of [B, D1, D2, D3, K], stride 2, padding 'same'.

    Odd sizes are padded at the end with `fill`, which must not exceed any real
    value, so the padded cells never win (as TensorFlow's 'same' max pooling).
    Works for any floating dtype (TensorFlow's MaxPool3D has no float64 kernel).

    Returns:
        [B, ceil(D1/2), ceil(D2/2), ceil(D3/2), K].
    """
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


def _official_chunk(
    query,
    residual,
    key,
    value,
    key_bias,
    mean_weights,
    position_weights,
    output_kernel,
    output_bias,
):
    """Official-form attention for a block of query positions.

    Args:
        query: [B, c, T, d]; residual: [B, c, T, C]; key, value: [B, K, d];
        key_bias: [B, K] (0 for real key slots, a large negative value otherwise);
        mean_weights: [B, T]; position_weights: [c] (0 drops a position from the
        attention statistics); output_kernel: [d, C]; output_bias: [C].

    Returns:
        `(G [B, c, C], key_attention [B, K])`: the word-averaged output per
        position and the attention each key slot receives, summed over the
        block's positions and averaged over real query words.
    """
    scores = tf.einsum("bctd,bkd->bctk", query, key) + key_bias[:, None, None, :]
    attention = tf.nn.softmax(scores, axis=-1)  # [B, c, T, K]
    attended = tf.einsum("bctk,bkd->bctd", attention, value)
    outputs = tf.nn.relu(tf.einsum("bctd,dr->bctr", attended, output_kernel) + output_bias)
    outputs = outputs + residual  # [B, c, T, C]
    pooled = tf.einsum("bctr,bt->bcr", outputs, mean_weights)  # [B, c, C]
    key_attention = tf.einsum("bctk,bt,c->bk", attention, mean_weights, position_weights)
    return pooled, key_attention


def official_attention(features, word_mask, weights, query_chunk_size=None):
    """Official-code-form Eq. 2-4 for one level.

    `q, k, v = ReLU(1x1 conv)` of `features`; `k` and `v` max-pooled 2x2x2
    (stride 2, 'same') over (row, column, word) with only real words taking
    part; softmax (no scaling) over the real pooled key slots;
    `g = ReLU(Wo r + bo) + f`; `G` = mean of `g` over real words.

    Real words must come first in every row of `word_mask` (the layer sorts
    them there), so that the pooled word slots pair up the real words exactly
    as the authors' one-sample code, which drops the padding words.

    Args:
        features: [B, H, W, T, C] (the reduced feature when a reduction is used).
        word_mask: bool [B, T], real words first.
        weights: `ProjectionWeights` (the output kernel maps d -> C).
        query_chunk_size: None for the dense computation, or a number of query
            positions per chunk: chunks run one after the other and are
            recomputed in the backward pass, so only one chunk's
            [chunk * T, K] attention matrix is alive at a time.

    Returns:
        `(G [B, H, W, C], slot_attention [B, ceil(T/2)], cell_attention
        [B, ceil(H/2), ceil(W/2)])`: the attention each pooled word slot /
        spatial slot receives, averaged over query positions and real query words.
    """
    dtype = features.dtype
    batch, height, width, num_words, channels = _static_or_dynamic(features)
    positions = height * width
    mean_weights, _ = word_weights(word_mask, dtype)  # [B, T]
    fill = mask_value(dtype)

    def project(kernel, bias):  # [B, H, W, T, d]
        return tf.nn.relu(tf.einsum("bhwtc,cd->bhwtd", features, kernel) + bias)

    query = project(weights.query_kernel, weights.query_bias)
    key = project(weights.key_kernel, weights.key_bias)
    value = project(weights.value_kernel, weights.value_bias)
    key_dim = query.shape[-1] if query.shape[-1] is not None else tf.shape(query)[-1]

    # Pooled key / value slots; padding words never win the max.
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

    def pool(x):  # [B, H2, W2, T2, d]
        pooled = max_pool_2x2x2(tf.where(real, x, fill), fill)
        return tf.where(slot_mask, pooled, tf.zeros([], dtype))

    pooled_key = pool(key)
    pooled_value = pool(value)
    pooled_shape = _static_or_dynamic(pooled_key)
    num_slots = pooled_shape[1] * pooled_shape[2] * pooled_shape[3]
    pooled_key = tf.reshape(pooled_key, [batch, num_slots, key_dim])  # [B, K, d]
    pooled_value = tf.reshape(pooled_value, [batch, num_slots, key_dim])
    key_real = tf.reshape(
        tf.broadcast_to(slot_real[:, None, None, :], pooled_shape[:4]), [batch, num_slots]
    )
    key_bias = tf.where(key_real, tf.zeros([], dtype), fill)  # [B, K]

    query = tf.reshape(query, [batch, positions, num_words, key_dim])  # [B, P, T, d]
    residual = tf.reshape(features, [batch, positions, num_words, channels])  # [B, P, T, C]
    shared = (pooled_key, pooled_value, key_bias, mean_weights)
    output_weights = (weights.output_kernel, weights.output_bias)

    if query_chunk_size is None:
        outputs, key_attention = _official_chunk(
            query, residual, *shared, tf.ones([positions], dtype), *output_weights
        )
    else:
        chunk = int(query_chunk_size)
        num_chunks = (positions + chunk - 1) // chunk
        extra = num_chunks * chunk - positions

        def to_chunks(x):  # [B, P, ...] -> [num_chunks, B, chunk, ...]
            rest = _static_or_dynamic(x)[2:]
            x = tf.pad(x, [[0, 0], [0, extra]] + [[0, 0]] * len(rest))
            x = tf.reshape(x, [batch, num_chunks, chunk] + rest)
            return tf.transpose(x, [1, 0, 2] + list(range(3, 3 + len(rest))))

        position_weights = tf.reshape(
            tf.pad(tf.ones([positions], dtype), [[0, extra]]), [num_chunks, chunk]
        )
        run_chunk = tf.recompute_grad(_official_chunk)

        def step(elems):
            query_c, residual_c, position_weights_c = elems
            return run_chunk(query_c, residual_c, *shared, position_weights_c, *output_weights)

        outputs, key_attention = tf.map_fn(
            step,
            (to_chunks(query), to_chunks(residual), position_weights),
            fn_output_signature=(dtype, dtype),
            parallel_iterations=1,
        )  # [num_chunks, B, chunk, C], [num_chunks, B, K]
        outputs = tf.transpose(outputs, [1, 0, 2, 3])  # [B, num_chunks, chunk, C]
        outputs = tf.reshape(outputs, [batch, num_chunks * chunk, channels])
        outputs = outputs[:, :positions]
        key_attention = tf.reduce_sum(key_attention, axis=0)

    outputs = tf.reshape(outputs, [batch, height, width, channels])
    key_attention = tf.reshape(key_attention, pooled_shape[:4]) / tf.cast(positions, dtype)
    slot_attention = tf.reduce_sum(key_attention, axis=[1, 2])  # [B, T2]
    cell_attention = tf.reduce_sum(key_attention, axis=3)  # [B, H2, W2]
    return outputs, slot_attention, cell_attention
