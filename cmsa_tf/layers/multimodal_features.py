"""Eq. 1: the multimodal feature f[p, n] = concat(v[p]/||v[p]||, e_n/||e_n||, s[p])."""

import keras
import tensorflow as tf

from cmsa_tf.layers.spatial_coordinates import spatial_coordinates

SPATIAL_CHANNELS = 8


def check_multimodal_shapes(visual_shape, words_shape, word_mask_shape, layer_name):
    """Static checks of the (visual, words, word_mask) shapes shared by the Eq. 1-4 layers.

    Args:
        visual_shape: shape of `visual`, expected [B, H, W, Cv].
        words_shape: shape of `words`, expected [B, T, Cl].
        word_mask_shape: shape of `word_mask`, expected [B, T].
        layer_name: name used in error messages.

    Raises:
        ValueError: a rank is wrong, or the batch or word dimensions disagree.
    """

    def as_tuple(shape):
        return None if shape is None else tuple(tf.TensorShape(shape).as_list())

    visual_shape, words_shape, word_mask_shape = (
        as_tuple(visual_shape),
        as_tuple(words_shape),
        as_tuple(word_mask_shape),
    )
    expected = (
        ("visual", visual_shape, 4, "[batch, height, width, visual_channels]"),
        ("words", words_shape, 3, "[batch, num_words, word_channels]"),
        ("word_mask", word_mask_shape, 2, "[batch, num_words]"),
    )
    for name, shape, rank, layout in expected:
        if shape is None or len(shape) != rank:
            raise ValueError(f"{layer_name}: `{name}` must have shape {layout}, got shape {shape}.")
    batches = {visual_shape[0], words_shape[0], word_mask_shape[0]} - {None}
    if len(batches) > 1:
        raise ValueError(
            f"{layer_name}: `visual`, `words` and `word_mask` must share the batch size, got "
            f"shapes {visual_shape}, {words_shape} and {word_mask_shape}."
        )
    if None not in (words_shape[1], word_mask_shape[1]) and words_shape[1] != word_mask_shape[1]:
        raise ValueError(
            f"{layer_name}: `words` and `word_mask` must have the same number of words, got "
            f"shapes {words_shape} and {word_mask_shape}."
        )


def word_mask_as_bool(word_mask):
    """Any numeric or bool mask [B, T] -> bool mask, True where the value is non-zero."""
    word_mask = tf.convert_to_tensor(word_mask)
    if word_mask.dtype == tf.bool:
        return word_mask
    return tf.not_equal(word_mask, tf.zeros([], word_mask.dtype))


@keras.saving.register_keras_serializable(package="cmsa_tf")
class MultimodalFeatures(keras.layers.Layer):
    """The multimodal feature of Eq. 1 for every position and word.

    `f[p, n] = concat(v[p] / ||v[p]||, e_n / ||e_n||, s[p])`, where `v` are the
    visual features, `e` the word embeddings and `s` the 8-D spatial feature
    (`spatial_coordinates`). The L2 normalisation is `x / sqrt(max(sum(x^2),
    epsilon))`, as `tf.math.l2_normalize`. Padding words' slots of `f` are zero.

    Inputs of `call(visual, words, word_mask)`: `visual` [B, H, W, Cv],
    `words` [B, T, Cl] and `word_mask` [B, T] (non-zero / True for real words,
    any numeric or bool dtype). Output: [B, H, W, T, Cv + Cl + 8].

    `parts(visual, words, word_mask)` returns the three pieces without the
    (large) broadcast: `(visual_normalized [B, H, W, Cv], words_normalized
    [B, T, Cl] with padding zeroed, spatial [B, H, W, 8])`.

    Args:
        epsilon: float > 0, lower bound of the squared norm in the L2 normalisation.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    visual = keras.random.normal((2, 40, 40, 1000))
    words = keras.random.normal((2, 20, 1000))
    word_mask = np.array([[1] * 5 + [0] * 15, [1] * 20])
    f = MultimodalFeatures()(visual, words, word_mask)  # [2, 40, 40, 20, 2008]
    ```

    Reference:
        Ye et al., "Cross-Modal Self-Attention Network for Referring Image
        Segmentation", CVPR 2019, Eq. 1.
    """

    def __init__(self, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or epsilon <= 0:
            raise ValueError(f"`epsilon` must be a positive number, got {epsilon!r}.")
        self.epsilon = float(epsilon)

    def build(self, visual_shape, words_shape, word_mask_shape):
        check_multimodal_shapes(visual_shape, words_shape, word_mask_shape, self.name)

    def _as_compute_dtype(self, x):
        x = tf.convert_to_tensor(x)
        if x.dtype != self.compute_dtype:
            x = tf.cast(x, self.compute_dtype)
        return x

    def parts(self, visual, words, word_mask):
        """Normalised visual features, normalised words (padding zeroed), spatial features.

        Args:
            visual: [B, H, W, Cv] visual features.
            words: [B, T, Cl] word embeddings.
            word_mask: [B, T], non-zero / True for real words.

        Returns:
            `(visual_normalized [B, H, W, Cv], words_normalized [B, T, Cl],
            spatial [B, H, W, 8])`, all in the layer's compute dtype.
        """
        visual = self._as_compute_dtype(visual)
        words = self._as_compute_dtype(words)
        word_mask = tf.convert_to_tensor(word_mask)
        check_multimodal_shapes(visual.shape, words.shape, word_mask.shape, self.name)
        real = tf.cast(word_mask_as_bool(word_mask), words.dtype)  # [B, T]
        visual_normalized = tf.math.l2_normalize(visual, axis=-1, epsilon=self.epsilon)
        words_normalized = tf.math.l2_normalize(words, axis=-1, epsilon=self.epsilon)
        words_normalized = words_normalized * real[:, :, None]
        shape = tf.shape(visual)
        coords = spatial_coordinates(shape[1], shape[2], visual.dtype)  # [H, W, 8]
        # [B, H, W, 8]
        spatial = tf.broadcast_to(
            coords[None], tf.stack([shape[0], shape[1], shape[2], SPATIAL_CHANNELS])
        )
        return visual_normalized, words_normalized, spatial

    def call(self, visual, words, word_mask):
        visual_normalized, words_normalized, spatial = self.parts(visual, words, word_mask)
        real = tf.cast(word_mask_as_bool(word_mask), visual_normalized.dtype)  # [B, T]
        v_shape = tf.shape(visual_normalized)
        num_words = tf.shape(words_normalized)[1]

        def broadcast(x):  # [B, H, W, T, K] with x indexed [B, 1, 1, T, K] or [B, H, W, 1, K]
            target = tf.stack([v_shape[0], v_shape[1], v_shape[2], num_words, tf.shape(x)[-1]])
            return tf.broadcast_to(x, target)

        features = tf.concat(
            [
                broadcast(visual_normalized[:, :, :, None, :]),
                broadcast(words_normalized[:, None, None, :, :]),
                broadcast(spatial[:, :, :, None, :]),
            ],
            axis=-1,
        )
        return features * real[:, None, None, :, None]  # [B, H, W, T, Cv + Cl + 8]

    def compute_output_shape(self, visual_shape, words_shape, word_mask_shape):
        check_multimodal_shapes(visual_shape, words_shape, word_mask_shape, self.name)
        channels = None
        if visual_shape[-1] is not None and words_shape[-1] is not None:
            channels = visual_shape[-1] + words_shape[-1] + SPATIAL_CHANNELS
        return (visual_shape[0], visual_shape[1], visual_shape[2], words_shape[1], channels)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config
