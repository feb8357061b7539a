"""Eq. 2-4: cross-modal self-attention over all (position, word) pairs."""

import functools

import keras
import tensorflow as tf

from cmsa_tf.layers import attention_kernels, official_kernels, real_words
from cmsa_tf.layers.attention_base import CrossModalAttentionBase
from cmsa_tf.layers.common import positive_int
from cmsa_tf.layers.multimodal_features import SPATIAL_CHANNELS

FORMS = ("paper", "official")
IMPLEMENTATIONS = {
    "paper": ("factorized", "factorized_per_word", "dense"),
    "official": ("chunked", "dense"),
}
_PROJECTIONS = ("query", "key", "value")


@keras.saving.register_keras_serializable(package="cmsa_tf")
class CrossModalSelfAttention(CrossModalAttentionBase):
    """Cross-modal self-attention (CMSA), Eq. 2-4, with its own Eq. 1 features.

    From raw visual features `V` [B, H, W, Cv], word embeddings `e` [B, T, Cl]
    and a word mask [B, T], the layer forms the multimodal features
    `f[p, n] = concat(v^[p], e^_n, s[p])` (Eq. 1, `MultimodalFeatures`), lets
    every (position, word) pair attend to every other pair (Eq. 2-3), adds
    the projected result back to `f` and averages over the words (Eq. 4):

        q, k, v = Wq f, Wk f, Wv f               (key_dim d)
        a[p,n; p',n'] = softmax_(p',n') (q[p,n] . k[p',n'])   (no 1/sqrt(d))
        g[p,n] = Wo (sum a v) + f[p,n];  G[p] = mean over real words of g[p,n]

    Padding words take no part: they are neither queries nor keys, and Eq. 4's
    mean runs over the real words only. A sample without any real word gets
    zeros.

    Two forms:
    - `form="paper"`: affine `Wq, Wk, Wv, Wo`, as the paper states. Output
      channels C = Cv + Cl + 8. `implementation="factorized"` (default) is the
      exact factorisation (docs/design.md, "The exact factorisation"), never
      materialising more than
      O(HW*HW + HW*T*T) per image, forward or backward, its mean over words of
      the position softmax computed as a product of exponentials by two
      matmuls wherever the logits' spreads keep that exact in floating point
      (`attention_kernels.word_averaged_softmax`), else word by word;
      `"factorized_per_word"` always word by word (all words at once within
      `attention_memory_bytes` on a GPU); `"dense"` materialises the
      [B, HW*T, HW*T] scores. All use the same weights and compute the same
      function.
    - `form="official"`: the authors' code. An optional reduction
      `f := ReLU(Wr f)` to `reduce_dim` channels, then `q, k, v =
      ReLU(1x1 conv)`, `k` and `v` max-pooled 2x2x2 (stride 2, 'same') over
      (word, row, column), `g = ReLU(Wo r) + f`. Output channels `reduce_dim`
      or C. Real words are moved to the front of each sentence (a stable
      sort), so a batch gives exactly what the one-sample code gives on each
      sentence with its padding dropped; a pooled word slot is real if a real
      word fell into it, and only real words enter its max.
      `implementation="chunked"` (default) computes the first projection
      factorised over (position, word) (docs/design.md, "The exact
      factorisation") and the attention with a hand-written backward pass,
      in chunks of `query_chunk_size` query positions (summed over the
      batch) recomputed in the backward pass when the attention exceeds
      `attention_memory_bytes` (the output stage likewise);
      `"dense"` is the plain computation from the materialised features.

    `call(visual, words, word_mask, return_attention=False)` returns G
    [B, H, W, C_out], or `(G, attention)` with `attention` a dict:
    - `"word_attention"` [B, T]: the attention each word receives as a key,
      summed over key positions and averaged over query positions and real
      query words (Fig. 4). It sums to 1 over the real words and is 0 on
      padding. In the official form each pooled word slot's share is split
      equally between the real words pooled into it.
    - `"position_attention"` [B, H, W]: likewise the attention each position
      receives (summed over key words); sums to 1. In the official form each
      pooled cell's share is split equally between the cells pooled into it.

    Args:
        form: `"paper"` or `"official"`.
        implementation: `None` (the form's default), `"factorized"`,
            `"factorized_per_word"` or `"dense"` for the paper form, `"chunked"` or
            `"dense"` for the official form.
        key_dim: int, dimension d of queries, keys and values.
        reduce_dim: int or None; official form only: channels of the
            `ReLU(1x1 conv)` reduction applied to f first (256 for res4 and
            128 for res3 in the authors' code).
        query_chunk_size: int, query positions per chunk of the chunked kernel, summed over
            the batch (each example gets `max(1, query_chunk_size // B)`).
        attention_memory_bytes: int, memory allowed to the attention a kernel keeps for the
            backward pass (default 1 GiB). The official chunked kernel keeps its [B, HW*T, K]
            attention when it fits and otherwise recomputes it chunk by chunk; the paper
            factorised kernel runs all words at once when its [B, T, HW, HW] softmax fits and
            a GPU is visible, and otherwise one word at a time (on the CPU the word loop, with
            its hand-written backward pass, measured faster). Outputs and gradients are the
            same either way.
        epsilon: float, epsilon of Eq. 1's L2 normalisation.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the projection biases.
        kernel_regularizer: optional regularizer of the projection kernels.
        bias_regularizer: optional regularizer of the projection biases.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    layer = CrossModalSelfAttention(form="paper", key_dim=512)
    visual = keras.random.normal((2, 40, 40, 1000))
    words = keras.random.normal((2, 20, 1000))
    word_mask = np.array([[1] * 6 + [0] * 14, [1] * 20])
    features, attention = layer(visual, words, word_mask, return_attention=True)
    # features: [2, 40, 40, 2008]; attention["word_attention"]: [2, 20]
    ```

    Reference:
        Ye et al., "Cross-Modal Self-Attention Network for Referring Image
        Segmentation", CVPR 2019, Sec. 3.1-3.2, Eq. 1-4; the authors' TF1 code
        (github.com/lwye/CMSA-Net) for the official form.
    """

    def __init__(
        self,
        form: str = "paper",
        implementation: str | None = None,
        key_dim: int = 512,
        reduce_dim: int | None = None,
        query_chunk_size: int = 256,
        attention_memory_bytes: int = official_kernels.DEFAULT_ATTENTION_MEMORY_BYTES,
        epsilon: float = 1e-12,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        if form not in FORMS:
            raise ValueError(f"`form` must be one of {FORMS}, got {form!r}.")
        if implementation is None:
            implementation = IMPLEMENTATIONS[form][0]
        if implementation not in IMPLEMENTATIONS[form]:
            known = sorted({name for names in IMPLEMENTATIONS.values() for name in names})
            if implementation in known:
                raise ValueError(
                    f"`implementation={implementation!r}` does not exist for `form={form!r}`; "
                    f"use one of {IMPLEMENTATIONS[form]}."
                )
            raise ValueError(
                f"`implementation` must be None or one of {known}, got {implementation!r}."
            )
        if reduce_dim is not None and form != "official":
            raise ValueError(
                "`reduce_dim` is only used by `form='official'`; the paper form projects "
                f"straight from f. Got reduce_dim={reduce_dim!r} with form={form!r}."
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
        self.form = form
        self.implementation = implementation
        self.reduce_dim = positive_int(reduce_dim, "reduce_dim", allow_none=True)
        self.query_chunk_size = positive_int(query_chunk_size, "query_chunk_size")
        self.attention_memory_bytes = positive_int(attention_memory_bytes, "attention_memory_bytes")

    def output_channels(self, input_visual_channels, input_word_channels):
        """Channels of G for the given visual and word channels."""
        if self.reduce_dim is not None:
            return self.reduce_dim
        return super().output_channels(input_visual_channels, input_word_channels)

    def _add_dense(self, name, in_dim, out_dim):
        return self.add_kernel(f"{name}_kernel", (in_dim, out_dim)), self.add_bias(
            f"{name}_bias", out_dim
        )

    def build_projections(self, channels):
        if self.reduce_dim is not None:
            self.reduce_kernel, self.reduce_bias = self._add_dense(
                "reduce", channels, self.reduce_dim
            )
            channels = self.reduce_dim
        for name in _PROJECTIONS:
            kernel, bias = self._add_dense(name, channels, self.key_dim)
            setattr(self, f"{name}_kernel", kernel)
            setattr(self, f"{name}_bias", bias)
        self.output_kernel, self.output_bias = self._add_dense("output", self.key_dim, channels)

    def _weights(self, dtype):
        def get(name):
            return tf.cast(getattr(self, name), dtype)

        return attention_kernels.ProjectionWeights(
            *[get(f"{n}_{part}") for n in (*_PROJECTIONS, "output") for part in ("kernel", "bias")]
        )

    def call(self, visual, words, word_mask, return_attention=False):
        visual, words, mask = self.call_inputs(visual, words, word_mask)  # mask: bool [B, T]
        dtype = self.kernel_dtype()
        weights = self._weights(dtype)
        shape = tf.shape(visual)
        batch, height, width = shape[0], shape[1], shape[2]

        if self.form == "paper":
            if self.implementation in ("factorized", "factorized_per_word"):
                visual_n, words_n, spatial = [
                    tf.cast(x, dtype) for x in self.multimodal_features.parts(visual, words, mask)
                ]
                outputs, word_attention, position_attention = (
                    attention_kernels.paper_factorized_attention(
                        tf.reshape(visual_n, [batch, height * width, visual.shape[-1]]),
                        words_n,
                        tf.reshape(spatial, [batch, height * width, SPATIAL_CHANNELS]),
                        mask,
                        weights,
                        softmax_memory_bytes=_paper_softmax_memory(self.attention_memory_bytes),
                        product_range=None if self.implementation == "factorized" else -1,
                    )
                )
            else:
                features = tf.cast(self.multimodal_features(visual, words, mask), dtype)
                channels = features.shape[-1]
                # [B, H, W, T, C] -> [B, P, T, C]
                features = tf.reshape(
                    features, [batch, height * width, tf.shape(words)[1], channels]
                )
                outputs, word_attention, position_attention = (
                    attention_kernels.paper_dense_attention(features, mask, weights)
                )
            outputs = tf.reshape(outputs, [batch, height, width, outputs.shape[-1]])
            position_attention = tf.reshape(position_attention, [batch, height, width])
        else:
            outputs, word_attention, position_attention = self._official(
                visual, words, mask, weights, dtype
            )

        return self.call_outputs(outputs, word_attention, position_attention, return_attention)

    def _official(self, visual, words, mask, weights, dtype):
        # Real words first (stable), as the one-sample official code that drops padding.
        order = real_words.real_words_first(mask)  # [B, T]
        words = real_words.gather_words(words, order)
        mask = real_words.gather_words(mask, order)
        if self.implementation == "chunked":
            visual_n, words_n, spatial = [
                tf.cast(x, dtype) for x in self.multimodal_features.parts(visual, words, mask)
            ]
            reduce_weights = None
            if self.reduce_dim is not None:
                reduce_weights = (
                    tf.cast(self.reduce_kernel, dtype),
                    tf.cast(self.reduce_bias, dtype),
                )
            outputs, slot_attention, cell_attention = (
                official_kernels.official_factorized_attention(
                    visual_n,
                    words_n,
                    spatial,
                    mask,
                    weights,
                    reduce_weights=reduce_weights,
                    query_chunk_size=self.query_chunk_size,
                    attention_memory_bytes=self.attention_memory_bytes,
                )
            )
        else:
            # [B, H, W, T, C]
            features = tf.cast(self.multimodal_features(visual, words, mask), dtype)
            if self.reduce_dim is not None:
                features = tf.nn.relu(
                    tf.einsum("bhwtc,cr->bhwtr", features, tf.cast(self.reduce_kernel, dtype))
                    + tf.cast(self.reduce_bias, dtype)
                )  # [B, H, W, T, R]
            outputs, slot_attention, cell_attention = official_kernels.official_attention(
                features, mask, weights
            )

        # Pooled word slot j -> its real words 2j, 2j+1 (equal shares), then undo the sort.
        num_words = tf.shape(mask)[1]
        slot_of_word = tf.range(num_words) // 2  # [T]
        real = tf.cast(mask, dtype)  # [B, T]
        padded = tf.pad(real, [[0, 0], [0, num_words % 2]])
        real_per_slot = tf.reduce_sum(tf.reshape(padded, [tf.shape(real)[0], -1, 2]), axis=-1)
        share = tf.gather(slot_attention / tf.maximum(real_per_slot, 1.0), slot_of_word, axis=1)
        word_attention = real_words.unpack_words(share * real, order, num_words)  # [B, T]

        # Pooled cell (i, j) -> its cells (2i..2i+1, 2j..2j+1) (equal shares).
        height, width = tf.shape(visual)[1], tf.shape(visual)[2]

        def cells_per_slot(size):  # [size]: how many cells share each cell's pooled slot
            index = tf.range(size)
            return tf.where(2 * (index // 2) + 1 < size, 2.0, 1.0)

        expanded = tf.repeat(tf.repeat(cell_attention, 2, axis=1), 2, axis=2)[:, :height, :width]
        counts = cells_per_slot(height)[:, None] * cells_per_slot(width)[None, :]  # [H, W]
        position_attention = expanded / tf.cast(counts, dtype)[None]  # [B, H, W]
        return outputs, word_attention, position_attention

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "form": self.form,
                "implementation": self.implementation,
                "reduce_dim": self.reduce_dim,
                "query_chunk_size": self.query_chunk_size,
                "attention_memory_bytes": self.attention_memory_bytes,
            }
        )
        return config


def _paper_softmax_memory(attention_memory_bytes: int) -> int:
    """The paper kernel's budget for its all-words softmax: the layer's on a GPU, 0 on the CPU."""
    return attention_memory_bytes if _gpu_visible() else 0


@functools.cache
def _gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (asked once: the answer does not change in a process)."""
    return bool(tf.config.list_logical_devices("GPU"))
