"""Table 3's "Deconv" fusion: a transposed convolution (learned upsampling) of the levels."""

import keras
import tensorflow as tf

from cmsa_tf.layers.common import (
    NUM_LEVELS,
    check_channels,
    check_level_shapes,
    clone_initializer,
    level_inputs,
)


@keras.saving.register_keras_serializable(package="cmsa_tf")
class DeconvFusion(keras.layers.Layer):
    """Deconvolution fusion, the "CMSA+Deconv" baseline of Table 3.

    The levels are concatenated and upsampled by a learned transposed convolution (the decoder
    of deconvolution networks), then refined by a 3x3 convolution:

        X = concat(X_1, X_2, X_3)                                          [B, H, W, 3 channels]
        U = ReLU(ConvTranspose_{2f x 2f, stride f, 'same'; -> channels}(X))  [B, fH, fW, channels]
        Y = ReLU(Conv3x3_{-> channels}(U))                                  [B, fH, fW, channels]

    with f = `upsample_factor`. The output is f times finer than the inputs; the model's score
    convolution runs at that resolution before the final bilinear resize to the image size.

    Inputs of `call([x1, x2, x3])`: three [B, H, W, channels] maps (res5, res4, res3).
    Output: Y [B, f H, f W, channels].

    Args:
        channels: int, channels of every level and of the output.
        upsample_factor: int >= 1, the stride f of the transposed convolution.
        kernel_initializer: initializer of the convolution kernels.
        kernel_regularizer: optional regularizer of those kernels.
        bias_regularizer: optional regularizer of their biases.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    levels = [keras.random.normal((2, 40, 40, 500)) for _ in range(3)]
    fused = DeconvFusion(channels=500)(levels)  # [2, 80, 80, 500]
    ```

    Reference:
        Noh et al., "Learning Deconvolution Network for Semantic Segmentation", ICCV 2015; used
        as a fusion baseline in Ye et al., "Cross-Modal Self-Attention Network for Referring
        Image Segmentation", CVPR 2019, Table 3.
    """

    def __init__(
        self,
        channels: int = 500,
        upsample_factor: int = 2,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = check_channels(channels)
        if (
            isinstance(upsample_factor, bool)
            or not isinstance(upsample_factor, int)
            or upsample_factor < 1
        ):
            raise ValueError(
                f"`upsample_factor` must be a positive integer, got {upsample_factor!r}."
            )
        self.upsample_factor = upsample_factor
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def _common(self):
        return dict(
            padding="same",
            activation="relu",
            kernel_initializer=clone_initializer(self.kernel_initializer),
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name)
        batch, height, width = tuple(tf.TensorShape(input_shape[0]).as_list())[:3]
        factor = self.upsample_factor
        self.upsample = keras.layers.Conv2DTranspose(
            self.channels, 2 * factor, strides=factor, name="upsample", **self._common()
        )
        self.upsample.build((batch, height, width, NUM_LEVELS * self.channels))
        self.refine = keras.layers.Conv2D(self.channels, 3, name="refine", **self._common())
        scaled = [None if size is None else factor * size for size in (height, width)]
        self.refine.build((batch, *scaled, self.channels))

    def call(self, inputs):
        inputs = level_inputs(inputs, self.channels, self.name)
        x = tf.concat(inputs, axis=-1)  # [B, H, W, 3 channels]
        return self.refine(self.upsample(x))  # [B, fH, fW, channels]

    def compute_output_shape(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name)
        batch, height, width, channels = tuple(tf.TensorShape(input_shape[0]).as_list())
        factor = self.upsample_factor
        return (
            batch,
            None if height is None else factor * height,
            None if width is None else factor * width,
            channels,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "upsample_factor": self.upsample_factor,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
