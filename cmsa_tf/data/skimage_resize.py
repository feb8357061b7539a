"""Bilinear resize with the semantics of the authors' `skimage.transform.resize`, in TF ops.

The authors' code resizes images, training masks and predicted maps with scikit-image's `resize`
of their time (`order=1`, `mode="constant"`, `cval=0`, no anti-aliasing). It differs from
`tf.image.resize(..., "bilinear")` at the border: both sample output pixel `i` at the source
coordinate `(i + 0.5) * in / out - 0.5` (half-pixel centres), but skimage reads pixels outside
the image as 0 where TensorFlow repeats the edge pixel. So an upscaled image darkens towards its
border, and a binary map keeps its non-zero pixels (what the authors' `> 0` rules read) only where
an inside pixel has weight.

`resize_bilinear` computes the sample coordinates from integers (`((2i + 1) * in - out) /
(2 * out)`), so a sample that falls on a pixel centre gives the neighbour exactly zero weight, and
interpolates in float64 in the order of skimage's `bilinear_interpolation` (columns, then rows).
What still differs from skimage: skimage derives its coordinates from an affine transform fitted by
least squares, whose round-off (about 1e-16) can move a value that lies exactly on a rounding tie
or a zero weight; see docs/design.md, "Preprocessing and the map back".
"""

import tensorflow as tf


def _sample_positions(in_size, out_size):
    """For each output index along one axis: (low index, high index, weight of high), float64.

    The indices are shifted by +1 (the image is padded with one zero on each side).
    """
    in_size = tf.cast(in_size, tf.int64)
    out_size = tf.cast(out_size, tf.int64)
    i = tf.range(out_size, dtype=tf.int64)
    numerator = (2 * i + 1) * in_size - out_size  # source coordinate * (2 * out)
    denominator = 2 * out_size
    low = tf.math.floordiv(numerator, denominator)  # >= -1: the coordinate is >= -0.5
    fraction = tf.cast(numerator - low * denominator, tf.float64) / tf.cast(
        denominator, tf.float64
    )  # [out] in [0, 1)
    return low + 1, low + 2, fraction


def resize_bilinear(image, height, width) -> tf.Tensor:
    """Resizes [H, W, C] to [height, width, C] as skimage's `resize(order=1, mode="constant")`.

    Args:
        image: [H, W, C] real tensor (H, W >= 1).
        height, width: positive ints or int scalar tensors, the output size.

    Returns:
        float64 [height, width, C].

    Example:
    >>> resize_bilinear(tf.ones([2, 2, 1]), 4, 4)[0, 0, 0]  # 0.5625: a quarter of zeros around
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank is not None and image.shape.rank != 3:
        raise ValueError(f"image must have rank 3 ([H, W, C]), got shape {image.shape}.")
    shape = tf.shape(image)
    padded = tf.pad(tf.cast(image, tf.float64), [[1, 1], [1, 1], [0, 0]])  # [H+2, W+2, C]
    col_low, col_high, dc = _sample_positions(shape[1], width)
    row_low, row_high, dr = _sample_positions(shape[0], height)
    dc = dc[None, :, None]  # [1, w, 1]
    left = tf.gather(padded, col_low, axis=1)  # [H+2, w, C]
    right = tf.gather(padded, col_high, axis=1)
    rows = (1.0 - dc) * left + dc * right  # [H+2, w, C]
    dr = dr[:, None, None]  # [h, 1, 1]
    top = tf.gather(rows, row_low, axis=0)  # [h, w, C]
    bottom = tf.gather(rows, row_high, axis=0)
    return (1.0 - dr) * top + dr * bottom  # [h, w, C]
