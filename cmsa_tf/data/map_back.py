"""From the model's square map back to the original image: the inverse of the resize-and-pad.

Two ways, `MAP_BACKS` (`config.eval.protocol`, the export's `map_back`; docs/design.md,
"Preprocessing and the map back"):
- `"exact"`: `unpad_and_resize` crops the pad that `preprocess.resize_and_pad` added and resizes
  bilinearly to the original size; evaluation then thresholds probabilities at 0.5
  (`preprocess.binarize`).
- `"authors"`: `authors_map_back` is the authors' `resize_and_crop` (scale the whole square map,
  crop the centre), applied to their foreground `logits >= AUTHORS_LOGIT_THRESHOLD`.

Pure TF: eager, `tf.data` and SavedModel graphs with unknown image sizes.
"""

from collections.abc import Mapping

import tensorflow as tf

from cmsa_tf.data import skimage_resize
from cmsa_tf.data.preprocess import INFO_KEYS, check_info, check_method, check_rank

# How a prediction at `size x size` returns to the original image (`config.eval.protocol`):
# "exact" (`unpad_and_resize`) or "authors" (`authors_map_back`, with their logit threshold).
MAP_BACKS = ("exact", "authors")
# The authors' `score_thresh`: their foreground is `logits >= 1e-9` at `size x size`.
AUTHORS_LOGIT_THRESHOLD = 1e-9


def unpad_and_resize(prediction, info: Mapping, method: str = "bilinear") -> tf.Tensor:
    """Maps a [size, size, C] map back to the original image: crop the pad, resize.

    Args:
        prediction: [size, size, C] tensor (probabilities, logits, masks).
        info: the dict returned by `resize_and_pad` for the image (scalar entries).
        method: `tf.image.resize` method; bilinear on probabilities, then `binarize`, is what
            evaluation does.

    Returns:
        float32 [orig_height, orig_width, C].
    """
    check_method(method)
    prediction = tf.convert_to_tensor(prediction)
    check_rank(prediction, 3, "prediction", "[size, size, channels]")
    check_info(info, "resize_and_pad")
    cropped = tf.slice(
        prediction,
        tf.stack([tf.cast(info["pad_top"], tf.int32), tf.cast(info["pad_left"], tf.int32), 0]),
        tf.stack(
            [
                tf.cast(info["resized_height"], tf.int32),
                tf.cast(info["resized_width"], tf.int32),
                -1,
            ]
        ),
    )  # [h', w', C]
    restored = tf.image.resize(
        tf.cast(cropped, tf.float32),
        tf.stack([tf.cast(info["orig_height"], tf.int32), tf.cast(info["orig_width"], tf.int32)]),
        method=method,
    )  # [H, W, C]
    return tf.ensure_shape(restored, [None, None, prediction.shape[-1]])


def authors_map_back(padded_map, height, width) -> tf.Tensor:
    """The authors' `resize_and_crop(padded_map, height, width)`, in TF ops (graph-safe).

    Scales the whole `[S1, S2, C]` map by `max(height / S1, width / S2)` (sizes rounded half to
    even, as `np.round`) with skimage's bilinear resize (`skimage_resize.resize_bilinear`), then
    crops the centre `height x width` (offsets `floor((resized - original) / 2)`). This is not the
    inverse of the pad (docs/design.md, "Preprocessing and the map back").

    Args:
        padded_map: [S1, S2, C] real tensor at the model's input size.
        height, width: the original image size (ints or int scalar tensors).

    Returns:
        float64 [height, width, C].
    """
    padded_map = tf.convert_to_tensor(padded_map)
    check_rank(padded_map, 3, "padded_map", "[size, size, channels]")
    shape = tf.shape(padded_map)
    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    map_h, map_w = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    scale = tf.maximum(tf.cast(height, tf.float64) / map_h, tf.cast(width, tf.float64) / map_w)
    resized_h = tf.cast(tf.round(map_h * scale), tf.int32)  # round half to even
    resized_w = tf.cast(tf.round(map_w * scale), tf.int32)
    crop_h, crop_w = (resized_h - height) // 2, (resized_w - width) // 2
    resized = skimage_resize.resize_bilinear(padded_map, resized_h, resized_w)  # float64
    cropped = resized[crop_h : crop_h + height, crop_w : crop_w + width]  # [height, width, C]
    return tf.ensure_shape(cropped, [None, None, padded_map.shape[-1]])


def authors_map_back_batch(predictions, info: Mapping) -> tf.Tensor:
    """`authors_map_back` over a batch: float64 [B, max orig_height, max orig_width, C].

    Example `i` fills its top-left `orig_height[i] x orig_width[i]` corner; the rest is 0 (as
    `unpad_and_resize_batch`). Only `orig_height` and `orig_width` of `info` are read.
    """
    predictions = tf.convert_to_tensor(predictions)
    check_rank(predictions, 4, "predictions", "[batch, size, size, channels]")
    heights = tf.cast(tf.convert_to_tensor(info["orig_height"]), tf.int32)
    widths = tf.cast(tf.convert_to_tensor(info["orig_width"]), tf.int32)
    max_height, max_width = tf.reduce_max(heights), tf.reduce_max(widths)

    def one(args):
        prediction, height, width = args
        restored = authors_map_back(prediction, height, width)  # [H_i, W_i, C]
        return tf.pad(restored, [[0, max_height - height], [0, max_width - width], [0, 0]])

    return tf.map_fn(
        one,
        (predictions, heights, widths),
        fn_output_signature=tf.TensorSpec([None, None, predictions.shape[-1]], tf.float64),
    )


def unpad_and_resize_batch(predictions, info: Mapping, method: str = "bilinear") -> tf.Tensor:
    """`unpad_and_resize` over a batch of images of different original sizes.

    Args:
        predictions: [B, size, size, C].
        info: dict of [B] tensors (from `resize_and_pad_batch`, `preprocess_encoded_images` or a
            batch of `pipeline.make_dataset`).
        method: as `unpad_and_resize`.

    Returns:
        float32 [B, max orig_height, max orig_width, C]: example `i` fills its top-left
        `orig_height[i] x orig_width[i]` corner; the rest is 0.
    """
    check_method(method)
    predictions = tf.convert_to_tensor(predictions)
    check_rank(predictions, 4, "predictions", "[batch, size, size, channels]")
    check_info(info, "resize_and_pad_batch")
    info = {key: tf.convert_to_tensor(info[key]) for key in INFO_KEYS}
    max_height = tf.reduce_max(tf.cast(info["orig_height"], tf.int32))
    max_width = tf.reduce_max(tf.cast(info["orig_width"], tf.int32))
    channels = predictions.shape[-1]

    def one(args):
        prediction, one_info = args
        restored = unpad_and_resize(prediction, one_info, method)  # [H_i, W_i, C]
        shape = tf.shape(restored)
        return tf.pad(
            restored, [[0, max_height - shape[0]], [0, max_width - shape[1]], [0, 0]]
        )  # [H_max, W_max, C]

    return tf.map_fn(
        one,
        (predictions, info),
        fn_output_signature=tf.TensorSpec([None, None, channels], tf.float32),
    )
