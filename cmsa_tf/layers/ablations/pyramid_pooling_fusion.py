"""Table 3's "PPM" fusion: a pyramid pooling module over the concatenated levels."""

import keras
import tensorflow as tf

from cmsa_tf.layers.common import (
    NUM_LEVELS,
    check_channels,
    check_level_shapes,
    clone_initializer,
    level_inputs,
)


def adaptive_pooling_matrix(size, bins, dtype):
    """The [bins, size] matrix of 1-D adaptive average pooling.

    Bin i averages the cells `floor(i * size / bins) <= j < ceil((i + 1) * size / bins)`, which is
    never empty (bins may exceed size; cells are then shared between bins).
    """
    index = tf.range(bins)
    start = (index * size) // bins  # [bins]
    end = ((index + 1) * size + bins - 1) // bins  # [bins]
    cells = tf.range(size)
    inside = (cells[None, :] >= start[:, None]) & (cells[None, :] < end[:, None])  # [bins, size]
    return tf.cast(inside, dtype) / tf.cast(end - start, dtype)[:, None]


def adaptive_average_pool(x, bins):
    """Adaptive average pooling of x [B, H, W, C] to [B, bins, bins, C]."""
    shape = tf.shape(x)
    rows = adaptive_pooling_matrix(shape[1], bins, x.dtype)  # [bins, H]
    columns = adaptive_pooling_matrix(shape[2], bins, x.dtype)  # [bins, W]
    return tf.einsum("ih,jw,bhwc->bijc", rows, columns, x)


@keras.saving.register_keras_serializable(package="cmsa_tf")
class PyramidPoolingFusion(keras.layers.Layer):
    """Pyramid pooling (PSPNet) over the concatenated levels, the "CMSA+PPM" baseline of Table 3.

        X = concat(X_1, X_2, X_3)                                [B, H, W, 3 channels]
        P_b = Up_b(ReLU(Conv1x1_{-> k}(AvgPool_b(X))))           for every bin count b in `bins`
        Y = ReLU(Conv3x3_{-> channels}(concat(X, P_b1, P_b2, ...)))

    `AvgPool_b` is adaptive average pooling to a b x b grid (`adaptive_average_pool`), `Up_b`
    bilinear resizing (half-pixel centres) back to H x W, and `k = max(1, channels // len(bins))`
    the channels of each pyramid branch.

    Inputs of `call([x1, x2, x3])`: three [B, H, W, channels] maps (res5, res4, res3).
    Output: Y [B, H, W, channels].

    Args:
        channels: int, channels of every level and of the output.
        bins: tuple of ints, the pyramid's grid sizes (PSPNet's (1, 2, 3, 6)).
        kernel_initializer: initializer of the convolution kernels.
        kernel_regularizer: optional regularizer of those kernels.
        bias_regularizer: optional regularizer of their biases.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    levels = [keras.random.normal((2, 40, 40, 500)) for _ in range(3)]
    fused = PyramidPoolingFusion(channels=500)(levels)  # [2, 40, 40, 500]
    ```

    Reference:
        Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017; used as a fusion baseline in
        Ye et al., "Cross-Modal Self-Attention Network for Referring Image Segmentation",
        CVPR 2019, Table 3.
    """

    def __init__(
        self,
        channels: int = 500,
        bins: tuple = (1, 2, 3, 6),
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = check_channels(channels)
        bins = tuple(bins) if isinstance(bins, (list, tuple)) else bins
        if (
            not isinstance(bins, tuple)
            or not bins
            or any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in bins)
        ):
            raise ValueError(
                f"`bins` must be a non-empty tuple of positive integers, got {bins!r}."
            )
        self.bins = bins
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    @property
    def branch_channels(self):
        return max(1, self.channels // len(self.bins))

    def _conv(self, filters, kernel_size, name):
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            activation="relu",
            kernel_initializer=clone_initializer(self.kernel_initializer),
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name)
        batch, height, width = tuple(tf.TensorShape(input_shape[0]).as_list())[:3]
        concat_channels = NUM_LEVELS * self.channels
        # Named attributes, not a list: tf.train.Checkpoint only tracks attributes.
        for index, bins in enumerate(self.bins):
            conv = self._conv(self.branch_channels, 1, f"branch_conv_{index}")
            conv.build((batch, bins, bins, concat_channels))
            setattr(self, f"branch_conv_{index}", conv)
        self.output_conv = self._conv(self.channels, 3, "output_conv")
        self.output_conv.build(
            (batch, height, width, concat_channels + len(self.bins) * self.branch_channels)
        )

    @property
    def branch_convs(self):
        """The 1x1 convolutions of the pyramid branches, in `bins` order."""
        return [getattr(self, f"branch_conv_{index}") for index in range(len(self.bins))]

    def call(self, inputs):
        inputs = level_inputs(inputs, self.channels, self.name)
        x = tf.concat(inputs, axis=-1)  # [B, H, W, 3 channels]
        size = tf.shape(x)[1:3]
        pyramid = [x]
        for bins, conv in zip(self.bins, self.branch_convs):
            pooled = conv(adaptive_average_pool(x, bins))  # [B, bins, bins, k]
            upsampled = tf.image.resize(pooled, size, method="bilinear")  # [B, H, W, k]
            pyramid.append(tf.cast(upsampled, x.dtype))
        return self.output_conv(tf.concat(pyramid, axis=-1))  # [B, H, W, channels]

    def compute_output_shape(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name)
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "bins": self.bins,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
