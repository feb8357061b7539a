"""What several layers share: initializer copies, argument checks and the fusion input checks."""

import keras
import tensorflow as tf

# The levels a multi-level fusion merges: res5, res4, res3 (docs/design.md, "Eq. 5: gated
# multi-level fusion").
NUM_LEVELS = 3


def clone_initializer(initializer):
    """A fresh copy of a Keras initializer.

    An unseeded Keras 3 initializer instance draws the same values on every call, so each weight
    needs its own copy (keras-hub does the same).
    """
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer
    return initializer.__class__.from_config(initializer.get_config())


def positive_int(value, name, allow_none=False):
    """`value` if it is a positive int (or None when `allow_none`); a ValueError naming `name`."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


def positive_number(value, name):
    """`value` as a float if it is a positive number; a ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive number, got {value!r}.")
    return float(value)


def check_channels(channels):
    """`channels` if it is a positive int (the channels of every level of a fusion layer)."""
    return positive_int(channels, "channels")


def check_level_shapes(input_shape, channels, layer_name, num_levels=NUM_LEVELS):
    """Checks that a fusion layer gets `num_levels` maps of shape [B, H, W, channels].

    Args:
        input_shape: list of the level shapes.
        channels: the channels every level must have.
        layer_name: name used in error messages.
        num_levels: how many levels the layer fuses.

    Raises:
        ValueError: not a list of `num_levels` shapes, or a shape is not [B, H, W, channels].
    """
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != num_levels:
        levels = "[x1]" if num_levels == 1 else "[x1, x2, x3] (res5, res4, res3)"
        raise ValueError(
            f"{layer_name}: expected a list of {num_levels} feature maps {levels}, "
            f"got {input_shape!r}."
        )
    for level, shape in enumerate(input_shape, start=1):
        shape = tuple(tf.TensorShape(shape).as_list())
        if len(shape) != 4 or shape[-1] != channels:
            raise ValueError(
                f"{layer_name}: input x{level} must have shape [batch, height, width, "
                f"{channels}], got {shape}."
            )


def level_inputs(inputs, channels, layer_name, num_levels=NUM_LEVELS):
    """The level maps given to a fusion layer's `call`, as tensors, checked as `check_level_shapes`.

    Raises:
        ValueError: `inputs` is not a list or tuple, or a level has the wrong shape.
    """
    if not isinstance(inputs, (list, tuple)):
        raise ValueError(
            f"{layer_name}: expected a list of {num_levels} feature maps, got {type(inputs)}."
        )
    inputs = [tf.convert_to_tensor(x) for x in inputs]
    check_level_shapes([x.shape for x in inputs], channels, layer_name, num_levels)
    return inputs


def serialize_weight_options(layer, *names):
    """The config entries of a layer's initializers and regularizers, serialised, by attribute."""
    config = {}
    for name in names:
        value = getattr(layer, name)
        if name.endswith("_regularizer"):
            config[name] = keras.regularizers.serialize(value)
        else:
            config[name] = keras.initializers.serialize(value)
    return config
