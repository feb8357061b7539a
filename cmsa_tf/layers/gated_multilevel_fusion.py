"""Eq. 5: gated multi-level fusion of the three levels' self-attentive features."""

import numbers

import keras
import tensorflow as tf

NUM_LEVELS = 3


def _clone_initializer(initializer):
    # An unseeded Keras 3 initializer instance repeats its values on every call:
    # give each convolution its own copy.
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer
    return initializer.__class__.from_config(initializer.get_config())


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
        channels=500,
        gamma_initializer=0.5,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
            raise ValueError(f"`channels` must be a positive integer, got {channels!r}.")
        self.channels = channels
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

    def _check_shapes(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != NUM_LEVELS:
            raise ValueError(
                f"{self.name}: expected a list of {NUM_LEVELS} feature maps [x1, x2, x3], got "
                f"{input_shape!r}."
            )
        for level, shape in enumerate(input_shape, start=1):
            shape = tuple(tf.TensorShape(shape).as_list())
            if len(shape) != 4 or shape[-1] != self.channels:
                raise ValueError(
                    f"{self.name}: input x{level} must have shape [batch, height, width, "
                    f"{self.channels}], got {shape}."
                )

    def build(self, input_shape):
        self._check_shapes(input_shape)
        if isinstance(self.gamma_initializer, float):
            gamma_init = keras.initializers.Constant(self.gamma_initializer)
        else:
            gamma_init = self.gamma_initializer
        # One named attribute per level (not a list): tf.train.Checkpoint only tracks layers and
        # variables held in attributes, and training checkpoints go through it.
        for level, shape in enumerate(input_shape, start=1):
            conv = keras.layers.Conv2D(
                3 * self.channels,
                3,
                padding="same",
                kernel_initializer=_clone_initializer(self.kernel_initializer),
                kernel_regularizer=self.kernel_regularizer,
                bias_regularizer=self.bias_regularizer,
                dtype=self.dtype_policy,
                name=f"gate_conv_{level}",
            )
            conv.build(shape)
            setattr(self, f"gate_conv_{level}", conv)
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
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"{self.name}: expected a list of {NUM_LEVELS} feature maps, got {type(inputs)}."
            )
        inputs = [tf.convert_to_tensor(x) for x in inputs]
        self._check_shapes([x.shape for x in inputs])
        fused = []
        gate_convs, gammas = self.gate_convs, self.gammas
        for i in range(NUM_LEVELS):
            j, k = [other for other in range(NUM_LEVELS) if other != i]
            # [B, H, W, 3 * channels] -> 3 x [B, H, W, channels]
            candidate, memory, reset = tf.split(gate_convs[i](inputs[i]), 3, axis=-1)
            memory = tf.sigmoid(memory + 1.0)
            reset = tf.sigmoid(reset + 1.0)
            gamma = tf.cast(gammas[i], inputs[i].dtype)
            cell = (
                gamma * memory * inputs[j]
                + (1.0 - gamma) * memory * inputs[k]
                + (1.0 - memory) * candidate
            )
            fused.append(reset * tf.tanh(cell) + (1.0 - reset) * inputs[i])
        return tf.add_n(fused)

    def compute_output_shape(self, input_shape):
        self._check_shapes(input_shape)
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
