"""Table 3's "ConvLSTM" fusion: a convolutional LSTM run over the levels from high to low (RRN)."""

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
class ConvLSTMFusion(keras.layers.Layer):
    """Recurrent refinement over the levels, the "CMSA+ConvLSTM" baseline of Table 3.

    The levels form a sequence from high to low, X_1 (res5), X_2 (res4), X_3 (res3), read by one
    convolutional LSTM (`keras.layers.ConvLSTM2D`, 'same' padding, zero initial state); the
    fused map is its last hidden state:

        [i, f, g, o] = Conv_x(X_t) + Conv_h(h_{t-1})       (4 x channels; Conv_x has the bias)
        c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)
        h_t = sigmoid(o) tanh(c_t),        h_0 = c_0 = 0,        Y = h_3

    with `kernel_size` x `kernel_size` 'same' convolutions; the forget-gate bias starts at 1.

    Inputs of `call([x1, x2, x3])`: three [B, H, W, channels] maps (res5, res4, res3).
    Output: Y [B, H, W, channels].

    Args:
        channels: int, channels of every level and of the hidden state.
        kernel_size: int, the ConvLSTM's convolution size.
        kernel_initializer: initializer of the input kernels.
        recurrent_initializer: initializer of the recurrent kernels.
        kernel_regularizer: optional regularizer of the input kernels.
        bias_regularizer: optional regularizer of the biases.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    levels = [keras.random.normal((2, 40, 40, 500)) for _ in range(3)]
    fused = ConvLSTMFusion(channels=500)(levels)  # [2, 40, 40, 500]
    ```

    Reference:
        Li et al., "Referring Image Segmentation via Recurrent Refinement Networks" (RRN),
        CVPR 2018; Shi et al., "Convolutional LSTM Network", NeurIPS 2015; used as a fusion
        baseline in Ye et al., "Cross-Modal Self-Attention Network for Referring Image
        Segmentation", CVPR 2019, Table 3.
    """

    def __init__(
        self,
        channels: int = 500,
        kernel_size: int = 3,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = check_channels(channels)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size <= 0:
            raise ValueError(f"`kernel_size` must be a positive integer, got {kernel_size!r}.")
        self.kernel_size = kernel_size
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def build(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name)
        self.conv_lstm = keras.layers.ConvLSTM2D(
            self.channels,
            self.kernel_size,
            padding="same",
            return_sequences=False,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            recurrent_initializer=clone_initializer(self.recurrent_initializer),
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            dtype=self.dtype_policy,
            name="conv_lstm",
        )
        batch, height, width, channels = tuple(tf.TensorShape(input_shape[0]).as_list())
        self.conv_lstm.build((batch, NUM_LEVELS, height, width, channels))
        # The cell's (unused) dropout RNG state sits in a list that tf.train.Checkpoint does not
        # see; a named attribute puts it in training checkpoints with every other variable.
        seed_generator = getattr(self.conv_lstm.cell, "seed_generator", None)
        if seed_generator is not None:
            self.dropout_seed_state = seed_generator.state

    def call(self, inputs):
        inputs = level_inputs(inputs, self.channels, self.name)
        sequence = tf.stack(inputs, axis=1)  # [B, 3 (res5, res4, res3), H, W, channels]
        return self.conv_lstm(sequence)  # [B, H, W, channels]

    def compute_output_shape(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name)
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "kernel_size": self.kernel_size,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
