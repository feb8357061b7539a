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
Official-code form (ReLU projections, 2x2x2 max-pooled keys and values): in
    `cmsa_tf.layers.official_kernels`.
"""

import collections
import math

import numpy as np
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


def static_or_dynamic(x):
    """The shape of `x` as a list of Python ints where known, scalar tensors elsewhere."""
    static = x.shape.as_list()
    dynamic = tf.shape(x)
    return [dim if dim is not None else dynamic[i] for i, dim in enumerate(static)]


def fits_memory(sizes, itemsize, memory_bytes):
    """Whether a tensor of `sizes` elements of `itemsize` bytes takes at most `memory_bytes`: a
    Python bool when every size is static, else a bool scalar tensor."""
    if all(isinstance(size, int) for size in sizes):
        total = itemsize
        for size in sizes:
            total *= size
        return total <= memory_bytes
    total = tf.constant(float(itemsize), tf.float64)
    for size in sizes:
        total *= tf.cast(size, tf.float64)
    return total <= float(memory_bytes)


def by_memory(sizes, itemsize, memory_bytes, whole, chunked):
    """`whole()` when a tensor of `sizes` elements of `itemsize` bytes fits `memory_bytes`,
    else `chunked()`: decided in Python when every size is static, otherwise by `tf.cond`."""
    fits = fits_memory(sizes, itemsize, memory_bytes)
    if isinstance(fits, bool):
        return whole() if fits else chunked()
    return tf.cond(fits, whole, chunked)


# Default memory allowed to the [B, T, P, P] softmax of the vectorised paper kernel: 1 GiB.
DEFAULT_SOFTMAX_MEMORY_BYTES = 1 << 30


def product_logit_range(dtype) -> float:
    """The largest logit spread for which `word_averaged_softmax` takes its product path.

    Each factor of that path is an exponential shifted by its own maximum, so it lies in
    (0, 1]; a word's normaliser `Z` is at least exp(-g) for a gap g at most the smaller of the
    two logit spreads (see `word_averaged_softmax`). Spreads up to 70% of -log(smallest normal
    number) keep every `Z` far above underflow: about 61 in float32, 496 in float64, 6.8 in
    float16.
    """
    return 0.7 * -math.log(float(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).tiny))


def word_averaged_softmax(base, word_logits, weights, memory_bytes=0, product_range=None):
    """`S[b, p, q] = sum_n weights[b, n] * softmax_q(base[b, p, q] + word_logits[b, n, q])`.

    Three ways of computing the same values and gradients, chosen per call:

    - **Product** (where the logits' spreads allow, which is the rule): the exponential of a
      sum is the product of the exponentials, so with `E = exp(base - max_q base)` [B, P, Q],
      `e_n = exp(word_logits_n - max_q word_logits_n)` [B, T, Q] and the normalisers
      `Z = E e^T` [B, P, T] (a matmul), `S = E * ((weights / Z) e)` (a second matmul). No
      word loop and no [B, T, P, Q] tensor: two matmuls over the words and a few passes over
      [B, P, Q], autodiff for the backward pass. Exact in real arithmetic; in floating point a
      normaliser could underflow, which needs both spreads to be large: `Z_n[p] >=
      exp(-min(spread_q base[p], spread_q word_logits_n))`. It is taken when that bound,
      over every position and real word (`weights > 0`), is at most `product_range`.
    - Otherwise, when the [B, T, P, Q] softmax of all words takes at most `memory_bytes`, all
      words at once (autodiff keeps it for the backward pass);
    - otherwise one word at a time, forward and backward (the backward pass recomputes each
      word's softmax), so memory stays O(B * P * Q) whatever the number of words.

    Args:
        base: [B, P, Q] logits shared by all words.
        word_logits: [B, T, Q] per-word logits, broadcast over P.
        weights: [B, T] non-negative word weights.
        memory_bytes: memory allowed to the all-words path (0: word by word).
        product_range: the largest spread bound of the product path; None:
            `product_logit_range(base.dtype)`; a negative value never takes it.

    Returns:
        [B, P, Q].
    """
    limit = product_logit_range(base.dtype) if product_range is None else float(product_range)

    def all_words():  # [B, T, P, Q] -> [B, P, Q]
        sigma = tf.nn.softmax(base[:, None, :, :] + word_logits[:, :, None, :], axis=-1)
        return tf.einsum("btpq,bt->bpq", sigma, weights)

    def word_by_word():
        return _word_averaged_softmax(base, word_logits, weights)

    if memory_bytes <= 0:
        in_memory = False
    else:
        sizes = static_or_dynamic(base) + [static_or_dynamic(word_logits)[1]]
        in_memory = fits_memory(sizes, tf.as_dtype(base.dtype).size, memory_bytes)
    if isinstance(in_memory, bool):
        fallback = all_words if in_memory else word_by_word
        if limit < 0:
            return fallback()
    elif limit < 0:
        return tf.cond(in_memory, all_words, word_by_word)
    base_top = tf.reduce_max(base, axis=-1, keepdims=True)  # [B, P, 1]
    words_top = tf.reduce_max(word_logits, axis=-1, keepdims=True)  # [B, T, 1]
    base_spread = base_top[..., 0] - tf.reduce_min(base, axis=-1)  # [B, P]
    words_spread = words_top[..., 0] - tf.reduce_min(word_logits, axis=-1)  # [B, T]
    words_spread = tf.where(weights > 0, words_spread, tf.zeros_like(words_spread))
    bound = tf.minimum(base_spread[:, :, None], words_spread[:, None, :])  # [B, P, T]
    fits = tf.reduce_all(bound <= tf.cast(limit, bound.dtype))  # NaN logits: False

    def product():
        big = tf.exp(base - tf.stop_gradient(base_top))  # E: [B, P, Q]
        small = tf.exp(word_logits - tf.stop_gradient(words_top))  # e: [B, T, Q]
        normalisers = tf.matmul(big, small, transpose_b=True)  # Z: [B, P, T]
        # Padding words (weight 0) may have any logits: 0 / Z, or 0 where Z underflowed.
        ratios = tf.math.divide_no_nan(weights[:, None, :], normalisers)  # [B, P, T]
        return big * tf.matmul(ratios, small)  # [B, P, Q]

    if isinstance(in_memory, bool):
        return tf.cond(fits, product, fallback)
    # One switch, not nested conds: gradients of the word loop's custom gradient inside a
    # cond inside a cond fail to build in TensorFlow.
    branch = tf.where(fits, 0, tf.where(in_memory, 1, 2))
    return tf.switch_case(branch, [product, all_words, word_by_word])


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
        # The word slots 0, 1, ..., T - 1 [1, T], without `tf.range`: under a cond, XLA does
        # not know T at compile time, which `range` (and a TensorArray's size) would need.
        slots = tf.cumsum(tf.ones_like(weights[:1]), axis=1, exclusive=True)

        def backward_body(n, d_base, d_words, d_weights):
            # Softmax backward, with the word's weight w_n applied last:
            # d_logits = w_n * sigma * (d_total - sum_q d_total * sigma).
            sigma = softmax_of_word(n)  # [B, P, Q]
            row = tf.reduce_sum(d_total * sigma, axis=-1, keepdims=True)  # [B, P, 1]
            unweighted = sigma * (d_total - row)  # [B, P, Q]
            weight = weights[:, n]  # [B]
            d_word = weight[:, None] * tf.reduce_sum(unweighted, axis=1)  # [B, Q]
            # Word n's rows of the [B, T, ...] gradients, added through a one-hot row.
            hot = tf.cast(tf.equal(slots, tf.cast(n, slots.dtype)), base.dtype)  # [1, T]
            d_words += hot[:, :, None] * d_word[:, None, :]  # [B, T, Q]
            d_weights += hot * tf.reduce_sum(row, axis=[1, 2])[:, None]  # [B, T]
            return n + 1, d_base + weight[:, None, None] * unweighted, d_words, d_weights

        _, d_base, d_words, d_weights = tf.while_loop(
            lambda n, *_: n < num_words,
            backward_body,
            (
                tf.constant(0),
                tf.zeros_like(base),
                tf.zeros_like(word_logits),
                tf.zeros_like(weights),
            ),
            parallel_iterations=1,
        )
        return d_base, d_words, d_weights

    return total, grad


def paper_factorized_attention(
    visual,
    words,
    spatial,
    word_mask,
    weights,
    softmax_memory_bytes=DEFAULT_SOFTMAX_MEMORY_BYTES,
    product_range=None,
):
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
        softmax_memory_bytes: the memory allowed to the [B, T, P, P] softmax of all words at
            once (`word_averaged_softmax`); above it, one word at a time.
        product_range: `word_averaged_softmax`'s: None for its product path where exact, a
            negative value for never.

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
    position_mix = word_averaged_softmax(
        base, per_word, mean_weights, softmax_memory_bytes, product_range
    )  # S: [B, P, P]

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
    batch, positions, num_words, channels = static_or_dynamic(features)
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
