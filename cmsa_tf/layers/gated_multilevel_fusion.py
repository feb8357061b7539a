"""Eq. 5: gated multi-level fusion of the three levels' self-attentive features."""

import numbers

import keras
import tensorflow as tf

from cmsa_tf.layers.common import (
    NUM_LEVELS,
    check_channels,
    check_level_shapes,
    clone_initializer,
    level_inputs,
)


def gate_conv(layer, level, shape):
    """Eq. 5's 3x3 gate conv (channels -> 3 channels) of one level of `layer`, built for `shape`.

    It takes `layer`'s channels, regularizers and dtype policy and its own copy of
    `layer.kernel_initializer`. The caller keeps it in a named attribute `gate_conv_<level>`, not
    a list: tf.train.Checkpoint only tracks layers held in attributes, and training checkpoints
    go through it.
    """
    conv = keras.layers.Conv2D(
        3 * layer.channels,
        3,
        padding="same",
        kernel_initializer=clone_initializer(layer.kernel_initializer),
        kernel_regularizer=layer.kernel_regularizer,
        bias_regularizer=layer.bias_regularizer,
        dtype=layer.dtype_policy,
        name=f"gate_conv_{level}",
    )
    conv.build(shape)
    return conv


def split_gates(conv, x):
    """Eq. 5's candidate c, memory gate m = sigmoid(m + 1) and reset gate r = sigmoid(r + 1)."""
    # [B, H, W, 3 * channels] -> 3 x [B, H, W, channels]
    candidate, memory, reset = tf.split(conv(x), 3, axis=-1)
    return candidate, tf.sigmoid(memory + 1.0), tf.sigmoid(reset + 1.0)


@keras.saving.register_keras_serializable(package="cmsa_tf")
class GatedMultiLevelFusion(keras.layers.Layer):
    """Gated fusion of three feature levels (Eq. 5, as in the authors' code).

    For level i with the other two levels j < k (in input order):

        [c, m, r] = split(Conv3x3_{channels -> 3 channels}(X_i))
        m = sigmoid(m + 1)                                   memory gate
        r = sigmoid(r + 1)                                   reset gate
        C_i = gamma_i m X_j + (1 - gamma_i) m X_k + (1 - m) c
        Y_i = r tanh(C_i) + (1 - r) X_i
        Y = Y_1 + Y_2 + Y_3

    `gamma_i` are trainable scalars (the `gammas` property).

    Inputs of `call([x1, x2, x3])`: three [B, H, W, channels] maps, in the
    order res5, res4, res3. Output: Y [B, H, W, channels].

    Args:
        channels: int, channels of every level (500 in the paper).
        gamma_initializer: float, initial value of every gamma_i, or a Keras
            initializer for them.
        kernel_initializer: initializer of the gate convolutions' kernels.
        kernel_regularizer: optional regularizer of those kernels.
        bias_regularizer: optional regularizer of their biases.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    levels = [keras.random.normal((2, 40, 40, 500)) for _ in range(3)]
    fused = GatedMultiLevelFusion(channels=500)(levels)  # [2, 40, 40, 500]
    ```

    Reference:
        Ye et al., "Cross-Modal Self-Attention Network for Referring Image
        Segmentation", CVPR 2019, Sec. 3.3, Eq. 5; the authors' TF1 code
        (`MGATE` / `GATECell`).
    """

    def __init__(
        self,
        channels: int = 500,
        gamma_initializer=0.5,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = check_channels(channels)
        if isinstance(gamma_initializer, numbers.Real) and not isinstance(gamma_initializer, bool):
            self.gamma_initializer = float(gamma_initializer)
        else:
            try:
                self.gamma_initializer = keras.initializers.get(gamma_initializer)
            except ValueError as error:
                raise ValueError(
                    "`gamma_initializer` must be a number or a Keras initializer, got "
                    f"{gamma_initializer!r}."
                ) from error
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def build(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name)
        if isinstance(self.gamma_initializer, float):
            gamma_init = keras.initializers.Constant(self.gamma_initializer)
        else:
            gamma_init = self.gamma_initializer
        for level, shape in enumerate(input_shape, start=1):
            setattr(self, f"gate_conv_{level}", gate_conv(self, level, shape))
            setattr(
                self,
                f"gamma_{level}",
                self.add_weight(name=f"gamma_{level}", shape=(), initializer=gamma_init),
            )

    @property
    def gate_convs(self):
        """The three 3x3 gate convolutions, in level order."""
        return [getattr(self, f"gate_conv_{level}") for level in range(1, NUM_LEVELS + 1)]

    @property
    def gammas(self):
        """The three trainable gamma_i variables, in level order."""
        return [getattr(self, f"gamma_{level}") for level in range(1, NUM_LEVELS + 1)]

    def call(self, inputs):
        inputs = level_inputs(inputs, self.channels, self.name)
        fused = []
        convs, gammas = self.gate_convs, self.gammas
        for i in range(NUM_LEVELS):
            j, k = [other for other in range(NUM_LEVELS) if other != i]
            candidate, memory, reset = split_gates(convs[i], inputs[i])
            gamma = tf.cast(gammas[i], inputs[i].dtype)
            cell = (
                gamma * memory * inputs[j]
                + (1.0 - gamma) * memory * inputs[k]
                + (1.0 - memory) * candidate
            )
            fused.append(reset * tf.tanh(cell) + (1.0 - reset) * inputs[i])
        return tf.add_n(fused)

    def compute_output_shape(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name)
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        gamma = self.gamma_initializer
        config.update(
            {
                "channels": self.channels,
                "gamma_initializer": gamma
                if isinstance(gamma, float)
                else keras.initializers.serialize(gamma),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
