"""Resize-and-pad geometry, mask binarisation, pixel normalisation: the model's input side.

The preprocessing of the authors' code (docs/design.md, "Preprocessing and the map back"), written
once as pure TF functions so training, evaluation and the SavedModel export share it:

1. `resize_and_pad`: resize keeping the aspect ratio so the longer side equals `size`, then centre
   zero-pad to `size x size`. The resized size is `round(h * size / max(h, w))` (NumPy rounding, at
   least 1 pixel); the pad is `floor((size - resized) / 2)` on the top / left and the rest on the
   bottom / right, as the authors' `im_processing.resize_and_pad`.
2. `normalize_image`: RGB -> BGR, then subtract the BGR mean (104.00699, 116.66877, 122.67891).
   The authors pad the uint8 image with zeros and subtract the mean afterwards, so the pad of a
   normalised image is `-mean`, not 0. We do the same: resize-and-pad first, normalise second.
   `denormalize_image` (TF) and `to_uint8_rgb` (NumPy, through it) undo it for display.
3. Masks take the same geometry: bilinear resize of the {0, 1} mask, then `>= 0.5`
   (`MASK_THRESHOLD`), then zero pad. The way back from the model's square map to the image
   (evaluation, the export) lives in `cmsa_tf/data/map_back.py`; it thresholds at the same 0.5.

`preprocessing="authors"` (`PREPROCESSING`; `config.data.preprocessing`) follows the authors' code
more closely: the same geometry, but the bilinear resize of skimage (`skimage_resize`: zeros
outside the image), the resized image quantised back to uint8 (their `img_as_ubyte`: `x / 255`,
resize, `* 255`, round half to even) and training masks foreground where the resized mask is
`> 0`.

The geometry of one image is a dict of scalar tensors with the keys `INFO_KEYS`.
"""

import numpy as np
import tensorflow as tf

from cmsa_tf.data import image_io, skimage_resize

# The authors' per-channel mean, BGR order (their `mu`).
MEAN_BGR = (104.00699, 116.66877, 122.67891)
# Probabilities and resized masks at or above this are foreground.
MASK_THRESHOLD = 0.5
DEFAULT_IMAGE_SIZE = 320
# `preprocessing` options: cmsa_tf's own, or the authors' (module docstring).
PREPROCESSING = ("default", "authors")

# The keys of the geometry dict of `resize_and_pad_info`.
INFO_KEYS = (
    "orig_height",
    "orig_width",
    "scale",
    "pad_top",
    "pad_left",
    "resized_height",
    "resized_width",
)
RESIZE_METHODS = (
    "bilinear",
    "nearest",
    "bicubic",
    "area",
    "lanczos3",
    "lanczos5",
    "gaussian",
    "mitchellcubic",
)


# ----------------------------------------------------------------------------------------------
# Argument checks (shared with the pipeline).
# ----------------------------------------------------------------------------------------------


def check_size(size, name: str = "size") -> None:
    """Raises `ValueError` unless `size` is a positive Python int (bools refused)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name} must be a positive Python int, got {size!r}.")


def check_rank(tensor: tf.Tensor, rank: int, name: str, layout: str) -> None:
    """Raises `ValueError` if the static rank of `tensor` is known and is not `rank`."""
    if tensor.shape.rank is not None and tensor.shape.rank != rank:
        raise ValueError(f"{name} must have rank {rank} ({layout}), got shape {tensor.shape}.")


def check_preprocessing(preprocessing) -> None:
    """Raises `ValueError` unless `preprocessing` is one of `PREPROCESSING`."""
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {preprocessing!r}.")


def check_method(method) -> None:
    """Raises `ValueError` unless `method` is a `tf.image.resize` method (`RESIZE_METHODS`)."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"method must be one of {RESIZE_METHODS}, got {method!r}.")


def check_info(info, source: str) -> None:
    """Raises `ValueError` naming the keys of `INFO_KEYS` that `info` lacks."""
    missing = [key for key in INFO_KEYS if key not in info]
    if missing:
        raise ValueError(f"info is missing {missing}; pass the dict from {source}.")


def _check_three_channels(image, order):
    if image.shape.rank is not None and image.shape[-1] is not None and image.shape[-1] != 3:
        raise ValueError(
            f"image must have 3 ({order}) channels on its last axis, got shape {image.shape}."
        )


# ----------------------------------------------------------------------------------------------
# Geometry: resize-and-pad.
# ----------------------------------------------------------------------------------------------


def resize_and_pad_info(height, width, size: int) -> dict[str, tf.Tensor]:
    """The geometry of `resize_and_pad` for an image of `height x width`.

    Args:
        height, width: scalar int tensors (or ints), the original size.
        size: Python int, the side of the square output.

    Returns:
        dict of scalar tensors: `orig_height`, `orig_width`, `pad_top`, `pad_left`,
        `resized_height`, `resized_width` (int32) and `scale` (float32, `size / max(h, w)`).
    """
    check_size(size)
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    scale = tf.cast(size, tf.float64) / tf.maximum(h, w)
    # tf.round rounds half to even, like the authors' np.round.
    resized_height = tf.clip_by_value(tf.cast(tf.round(h * scale), tf.int32), 1, size)
    resized_width = tf.clip_by_value(tf.cast(tf.round(w * scale), tf.int32), 1, size)
    return {
        "orig_height": height,
        "orig_width": width,
        "scale": tf.cast(scale, tf.float32),
        "pad_top": (size - resized_height) // 2,
        "pad_left": (size - resized_width) // 2,
        "resized_height": resized_height,
        "resized_width": resized_width,
    }


def padded_window(height: int, width: int, image_size: int) -> tuple[int, int, int, int, int]:
    """Where a `height x width` image lies in the padded `image_size` square the model sees:
    `(image_size, pad_top, pad_left, resized_height, resized_width)` (`resize_and_pad_info` as
    Python ints), the `window` of `visualize.heat_map`."""
    info = resize_and_pad_info(height, width, image_size)
    keys = ("pad_top", "pad_left", "resized_height", "resized_width")
    return (int(image_size), *(int(info[key]) for key in keys))


def resize_and_pad(
    image, size: int, method: str = "bilinear"
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Resizes keeping the aspect ratio (longer side -> `size`), then centre zero-pads.

    Pure TF; works eagerly, in `tf.data` and inside a SavedModel graph with unknown image sizes.

    Args:
        image: [H, W, C] tensor of any real dtype (uint8 pixels, {0, 1} masks, probabilities).
        size: Python int, the side of the square output.
        method: a `tf.image.resize` method name; `"bilinear"` for images (and masks, followed by
            a 0.5 threshold -- see `resize_and_pad_mask`), `"nearest"` for label maps.

    Returns:
        `(padded, info)`: float32 [size, size, C] with zeros in the pad, and the dict of
        `resize_and_pad_info`.
    """
    check_size(size)
    check_method(method)
    image = tf.convert_to_tensor(image)
    check_rank(image, 3, "image", "[height, width, channels]")
    shape = tf.shape(image)
    info = resize_and_pad_info(shape[0], shape[1], size)
    resized = tf.image.resize(
        tf.cast(image, tf.float32),
        tf.stack([info["resized_height"], info["resized_width"]]),
        method=method,
    )  # [h', w', C]
    return _pad(resized, info, size, image.shape[-1]), info


def _pad(resized, info, size, channels):
    """Centre zero-pads a resized [h', w', C] image to [size, size, C] as `info` says."""
    paddings = tf.stack(
        [
            tf.stack([info["pad_top"], size - info["resized_height"] - info["pad_top"]]),
            tf.stack([info["pad_left"], size - info["resized_width"] - info["pad_left"]]),
            tf.zeros([2], tf.int32),
        ]
    )
    return tf.ensure_shape(tf.pad(resized, paddings), [size, size, channels])  # [size, size, C]


def authors_resize_and_pad(image, size: int) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """`resize_and_pad` with skimage's bilinear resize (`skimage_resize.resize_bilinear`).

    The geometry (`info`) is `resize_and_pad_info`'s, the authors' `resize_and_pad` exactly.

    Returns:
        `(padded, info)`: float64 [size, size, C] with zeros in the pad, and the geometry.
    """
    check_size(size)
    image = tf.convert_to_tensor(image)
    check_rank(image, 3, "image", "[height, width, channels]")
    shape = tf.shape(image)
    info = resize_and_pad_info(shape[0], shape[1], size)
    resized = skimage_resize.resize_bilinear(
        image, info["resized_height"], info["resized_width"]
    )  # [h', w', C] float64
    return _pad(resized, info, size, image.shape[-1]), info


def binarize(probabilities, threshold: float = MASK_THRESHOLD) -> tf.Tensor:
    """`float32(probabilities >= threshold)`: the foreground rule of masks and predictions."""
    return tf.cast(tf.convert_to_tensor(probabilities) >= threshold, tf.float32)


def resize_and_pad_mask(
    mask, size: int, *, preprocessing: str = "default"
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """A {0, 1} mask [H, W, 1] -> float32 {0, 1} [size, size, 1], zero padded.

    `preprocessing="default"`: bilinear, `>= 0.5`. `"authors"`: skimage's bilinear, `> 0` (the
    authors' training masks).

    Returns `(padded_mask, info)` as `resize_and_pad`.
    """
    check_preprocessing(preprocessing)
    mask = tf.convert_to_tensor(mask)
    check_rank(mask, 3, "mask", "[height, width, 1]")
    if preprocessing == "authors":
        padded, info = authors_resize_and_pad(tf.cast(mask, tf.float32), size)
        return tf.cast(padded > 0, tf.float32), info
    padded, info = resize_and_pad(tf.cast(mask, tf.float32), size, method="bilinear")
    return binarize(padded), info


def info_signature() -> dict[str, tf.TensorSpec]:
    """The `tf.TensorSpec` of each entry of one image's geometry dict (for `tf.map_fn`)."""
    return {key: tf.TensorSpec([], tf.float32 if key == "scale" else tf.int32) for key in INFO_KEYS}


def resize_and_pad_batch(
    images, size: int, method: str = "bilinear"
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """`resize_and_pad` over a batch whose images may differ in size.

    Args:
        images: a dense [B, H, W, C] tensor or a `tf.RaggedTensor` [B, (H), (W), C].
        size, method: as `resize_and_pad`.

    Returns:
        `(padded, info)`: float32 [B, size, size, C] and a dict of [B] tensors.
    """
    check_size(size)
    check_method(method)
    if not isinstance(images, tf.RaggedTensor):
        images = tf.convert_to_tensor(images)
    check_rank(images, 4, "images", "[batch, height, width, channels]")
    channels = images.shape[-1]

    def one(image):
        if isinstance(image, tf.RaggedTensor):
            image = image.to_tensor()
        return resize_and_pad(image, size, method)

    return tf.map_fn(
        one,
        images,
        fn_output_signature=(tf.TensorSpec([size, size, channels], tf.float32), info_signature()),
    )


# ----------------------------------------------------------------------------------------------
# Pixels: normalisation and its inverse.
# ----------------------------------------------------------------------------------------------


def normalize_image(image) -> tf.Tensor:
    """RGB [..., 3] pixels in [0, 255] -> float32 BGR minus the authors' mean.

    Args:
        image: uint8 or float RGB image(s), last axis 3.

    Returns:
        float32, same shape, channels in BGR order.
    """
    image = tf.convert_to_tensor(image)
    _check_three_channels(image, "RGB")
    bgr = tf.reverse(tf.cast(image, tf.float32), axis=[-1])
    return bgr - tf.constant(MEAN_BGR, tf.float32)


def denormalize_image(image) -> tf.Tensor:
    """The inverse of `normalize_image`, for display: float BGR - mean -> uint8 RGB.

    Adds `MEAN_BGR`, reverses the channels, rounds half to even and clips to [0, 255].
    """
    image = tf.convert_to_tensor(image, tf.float32)
    _check_three_channels(image, "BGR")
    rgb = tf.reverse(image + tf.constant(MEAN_BGR, tf.float32), axis=[-1])
    return tf.cast(tf.clip_by_value(tf.round(rgb), 0.0, 255.0), tf.uint8)


def to_uint8_rgb(image_bgr_mean_subtracted) -> np.ndarray:
    """`denormalize_image` for NumPy arrays and eager tensors: float BGR - mean -> uint8 RGB.

    Args:
        image_bgr_mean_subtracted: [..., 3] float, e.g. a batch's `image` [S, S, 3] or [B, S, S, 3].

    Returns:
        np.uint8, same shape, RGB order.

    Raises:
        ValueError: the last axis is not 3, or the values are not finite numbers.
    """
    image = np.asarray(image_bgr_mean_subtracted)
    if image.ndim < 1 or image.shape[-1] != 3:
        raise ValueError(
            "image_bgr_mean_subtracted must have 3 (BGR) channels on its last axis, got shape "
            f"{image.shape}."
        )
    if not np.issubdtype(image.dtype, np.number) or not np.all(np.isfinite(image)):
        raise ValueError("image_bgr_mean_subtracted must hold finite numbers.")
    return denormalize_image(image.astype(np.float32)).numpy()


# ----------------------------------------------------------------------------------------------
# The model's image input.
# ----------------------------------------------------------------------------------------------


def authors_resized_uint8(image, size: int) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The authors' `img_as_ubyte(resize_and_pad(image))`: uint8 RGB [size, size, 3] and info.

    skimage's resize works on `image / 255` (float64); `img_as_ubyte` multiplies by 255, rounds
    half to even and clips.
    """
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise ValueError(f"image must be uint8 RGB pixels, got dtype {image.dtype.name}.")
    padded, info = authors_resize_and_pad(tf.cast(image, tf.float64) / 255.0, size)
    quantised = tf.clip_by_value(tf.round(padded * 255.0), 0.0, 255.0)  # round half to even
    return tf.cast(quantised, tf.uint8), info


def preprocess_image(
    image, size: int = DEFAULT_IMAGE_SIZE, *, preprocessing: str = "default"
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """uint8 RGB [H, W, 3] -> (normalised float32 [size, size, 3], info): the model input.

    `preprocessing`: "default" (float bilinear resize) or "authors" (`authors_resized_uint8`).
    """
    check_preprocessing(preprocessing)
    if preprocessing == "authors":
        padded, info = authors_resized_uint8(image, size)
    else:
        padded, info = resize_and_pad(image, size, method="bilinear")
    return normalize_image(padded), info


def preprocess_encoded_images(
    image_bytes, size: int = DEFAULT_IMAGE_SIZE, *, preprocessing: str = "default"
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """A [B] string batch of encoded images (any sizes) -> ([B, size, size, 3], info of [B]).

    The export's image path: decode (`image_io.decode_image`), resize-and-pad, normalise, per
    image with `tf.map_fn`; `preprocessing` as `preprocess_image`.
    """
    check_size(size)
    check_preprocessing(preprocessing)
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    check_rank(image_bytes, 1, "image_bytes", "[batch] of encoded images")
    return tf.map_fn(
        lambda encoded: preprocess_image(
            image_io.decode_image(encoded), size, preprocessing=preprocessing
        ),
        image_bytes,
        fn_output_signature=(tf.TensorSpec([size, size, 3], tf.float32), info_signature()),
    )
