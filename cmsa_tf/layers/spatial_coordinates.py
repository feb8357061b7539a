"""Eq. 1's 8-D spatial coordinate feature."""

import keras
import tensorflow as tf


def spatial_coordinates(height, width, dtype="float32"):
    """The 8-D spatial feature of every cell of a `height` x `width` map.

    Cell (h, w) covers `[xmin, xmax] x [ymin, ymax]` on a [-1, 1] grid:
    `xmin = 2w/W - 1`, `xmax = 2(w+1)/W - 1`, `xctr = (xmin + xmax)/2`
    (likewise for y with h and H), and the feature is
    `[xmin, ymin, xmax, ymax, xctr, yctr, 1/W, 1/H]`.

    Args:
        height: int or scalar int tensor, number of rows H.
        width: int or scalar int tensor, number of columns W.
        dtype: floating dtype of the result.

    Returns:
        Tensor [H, W, 8].
    """
    dtype = tf.as_dtype(dtype)
    if not dtype.is_floating:
        raise ValueError(f"`dtype` must be a floating dtype, got {dtype.name}.")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, int) and value <= 0:
            raise ValueError(f"`{name}` must be positive, got {value}.")
    result_dtype = dtype
    # Computed in at least float32 (tf.range has no float16 kernel), cast at the end.
    if dtype.size < 4:
        dtype = tf.float32
    h_size = tf.cast(height, dtype)
    w_size = tf.cast(width, dtype)
    rows = tf.range(tf.cast(height, tf.int32), dtype=dtype)  # [H]
    cols = tf.range(tf.cast(width, tf.int32), dtype=dtype)  # [W]
    ymin = 2.0 * rows / h_size - 1.0
    ymax = 2.0 * (rows + 1.0) / h_size - 1.0
    xmin = 2.0 * cols / w_size - 1.0
    xmax = 2.0 * (cols + 1.0) / w_size - 1.0
    ones = tf.ones([tf.size(rows), tf.size(cols)], dtype=dtype)  # [H, W]

    def by_row(values):  # [H] -> [H, W]
        return values[:, None] * ones

    def by_col(values):  # [W] -> [H, W]
        return values[None, :] * ones

    coordinates = tf.stack(
        [
            by_col(xmin),
            by_row(ymin),
            by_col(xmax),
            by_row(ymax),
            by_col((xmin + xmax) / 2.0),
            by_row((ymin + ymax) / 2.0),
            ones / w_size,
            ones / h_size,
        ],
        axis=-1,
    )  # [H, W, 8]
    return tf.cast(coordinates, result_dtype)


@keras.saving.register_keras_serializable(package="cmsa_tf")
class SpatialCoordinates(keras.layers.Layer):
    """The 8-D spatial coordinate feature of Eq. 1 for a feature map.

    Returns, for every cell of the input's (dynamic) H x W grid,
    `[xmin, ymin, xmax, ymax, xctr, yctr, 1/W, 1/H]` on a [-1, 1] grid (see
    `spatial_coordinates`). Only the input's shape is used, not its values.
    The result has the layer's compute dtype (Keras casts the features to it).

    Args:
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    features = keras.random.normal((2, 40, 40, 2048))
    coords = SpatialCoordinates()(features)  # [2, 40, 40, 8]
    ```

    Reference:
        Ye et al., "Cross-Modal Self-Attention Network for Referring Image
        Segmentation", CVPR 2019, Eq. 1; Liu et al., "Recurrent Multimodal
        Interaction for Referring Image Segmentation", ICCV 2017.
    """

    def call(self, features):
        features = tf.convert_to_tensor(features)
        if features.shape.rank is not None and features.shape.rank != 4:
            raise ValueError(
                "`features` must have shape [batch, height, width, channels], "
                f"got shape {features.shape}."
            )
        shape = tf.shape(features)
        coords = spatial_coordinates(shape[1], shape[2], features.dtype)  # [H, W, 8]
        # [B, H, W, 8]
        return tf.broadcast_to(coords[None], tf.stack([shape[0], shape[1], shape[2], 8]))

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "`features` must have shape [batch, height, width, channels], "
                f"got shape {tuple(input_shape)}."
            )
        return (input_shape[0], input_shape[1], input_shape[2], 8)
