"""What every Eq. 2-4 attention layer shares: inputs, Eq. 1 features, dtype, shapes, config."""

import keras
import tensorflow as tf

from cmsa_tf.layers.common import clone_initializer, positive_int, positive_number
from cmsa_tf.layers.multimodal_features import (
    SPATIAL_CHANNELS,
    MultimodalFeatures,
    check_multimodal_shapes,
    word_mask_as_bool,
)


class CrossModalAttentionBase(keras.layers.Layer):
    """Base class of the layers that turn (visual, words, word_mask) into one feature map G.

    A subclass is one form of Eq. 2-4 (docs/design.md, "Eq. 2-4: cross-modal self-attention"):
    `CrossModalSelfAttention` (the paper's) or an ablation of it (`AblatedCrossModalAttention`).
    This class checks the inputs, owns the `multimodal_features` sublayer of Eq. 1, creates the
    projection weights on request, and gives the output shape, output spec and config; a
    subclass adds its weights in `build_projections(channels)` and its arithmetic in `call`.

    `call(visual, words, word_mask, return_attention=False)` takes `visual` [B, H, W, Cv],
    `words` [B, T, Cl] and `word_mask` [B, T] (non-zero / True for real words) and returns G
    [B, H, W, C_out], or `(G, attention)` with `attention` a dict of `"word_attention"` [B, T]
    and `"position_attention"` [B, H, W].

    Args:
        key_dim: int, dimension d of queries, keys and values.
        epsilon: float, epsilon of Eq. 1's L2 normalisation.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the projection biases.
        kernel_regularizer: optional regularizer of the projection kernels.
        bias_regularizer: optional regularizer of the projection biases.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).
    """

    def __init__(
        self,
        key_dim: int = 512,
        epsilon: float = 1e-12,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.key_dim = positive_int(key_dim, "key_dim")
        self.epsilon = positive_number(epsilon, "epsilon")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self._input_channels = (None, None)

    # === Weights ===

    def output_channels(self, input_visual_channels, input_word_channels):
        """Channels of G for the given visual and word channels (those of f: Cv + Cl + 8)."""
        return input_visual_channels + input_word_channels + SPATIAL_CHANNELS

    def build(self, visual_shape, words_shape, word_mask_shape):
        check_multimodal_shapes(visual_shape, words_shape, word_mask_shape, self.name)
        visual_channels, word_channels = visual_shape[-1], words_shape[-1]
        if visual_channels is None or word_channels is None:
            raise ValueError(
                f"{self.name}: the channels of `visual` and `words` must be known, got shapes "
                f"{tuple(visual_shape)} and {tuple(words_shape)}."
            )
        self._input_channels = (visual_channels, word_channels)
        self.multimodal_features = MultimodalFeatures(
            epsilon=self.epsilon, dtype=self.dtype_policy, name="multimodal_features"
        )
        self.multimodal_features.build(visual_shape, words_shape, word_mask_shape)
        self.build_projections(visual_channels + word_channels + SPATIAL_CHANNELS)

    def build_projections(self, channels):
        """Creates the subclass's weights for multimodal features of `channels` (Cv + Cl + 8)."""
        raise NotImplementedError

    def add_kernel(self, name, shape):
        """A projection kernel with its own copy of `kernel_initializer`."""
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=clone_initializer(self.kernel_initializer),
            regularizer=self.kernel_regularizer,
        )

    def add_bias(self, name, size):
        """A projection bias [size] with its own copy of `bias_initializer`."""
        return self.add_weight(
            name=name,
            shape=(size,),
            initializer=clone_initializer(self.bias_initializer),
            regularizer=self.bias_regularizer,
        )

    # === Call helpers ===

    def kernel_dtype(self):
        """The dtype of the attention arithmetic: at least float32 (half softmax is fragile)."""
        dtype = tf.as_dtype(self.compute_dtype)
        return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype

    def call_inputs(self, visual, words, word_mask):
        """The inputs of `call` as tensors, checked against what the layer was built for.

        Returns `(visual, words, mask)` with `mask` the boolean word mask [B, T].
        """
        visual = tf.convert_to_tensor(visual)
        words = tf.convert_to_tensor(words)
        word_mask = tf.convert_to_tensor(word_mask)
        check_multimodal_shapes(visual.shape, words.shape, word_mask.shape, self.name)
        expected = self._input_channels
        got = (visual.shape[-1], words.shape[-1])
        if None not in expected and got != expected:
            raise ValueError(
                f"{self.name}: the layer was built for {expected[0]} visual and {expected[1]} "
                f"word channels, got {got[0]} and {got[1]} (shapes {visual.shape}, "
                f"{words.shape})."
            )
        return visual, words, word_mask_as_bool(word_mask)

    def call_outputs(self, outputs, word_attention, position_attention, return_attention):
        """G in the compute dtype, with the attention maps when `return_attention`."""
        outputs = tf.cast(outputs, self.compute_dtype)
        if not return_attention:
            return outputs
        attention = {
            "word_attention": tf.cast(word_attention, self.compute_dtype),
            "position_attention": tf.cast(position_attention, self.compute_dtype),
        }
        return outputs, attention

    # === Shapes and config ===

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
                "key_dim": self.key_dim,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
