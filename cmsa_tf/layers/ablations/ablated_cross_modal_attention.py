"""Table 2: the attention ablations of Eq. 2 (none, word, pixel and word-pixel pair attention)."""

import keras
import tensorflow as tf

from cmsa_tf.layers import attention_kernels
from cmsa_tf.layers.attention_base import CrossModalAttentionBase
from cmsa_tf.layers.multimodal_features import SPATIAL_CHANNELS

VARIANTS = ("none", "word", "pixel", "word_pixel_pair")
# The weights each variant owns, besides the output projection Wo (all but "none").
_PROJECTIONS = {
    "none": (),
    "word": ("query", "key", "value"),
    "pixel": ("query", "key", "value"),
    "word_pixel_pair": ("value",),
}


@keras.saving.register_keras_serializable(package="cmsa_tf")
class AblatedCrossModalAttention(CrossModalAttentionBase):
    """The attention baselines of Table 2: Eq. 2-4 with parts of the attention removed.

    All variants start from the multimodal features of Eq. 1, `f[p, n] = concat(v^[p], e^_n,
    s[p])` (`MultimodalFeatures`), use the affine projections of the paper form
    (`q = Wq f`, `k = Wk f`, `v = Wv f`, dimension d; no 1/sqrt(d) scaling), the residual and
    `Wo` of Eq. 4, `g[p, n] = Wo r[p, n] + f[p, n]`, and Eq. 4's mean over the real words,
    `G[p] = mean_n g[p, n]`. They differ in the attention `r[p, n]` only:

    - `"none"`: no attention and no weights: `G[p] = mean_n f[p, n]`.
    - `"word"`: each (p, n) attends over the words at its own position:
      `a[p,n; n'] = softmax over real n' of q[p,n] . k[p,n']`, `r[p,n] = sum_n' a v[p,n']`.
    - `"pixel"`: each (p, n) attends over the positions of its own word:
      `a[p,n; p'] = softmax over p' of q[p,n] . k[p',n]`, `r[p,n] = sum_p' a v[p',n]`.
    - `"word_pixel_pair"`: one learned score per (position, word) pair from f alone, no query-key
      interaction: `s[p,n] = w . f[p,n]` (w a learned C-vector; a bias would cancel),
      `a[p,n] = softmax over all pairs (p, real n) of s`, and every query gets the same
      `r = sum_(p,n) a[p,n] v[p,n]` (a global context vector).

    The full CMSA (`CrossModalSelfAttention`, paper form) attends over all pairs (p', n'); with
    the same Wq and Wk its attention is exactly the product of the `"pixel"` attention (over p')
    and the `"word"` attention (over n'): these two are its marginals.

    Padding words take no part: they are neither queries nor keys (nor pairs), and the mean runs
    over the real words. A sample without any real word gets G = 0 (as `CrossModalSelfAttention`).
    Computed through the same exact factorisation of the affine projections as the full layer
    (`q[p, n] = A[p] + B[n]`, ...), so f [B, H, W, T, C] is never materialised; "pixel" needs
    O(HW * HW) memory per image, the others O(HW * T * T) at most.

    `call(visual, words, word_mask, return_attention=False)` returns G [B, H, W, C] with
    C = Cv + Cl + 8, or `(G, attention)` with `attention` a dict (as `CrossModalSelfAttention`):
    - `"word_attention"` [B, T]: the attention each word receives as a key, averaged over query
      positions and real query words: the mean of the "word" attention; for "pixel" (each query
      sees only its own word) and "none" (the plain mean), 1/N on each of the N real words; for
      "word_pixel_pair" the marginal of `a` over positions. 0 on padding.
    - `"position_attention"` [B, H, W]: likewise per position: the mean of the "pixel" attention,
      the marginal of `a` over words, or uniform 1/(HW) ("none", "word").
    Both are all zero for a sample without words.

    Args:
        variant: `"none"`, `"word"`, `"pixel"` or `"word_pixel_pair"`.
        key_dim: int, dimension d of queries, keys and values (unused by "none").
        epsilon: float, epsilon of Eq. 1's L2 normalisation.
        kernel_initializer: initializer of the projection kernels and the pair score vector.
        bias_initializer: initializer of the projection biases.
        kernel_regularizer: optional regularizer of the kernels.
        bias_regularizer: optional regularizer of the biases.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    layer = AblatedCrossModalAttention(variant="pixel", key_dim=512)
    visual = keras.random.normal((2, 40, 40, 1000))
    words = keras.random.normal((2, 20, 1000))
    word_mask = np.array([[1] * 6 + [0] * 14, [1] * 20])
    features, attention = layer(visual, words, word_mask, return_attention=True)
    # features: [2, 40, 40, 2008]; attention["position_attention"]: [2, 40, 40]
    ```

    Reference:
        Ye et al., "Cross-Modal Self-Attention Network for Referring Image Segmentation",
        CVPR 2019, Sec. 4.3 and Table 2 ("zeroing out the respective components in Eq. 2").
    """

    def __init__(
        self,
        variant: str = "pixel",
        key_dim: int = 512,
        epsilon: float = 1e-12,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        if variant not in VARIANTS:
            raise ValueError(
                f"`variant` must be one of {VARIANTS} (the full attention is "
                f"`CrossModalSelfAttention`), got {variant!r}."
            )
        super().__init__(
            key_dim=key_dim,
            epsilon=epsilon,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            **kwargs,
        )
        self.variant = variant

    def build_projections(self, channels):
        if self.variant == "word_pixel_pair":
            self.score_kernel = self.add_kernel("score_kernel", (channels, 1))
        for name in _PROJECTIONS[self.variant]:
            kernel = self.add_kernel(f"{name}_kernel", (channels, self.key_dim))
            setattr(self, f"{name}_kernel", kernel)
            setattr(self, f"{name}_bias", self.add_bias(f"{name}_bias", self.key_dim))
        if self.variant != "none":
            self.output_kernel = self.add_kernel("output_kernel", (self.key_dim, channels))
            self.output_bias = self.add_bias("output_bias", channels)

    def call(self, visual, words, word_mask, return_attention=False):
        visual, words, mask = self.call_inputs(visual, words, word_mask)  # mask: bool [B, T]
        dtype = self.kernel_dtype()
        visual_channels, word_channels = visual.shape[-1], words.shape[-1]
        shape = tf.shape(visual)
        batch, height, width = shape[0], shape[1], shape[2]
        positions = height * width

        visual_n, words_n, spatial = [
            tf.cast(x, dtype) for x in self.multimodal_features.parts(visual, words, mask)
        ]  # padding words are zero in words_n
        visual_n = tf.reshape(visual_n, [batch, positions, visual_channels])  # [B, P, Cv]
        spatial = tf.reshape(spatial, [batch, positions, SPATIAL_CHANNELS])  # [B, P, 8]
        mean_weights, has_words = attention_kernels.word_weights(mask, dtype)  # [B, T], [B]
        mean_word = tf.einsum("btc,bt->bc", words_n, mean_weights)  # [B, Cl]
        mean_word = tf.broadcast_to(
            mean_word[:, None, :], tf.stack([batch, positions, word_channels])
        )  # [B, P, Cl]
        mean_features = tf.concat([visual_n, mean_word, spatial], axis=-1)  # [B, P, C]: mean_n f

        def project(name):
            """Affine map of f split into its image part [B, P, k] and word part [B, T, k]."""
            kernel = tf.cast(getattr(self, f"{name}_kernel"), dtype)
            image = tf.einsum("bpc,ck->bpk", visual_n, kernel[:visual_channels]) + tf.einsum(
                "bps,sk->bpk", spatial, kernel[visual_channels + word_channels :]
            )
            bias = getattr(self, f"{name}_bias", None)
            if bias is not None:
                image = image + tf.cast(bias, dtype)
            word = tf.einsum(
                "btc,ck->btk", words_n, kernel[visual_channels : visual_channels + word_channels]
            )
            return image, word

        context = _Context(project, mask, mean_weights, has_words, positions, dtype)
        attended, word_attention, position_attention = _ATTEND[self.variant](context)

        if attended is None:
            outputs = mean_features
        else:
            outputs = (
                tf.einsum("bpd,dc->bpc", attended, tf.cast(self.output_kernel, dtype))
                + tf.cast(self.output_bias, dtype)
                + mean_features
            )  # [B, P, C] (or [B, 1, C] + [B, P, C])
        outputs = outputs * has_words[:, None, None]
        outputs = tf.reshape(outputs, [batch, height, width, tf.shape(mean_features)[-1]])
        word_attention = word_attention * tf.cast(mask, dtype) * has_words[:, None]
        position_attention = tf.reshape(
            position_attention * has_words[:, None], [batch, height, width]
        )
        return self.call_outputs(outputs, word_attention, position_attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"variant": self.variant})
        return config


class _Context:
    """What every variant's attention reads: the split projections of f and the word weights.

    `project(name)` gives the affine map `name` of f split into its image part [B, P, k] and its
    word part [B, T, k]; `mask` is bool [B, T]; `mean_weights` [B, T] the weights of the mean over
    real words; `has_words` [B]; `positions` the scalar P.
    """

    def __init__(self, project, mask, mean_weights, has_words, positions, dtype):
        self.project = project
        self.mask = mask
        self.mean_weights = mean_weights
        self.has_words = has_words
        self.positions = positions
        self.dtype = dtype

    def uniform_positions(self):
        batch = tf.shape(self.mask)[0]
        return tf.ones([batch, self.positions], self.dtype) / tf.cast(self.positions, self.dtype)


# Each variant: context -> (attended [B, P or 1, d] or None, word attention [B, T],
# position attention [B, P]); `attended` is the mean over real words n of r[p, n].


def _attend_none(c):
    return None, c.mean_weights, c.uniform_positions()


def _attend_word(c):
    query_image, query_word = c.project("query")  # A [B, P, d], B [B, T, d]
    key_image, key_word = c.project("key")  # C [B, P, d], D [B, T, d]
    value_image, value_word = c.project("value")  # E, F
    # (A[p] + B[n]) . (C[p] + D[n']) for every position p and words n, n'. The C[p] term is
    # constant over n' (it cancels in the softmax) but keeps a gradient on every weight.
    same_position = tf.reduce_sum(query_image * key_image, axis=-1)[:, :, None] + tf.einsum(
        "bnd,bpd->bpn", query_word, key_image
    )  # [B, P, T]
    logits = (
        same_position[:, :, :, None]
        + tf.einsum("bpd,bmd->bpm", query_image, key_word)[:, :, None, :]
        + tf.einsum("bnd,bmd->bnm", query_word, key_word)[:, None, :, :]
    )  # [B, P, T (query n), T (key n')]
    logits = tf.where(c.mask[:, None, None, :], logits, attention_kernels.mask_value(c.dtype))
    tau = tf.nn.softmax(logits, axis=-1)
    word_mix = tf.einsum("bpnm,bn->bpm", tau, c.mean_weights)  # [B, P, T]
    # mean_n r[p, n] = sum_n w_n (E[p] + sum_n' tau F[n'])
    attended = c.has_words[:, None, None] * value_image + tf.matmul(word_mix, value_word)
    return attended, tf.reduce_mean(word_mix, axis=1), c.uniform_positions()


def _attend_pixel(c):
    query_image, query_word = c.project("query")  # A, B
    key_image, _ = c.project("key")  # C; the D[n] term is constant over p'
    value_image, value_word = c.project("value")  # E, F
    # softmax over p' of (A[p] + B[n]) . C[p'], averaged over the real words n.
    position_mix = attention_kernels.word_averaged_softmax(
        tf.matmul(query_image, key_image, transpose_b=True),  # [B, P, P]
        tf.matmul(query_word, key_image, transpose_b=True),  # [B, T, P]
        c.mean_weights,
    )  # [B, P, P]
    # mean_n r[p, n] = sum_p' S[p, p'] E[p'] + sum_n w_n F[n]
    attended = (
        tf.matmul(position_mix, value_image)
        + tf.einsum("btd,bt->bd", value_word, c.mean_weights)[:, None, :]
    )
    return attended, c.mean_weights, tf.reduce_mean(position_mix, axis=1)


def _attend_word_pixel_pair(c):
    score_image, score_word = c.project("score")  # s[p, n] = a[p] + c[n]
    value_image, value_word = c.project("value")  # E, F
    # softmax over the pairs of a[p] + c[n] = softmax_p(a) * softmax_(real n)(c).
    position_attention = tf.nn.softmax(score_image[..., 0], axis=-1)  # [B, P]
    word_logits = tf.where(c.mask, score_word[..., 0], attention_kernels.mask_value(c.dtype))
    word_attention = tf.nn.softmax(word_logits, axis=-1)  # [B, T]
    context = tf.einsum("bpd,bp->bd", value_image, position_attention) + tf.einsum(
        "btd,bt->bd", value_word, word_attention
    )  # [B, d]
    return context[:, None, :], word_attention, position_attention  # the same r for every pair


_ATTEND = {
    "none": _attend_none,
    "word": _attend_word,
    "pixel": _attend_pixel,
    "word_pixel_pair": _attend_word_pixel_pair,
}
