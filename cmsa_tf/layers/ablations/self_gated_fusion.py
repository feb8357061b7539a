"""Table 3's "self-gated" fusion: Eq. 5's gates, each level gated by its own features only."""

import keras
import tensorflow as tf

from cmsa_tf.layers.common import NUM_LEVELS, check_channels, check_level_shapes, level_inputs
from cmsa_tf.layers.gated_multilevel_fusion import gate_conv, split_gates


@keras.saving.register_keras_serializable(package="cmsa_tf")
class SelfGatedFusion(keras.layers.Layer):
    """Self-gated multi-level fusion, the "CMSA+Gated" baseline of Table 3.

    The gates of Eq. 5, but every level's memory gate acts on the level's own features, with no
    information from the other levels (Eq. 5 with X_j = X_k = X_i):

        [c, m, r] = split(Conv3x3_{channels -> 3 channels}(X_i))
        m = sigmoid(m + 1)                        memory gate
        r = sigmoid(r + 1)                        reset gate
        C_i = m X_i + (1 - m) c
        Y_i = r tanh(C_i) + (1 - r) X_i
        Y = Y_1 + Y_2 + Y_3

    Inputs of `call([x1, x2, x3])`: three [B, H, W, channels] maps (res5, res4, res3).
    Output: Y [B, H, W, channels].

    Args:
        channels: int, channels of every level.
        kernel_initializer: initializer of the gate convolutions' kernels.
        kernel_regularizer: optional regularizer of those kernels.
        bias_regularizer: optional regularizer of their biases.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    levels = [keras.random.normal((2, 40, 40, 500)) for _ in range(3)]
    fused = SelfGatedFusion(channels=500)(levels)  # [2, 40, 40, 500]
    ```

    Reference:
        Ye et al., "Cross-Modal Self-Attention Network for Referring Image Segmentation",
        CVPR 2019, Sec. 4.3 ("uses the same gate generation method in Sec. 3.3 to generate
        memory gates and directly multiply by its own features") and Table 3.
    """

    def __init__(
        self,
        channels: int = 500,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = check_channels(channels)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def build(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name)
        for level, shape in enumerate(input_shape, start=1):
            setattr(self, f"gate_conv_{level}", gate_conv(self, level, shape))

    @property
    def gate_convs(self):
        """The three 3x3 gate convolutions, in level order."""
        return [getattr(self, f"gate_conv_{level}") for level in range(1, NUM_LEVELS + 1)]

    def call(self, inputs):
        inputs = level_inputs(inputs, self.channels, self.name)
        fused = []
        for x, conv in zip(inputs, self.gate_convs):
            candidate, memory, reset = split_gates(conv, x)
            cell = memory * x + (1.0 - memory) * candidate
            fused.append(reset * tf.tanh(cell) + (1.0 - reset) * x)
        return tf.add_n(fused)

    def compute_output_shape(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name)
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
