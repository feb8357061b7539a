"""Table 3's no-fusion reference: one level, passed on as it is."""

import keras

from cmsa_tf.layers.common import check_channels, check_level_shapes, level_inputs


@keras.saving.register_keras_serializable(package="cmsa_tf")
class SingleLevel(keras.layers.Layer):
    """The "fusion" of a single level: `call([x1])` returns x1 [B, H, W, channels] unchanged.

    `CMSASegmenter` uses it when it attends over one level only (`fusion="single"`, res5 in the
    CMSA-W / CMSA-S rows of Tables 2-3), so its `call` needs no branch. No weights.

    Args:
        channels: int, channels of the level.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    level = keras.random.normal((2, 40, 40, 500))
    same = SingleLevel(channels=500)([level])  # level itself
    ```
    """

    def __init__(self, channels: int = 500, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_channels(channels)

    def build(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name, num_levels=1)

    def call(self, inputs):
        return level_inputs(inputs, self.channels, self.name, num_levels=1)[0]

    def compute_output_shape(self, input_shape):
        check_level_shapes(input_shape, self.channels, self.name, num_levels=1)
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels})
        return config
