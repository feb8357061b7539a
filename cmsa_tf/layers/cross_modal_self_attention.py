"""Eq. 2-4: cross-modal self-attention over all (position, word) pairs."""

import keras
import tensorflow as tf

from cmsa_tf.layers import attention_kernels
from cmsa_tf.layers.multimodal_features import (
    SPATIAL_CHANNELS,
    MultimodalFeatures,
    check_multimodal_shapes,
    word_mask_as_bool,
)

FORMS = ("paper", "official")
IMPLEMENTATIONS = {"paper": ("factorized", "dense"), "official": ("chunked", "dense")}
_PROJECTIONS = ("query", "key", "value")


def clone_initializer(initializer):
    """A fresh copy of a Keras initializer.

    An unseeded Keras 3 initializer instance draws the same values on every
    call, so each weight needs its own copy (keras-hub does the same).
    """
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer
    return initializer.__class__.from_config(initializer.get_config())


def build_multimodal_features(layer, visual_shape, words_shape, word_mask_shape):
    """Checks the inputs of an attention layer and builds its `multimodal_features` sublayer.

    Returns the channels of the multimodal feature f of Eq. 1 (Cv + Cl + 8).
    """
    check_multimodal_shapes(visual_shape, words_shape, word_mask_shape, layer.name)
    visual_channels, word_channels = visual_shape[-1], words_shape[-1]
    if visual_channels is None or word_channels is None:
        raise ValueError(
            f"{layer.name}: the channels of `visual` and `words` must be known, got shapes "
            f"{tuple(visual_shape)} and {tuple(words_shape)}."
        )
    layer._input_channels = (visual_channels, word_channels)  # pylint: disable=protected-access
    layer.multimodal_features = MultimodalFeatures(
        epsilon=layer.epsilon, dtype=layer.dtype_policy, name="multimodal_features"
    )
    layer.multimodal_features.build(visual_shape, words_shape, word_mask_shape)
    return visual_channels + word_channels + SPATIAL_CHANNELS


def prepare_attention_inputs(layer, visual, words, word_mask):
    """The inputs of an attention layer's `call` as tensors, checked against what it was built for.

    Returns `(visual, words, mask)` with `mask` the boolean word mask [B, T].
    """
    visual = tf.convert_to_tensor(visual)
    words = tf.convert_to_tensor(words)
    word_mask = tf.convert_to_tensor(word_mask)
    check_multimodal_shapes(visual.shape, words.shape, word_mask.shape, layer.name)
    expected = tuple(getattr(layer, "_input_channels", (None, None)))
    got = (visual.shape[-1], words.shape[-1])
    if None not in expected and got != expected:
        raise ValueError(
            f"{layer.name}: the layer was built for {expected[0]} visual and {expected[1]} word "
            f"channels, got {got[0]} and {got[1]} (shapes {visual.shape}, {words.shape})."
        )
    return visual, words, word_mask_as_bool(word_mask)


def _positive_int(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="cmsa_tf")
class CrossModalSelfAttention(keras.layers.Layer):
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
      exact factorisation of the design notes, never materialising more than
      O(HW*HW + HW*T*T) per image, forward or backward; `"dense"` materialises
      the [B, HW*T, HW*T] scores. Both use the same weights and compute the
      same function.
    - `form="official"`: the authors' code. An optional reduction
      `f := ReLU(Wr f)` to `reduce_dim` channels, then `q, k, v =
      ReLU(1x1 conv)`, `k` and `v` max-pooled 2x2x2 (stride 2, 'same') over
      (word, row, column), `g = ReLU(Wo r) + f`. Output channels `reduce_dim`
      or C. Real words are moved to the front of each sentence (a stable
      sort), so a batch gives exactly what the one-sample code gives on each
      sentence with its padding dropped; a pooled word slot is real if a real
      word fell into it, and only real words enter its max.
      `implementation="chunked"` (default) processes `query_chunk_size` query
      positions at a time and recomputes each chunk in the backward pass;
      `"dense"` is the plain computation.

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
        implementation: `None` (the form's default), `"factorized"` or
            `"dense"` for the paper form, `"chunked"` or `"dense"` for the
            official form.
        key_dim: int, dimension d of queries, keys and values.
        reduce_dim: int or None; official form only: channels of the
            `ReLU(1x1 conv)` reduction applied to f first (256 for res4 and
            128 for res3 in the authors' code).
        query_chunk_size: int, query positions per chunk of the chunked kernel.
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
        form="paper",
        implementation=None,
        key_dim=512,
        reduce_dim=None,
        query_chunk_size=256,
        epsilon=1e-12,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
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
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0:
            raise ValueError(f"`epsilon` must be a positive number, got {epsilon!r}.")
        self.form = form
        self.implementation = implementation
        self.key_dim = _positive_int(key_dim, "key_dim")
        self.reduce_dim = _positive_int(reduce_dim, "reduce_dim", allow_none=True)
        self.query_chunk_size = _positive_int(query_chunk_size, "query_chunk_size")
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def output_channels(self, input_visual_channels, input_word_channels):
        """Channels of G for the given visual and word channels."""
        if self.reduce_dim is not None:
            return self.reduce_dim
        return input_visual_channels + input_word_channels + SPATIAL_CHANNELS

    def _add_dense(self, name, in_dim, out_dim):
        kernel = self.add_weight(
            name=f"{name}_kernel",
            shape=(in_dim, out_dim),
            initializer=clone_initializer(self.kernel_initializer),
            regularizer=self.kernel_regularizer,
        )
        bias = self.add_weight(
            name=f"{name}_bias",
            shape=(out_dim,),
            initializer=clone_initializer(self.bias_initializer),
            regularizer=self.bias_regularizer,
        )
        return kernel, bias

    def build(self, visual_shape, words_shape, word_mask_shape):
        channels = build_multimodal_features(self, visual_shape, words_shape, word_mask_shape)
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

    def _kernel_dtype(self):
        # Attention arithmetic runs in at least float32 (softmax of half logits is fragile).
        dtype = tf.as_dtype(self.compute_dtype)
        return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype

    def _weights(self, dtype):
        def get(name):
            return tf.cast(getattr(self, name), dtype)

        return attention_kernels.ProjectionWeights(
            *[get(f"{n}_{part}") for n in (*_PROJECTIONS, "output") for part in ("kernel", "bias")]
        )

    def call(self, visual, words, word_mask, return_attention=False):
        visual, words, mask = prepare_attention_inputs(self, visual, words, word_mask)  # [B, T]
        dtype = self._kernel_dtype()
        weights = self._weights(dtype)
        shape = tf.shape(visual)
        batch, height, width = shape[0], shape[1], shape[2]

        if self.form == "paper":
            if self.implementation == "factorized":
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

        outputs = tf.cast(outputs, self.compute_dtype)
        if not return_attention:
            return outputs
        attention = {
            "word_attention": tf.cast(word_attention, self.compute_dtype),
            "position_attention": tf.cast(position_attention, self.compute_dtype),
        }
        return outputs, attention

    def _official(self, visual, words, mask, weights, dtype):
        # Real words first (stable), as the one-sample official code that drops padding.
        order = tf.argsort(tf.cast(tf.logical_not(mask), tf.int32), axis=1, stable=True)  # [B, T]
        words = tf.gather(words, order, batch_dims=1)
        mask = tf.gather(mask, order, batch_dims=1)
        features = tf.cast(self.multimodal_features(visual, words, mask), dtype)  # [B, H, W, T, C]
        if self.reduce_dim is not None:
            features = tf.nn.relu(
                tf.einsum("bhwtc,cr->bhwtr", features, tf.cast(self.reduce_kernel, dtype))
                + tf.cast(self.reduce_bias, dtype)
            )  # [B, H, W, T, R]
        chunk = self.query_chunk_size if self.implementation == "chunked" else None
        outputs, slot_attention, cell_attention = attention_kernels.official_attention(
            features, mask, weights, query_chunk_size=chunk
        )

        # Pooled word slot j -> its real words 2j, 2j+1 (equal shares), then undo the sort.
        num_words = tf.shape(mask)[1]
        slot_of_word = tf.range(num_words) // 2  # [T]
        real = tf.cast(mask, dtype)  # [B, T]
        padded = tf.pad(real, [[0, 0], [0, num_words % 2]])
        real_per_slot = tf.reduce_sum(tf.reshape(padded, [tf.shape(real)[0], -1, 2]), axis=-1)
        share = tf.gather(slot_attention / tf.maximum(real_per_slot, 1.0), slot_of_word, axis=1)
        word_attention = tf.gather(share * real, tf.argsort(order, axis=1), batch_dims=1)  # [B, T]

        # Pooled cell (i, j) -> its cells (2i..2i+1, 2j..2j+1) (equal shares).
        height, width = tf.shape(visual)[1], tf.shape(visual)[2]

        def cells_per_slot(size):  # [size]: how many cells share each cell's pooled slot
            index = tf.range(size)
            return tf.where(2 * (index // 2) + 1 < size, 2.0, 1.0)

        expanded = tf.repeat(tf.repeat(cell_attention, 2, axis=1), 2, axis=2)[:, :height, :width]
        counts = cells_per_slot(height)[:, None] * cells_per_slot(width)[None, :]  # [H, W]
        position_attention = expanded / tf.cast(counts, dtype)[None]  # [B, H, W]
        return outputs, word_attention, position_attention

    def compute_output_shape(self, visual_shape, words_shape, word_mask_shape):
        check_multimodal_shapes(visual_shape, words_shape, word_mask_shape, self.name)
        channels = None
        if visual_shape[-1] is not None and words_shape[-1] is not None:
            channels = self.output_channels(visual_shape[-1], words_shape[-1])
        return (visual_shape[0], visual_shape[1], visual_shape[2], channels)

    def compute_output_spec(self, visual, words, word_mask, return_attention=False):
        shape = self.compute_output_shape(visual.shape, words.shape, word_mask.shape)
        outputs = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if not return_attention:
            return outputs
        attention = {
            "word_attention": keras.KerasTensor(tuple(words.shape[:2]), dtype=self.compute_dtype),
            "position_attention": keras.KerasTensor(
                tuple(visual.shape[:3]), dtype=self.compute_dtype
            ),
        }
        return outputs, attention

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "form": self.form,
                "implementation": self.implementation,
                "key_dim": self.key_dim,
                "reduce_dim": self.reduce_dim,
                "query_chunk_size": self.query_chunk_size,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
