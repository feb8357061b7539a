"""TFRecords -> resized, padded, normalised batches (Model Garden style Decoder / Parser).

The preprocessing of the authors' code (spec, "Training recipe"), written once as pure TF functions so
training, evaluation and the SavedModel export share it:

1. `resize_and_pad`: resize keeping the aspect ratio so the longer side equals `size`, then centre
   zero-pad to `size x size`. The resized size is `round(h * size / max(h, w))` (NumPy rounding, at
   least 1 pixel); the pad is `floor((size - resized) / 2)` on the top / left and the rest on the
   bottom / right, as the authors' `im_processing.resize_and_pad`.
2. `normalize_image`: RGB -> BGR, then subtract the BGR mean (104.00699, 116.66877, 122.67891).
   The authors pad the uint8 image with zeros and subtract the mean afterwards, so the pad of a
   normalised image is `-mean`, not 0. We do the same: resize-and-pad first, normalise second.
3. Masks take the same geometry: bilinear resize of the {0, 1} mask, then `>= 0.5`
   (`MASK_THRESHOLD`), then zero pad. Evaluation maps a probability map back with
   `unpad_and_resize(..., method="bilinear")` and thresholds it at the same 0.5.

No training augmentation: the authors used none, and a random horizontal flip would be wrong here
because expressions say "left" / "right" (flipping the image without rewriting the words changes
which object is referred to).

Output element of `make_dataset` (a dict; batched along a leading axis):

| key              | dtype   | shape       | meaning                                            |
|------------------|---------|-------------|----------------------------------------------------|
| `image`          | float32 | [S, S, 3]   | BGR, mean subtracted, pad = -mean                  |
| `words`          | int32   | [T]         | token ids, truncated to T, 0-padded at the end     |
| `mask`           | float32 | [S, S, 1]   | {0, 1}, pad = 0                                    |
| `orig_height`    | int32   | []          | original image height                              |
| `orig_width`     | int32   | []          | original image width                               |
| `scale`          | float32 | []          | `S / max(orig_height, orig_width)`                 |
| `pad_top`        | int32   | []          | rows of padding above the resized image            |
| `pad_left`       | int32   | []          | columns of padding left of the resized image       |
| `resized_height` | int32   | []          | height of the resized image inside the pad         |
| `resized_width`  | int32   | []          | width of the resized image inside the pad          |

With `include_original=True` also: `image_bytes` and `orig_mask_png` (string: the encoded original
image and mask, so batches stay dense), `expression` (string), `image_id`, `ref_id`, `ann_id`,
`sentence_id` (int64).
"""

import json
import os

import tensorflow as tf

from cmsa_tf.data import schema

# The authors' per-channel mean, BGR order (their `mu`).
MEAN_BGR = (104.00699, 116.66877, 122.67891)
# Probabilities and resized masks at or above this are foreground.
MASK_THRESHOLD = 0.5
DEFAULT_IMAGE_SIZE = 320
DEFAULT_MAX_WORDS = 20

INFO_KEYS = (
    "orig_height",
    "orig_width",
    "scale",
    "pad_top",
    "pad_left",
    "resized_height",
    "resized_width",
)
ORIGINAL_KEYS = (
    "image_bytes",
    "orig_mask_png",
    "expression",
    "image_id",
    "ref_id",
    "ann_id",
    "sentence_id",
)
RESIZE_METHODS = (
    "bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic",
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------
# Geometry: resize-and-pad and its inverse.
# ----------------------------------------------------------------------------------------------


def _check_size(size):
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive Python int, got {size!r}.")


def _check_method(method):
    if method not in RESIZE_METHODS:
        raise ValueError(f"method must be one of {RESIZE_METHODS}, got {method!r}.")


def _check_rank(tensor, rank, name, layout):
    if tensor.shape.rank is not None and tensor.shape.rank != rank:
        raise ValueError(
            f"{name} must have rank {rank} ({layout}), got shape {tensor.shape}."
        )


def resize_and_pad_info(height, width, size):
    """The geometry of `resize_and_pad` for an image of `height x width`.

    Args:
        height, width: scalar int tensors (or ints), the original size.
        size: Python int, the side of the square output.

    Returns:
        dict of scalar tensors: `orig_height`, `orig_width`, `pad_top`, `pad_left`,
        `resized_height`, `resized_width` (int32) and `scale` (float32, `size / max(h, w)`).
    """
    _check_size(size)
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


def resize_and_pad(image, size, method="bilinear"):
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
    _check_size(size)
    _check_method(method)
    image = tf.convert_to_tensor(image)
    _check_rank(image, 3, "image", "[height, width, channels]")
    shape = tf.shape(image)
    info = resize_and_pad_info(shape[0], shape[1], size)
    resized = tf.image.resize(
        tf.cast(image, tf.float32),
        tf.stack([info["resized_height"], info["resized_width"]]),
        method=method,
    )  # [h', w', C]
    paddings = tf.stack(
        [
            tf.stack([info["pad_top"], size - info["resized_height"] - info["pad_top"]]),
            tf.stack([info["pad_left"], size - info["resized_width"] - info["pad_left"]]),
            tf.zeros([2], tf.int32),
        ]
    )
    padded = tf.pad(resized, paddings)  # [size, size, C]
    padded = tf.ensure_shape(padded, [size, size, image.shape[-1]])
    return padded, info


def binarize(probabilities, threshold=MASK_THRESHOLD):
    """`float32(probabilities >= threshold)`: the foreground rule shared by masks and predictions."""
    return tf.cast(tf.convert_to_tensor(probabilities) >= threshold, tf.float32)


def resize_and_pad_mask(mask, size):
    """A {0, 1} mask [H, W, 1] -> float32 {0, 1} [size, size, 1]: bilinear, `>= 0.5`, zero pad.

    Returns `(padded_mask, info)` as `resize_and_pad`.
    """
    mask = tf.convert_to_tensor(mask)
    _check_rank(mask, 3, "mask", "[height, width, 1]")
    padded, info = resize_and_pad(tf.cast(mask, tf.float32), size, method="bilinear")
    return binarize(padded), info


def unpad_and_resize(prediction, info, method="bilinear"):
    """Maps a [size, size, C] map back to the original image: crop the pad, resize.

    Args:
        prediction: [size, size, C] tensor (probabilities, logits, masks).
        info: the dict returned by `resize_and_pad` for the image (scalar entries).
        method: `tf.image.resize` method; bilinear on probabilities, then `binarize`, is what
            evaluation does.

    Returns:
        float32 [orig_height, orig_width, C].
    """
    _check_method(method)
    prediction = tf.convert_to_tensor(prediction)
    _check_rank(prediction, 3, "prediction", "[size, size, channels]")
    missing = [key for key in INFO_KEYS if key not in info]
    if missing:
        raise ValueError(f"info is missing {missing}; pass the dict from resize_and_pad.")
    cropped = tf.slice(
        prediction,
        tf.stack([tf.cast(info["pad_top"], tf.int32), tf.cast(info["pad_left"], tf.int32), 0]),
        tf.stack(
            [tf.cast(info["resized_height"], tf.int32), tf.cast(info["resized_width"], tf.int32), -1]
        ),
    )  # [h', w', C]
    restored = tf.image.resize(
        tf.cast(cropped, tf.float32),
        tf.stack([tf.cast(info["orig_height"], tf.int32), tf.cast(info["orig_width"], tf.int32)]),
        method=method,
    )  # [H, W, C]
    return tf.ensure_shape(restored, [None, None, prediction.shape[-1]])


def _info_signature():
    return {
        key: tf.TensorSpec([], tf.float32 if key == "scale" else tf.int32) for key in INFO_KEYS
    }


def resize_and_pad_batch(images, size, method="bilinear"):
    """`resize_and_pad` over a batch whose images may differ in size.

    Args:
        images: a dense [B, H, W, C] tensor or a `tf.RaggedTensor` [B, (H), (W), C].
        size, method: as `resize_and_pad`.

    Returns:
        `(padded, info)`: float32 [B, size, size, C] and a dict of [B] tensors.
    """
    _check_size(size)
    _check_method(method)
    if not isinstance(images, tf.RaggedTensor):
        images = tf.convert_to_tensor(images)
    _check_rank(images, 4, "images", "[batch, height, width, channels]")
    channels = images.shape[-1]

    def one(image):
        if isinstance(image, tf.RaggedTensor):
            image = image.to_tensor()
        return resize_and_pad(image, size, method)

    return tf.map_fn(
        one,
        images,
        fn_output_signature=(tf.TensorSpec([size, size, channels], tf.float32), _info_signature()),
    )


def unpad_and_resize_batch(predictions, info, method="bilinear"):
    """`unpad_and_resize` over a batch of images of different original sizes.

    Args:
        predictions: [B, size, size, C].
        info: dict of [B] tensors (from `resize_and_pad_batch`, `preprocess_encoded_images` or a
            batch of `make_dataset`).
        method: as `unpad_and_resize`.

    Returns:
        float32 [B, max orig_height, max orig_width, C]: example `i` fills its top-left
        `orig_height[i] x orig_width[i]` corner; the rest is 0.
    """
    _check_method(method)
    predictions = tf.convert_to_tensor(predictions)
    _check_rank(predictions, 4, "predictions", "[batch, size, size, channels]")
    missing = [key for key in INFO_KEYS if key not in info]
    if missing:
        raise ValueError(f"info is missing {missing}; pass the dict from resize_and_pad_batch.")
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


# ----------------------------------------------------------------------------------------------
# Pixels: decoding and normalisation.
# ----------------------------------------------------------------------------------------------


def normalize_image(image):
    """RGB [..., 3] pixels in [0, 255] -> float32 BGR minus the authors' mean.

    Args:
        image: uint8 or float RGB image(s), last axis 3.

    Returns:
        float32, same shape, channels in BGR order.
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank is not None and image.shape[-1] is not None and image.shape[-1] != 3:
        raise ValueError(
            f"image must have 3 (RGB) channels on its last axis, got shape {image.shape}."
        )
    bgr = tf.reverse(tf.cast(image, tf.float32), axis=[-1])
    return bgr - tf.constant(MEAN_BGR, tf.float32)


def denormalize_image(image):
    """The inverse of `normalize_image`, for display: float BGR - mean -> uint8 RGB."""
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape.rank is not None and image.shape[-1] is not None and image.shape[-1] != 3:
        raise ValueError(
            f"image must have 3 (BGR) channels on its last axis, got shape {image.shape}."
        )
    rgb = tf.reverse(image + tf.constant(MEAN_BGR, tf.float32), axis=[-1])
    return tf.cast(tf.clip_by_value(tf.round(rgb), 0.0, 255.0), tf.uint8)


def is_supported_image(encoded):
    """Scalar bool: do the bytes start like a JPEG, PNG, GIF or BMP file."""
    head = tf.strings.substr(encoded, 0, 8)
    return tf.reduce_any(
        tf.stack(
            [
                tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"),
                tf.equal(head, _PNG_SIGNATURE),
                tf.equal(tf.strings.substr(head, 0, 4), b"GIF8"),
                tf.equal(tf.strings.substr(head, 0, 2), b"BM"),
            ]
        )
    )


def decode_image(encoded):
    """JPEG / PNG / BMP / GIF bytes -> uint8 RGB [H, W, 3] (grayscale expanded, alpha dropped,
    first GIF frame)."""
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])  # [H, W, 3]


def preprocess_image(image, size=DEFAULT_IMAGE_SIZE):
    """uint8 RGB [H, W, 3] -> (normalised float32 [size, size, 3], info): the model's image input."""
    padded, info = resize_and_pad(image, size, method="bilinear")
    return normalize_image(padded), info


def preprocess_encoded_images(image_bytes, size=DEFAULT_IMAGE_SIZE):
    """A [B] string batch of encoded images (any sizes) -> ([B, size, size, 3], info of [B]).

    The export's image path: decode, resize-and-pad, normalise, per image with `tf.map_fn`.
    """
    _check_size(size)
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    _check_rank(image_bytes, 1, "image_bytes", "[batch] of encoded images")
    return tf.map_fn(
        lambda encoded: preprocess_image(decode_image(encoded), size),
        image_bytes,
        fn_output_signature=(tf.TensorSpec([size, size, 3], tf.float32), _info_signature()),
    )


def pad_words(ids, max_words=DEFAULT_MAX_WORDS):
    """Token ids [N] -> int32 [max_words]: truncated, then 0-padded at the end."""
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise ValueError(f"max_words must be a positive Python int, got {max_words!r}.")
    ids = tf.cast(tf.convert_to_tensor(ids), tf.int32)
    _check_rank(ids, 1, "ids", "[num_words]")
    ids = ids[:max_words]
    ids = tf.pad(ids, [[0, max_words - tf.shape(ids)[0]]])
    return tf.ensure_shape(ids, [max_words])  # [T]


# ----------------------------------------------------------------------------------------------
# Decoder and Parser.
# ----------------------------------------------------------------------------------------------


class Decoder:
    """Serialized `tf.train.Example` (schema.py) -> dict of raw tensors.

    Output keys: `image` uint8 [H, W, 3] RGB, `mask` uint8 [H, W, 1] in {0, 1} (any non-zero PNG
    value counts as 1), `ids` int64 [N], and the record's `image_bytes`, `mask_png`, `expression`,
    `image_id`, `ref_id`, `ann_id`, `sentence_id`.

    A record whose image or mask bytes are not an image, or whose sizes disagree with
    `image/height`, `image/width` or each other, fails with `tf.errors.InvalidArgumentError`
    naming the key and the record's ref / sentence ids.

    Example:
    >>> decoded = Decoder().decode(serialized)  # decoded["image"]: uint8 [H, W, 3]
    """

    def decode(self, serialized):
        parsed = schema.parse_example(serialized)
        encoded = parsed[schema.IMAGE_ENCODED]
        mask_png = parsed[schema.MASK_ENCODED]
        ref_id = parsed[schema.REF_ID]
        sentence_id = parsed[schema.SENTENCE_ID]
        where = tf.strings.format("(ref/id {}, sentence/id {})", (ref_id, sentence_id))

        image_ok = tf.debugging.Assert(
            is_supported_image(encoded),
            [tf.strings.join([
                "Corrupt record ", where, ": image/encoded is not a JPEG, PNG, GIF or BMP file."
            ])],
        )
        mask_ok = tf.debugging.Assert(
            tf.equal(tf.strings.substr(mask_png, 0, 8), _PNG_SIGNATURE),
            [tf.strings.join(["Corrupt record ", where, ": mask/encoded is not a PNG file."])],
        )
        with tf.control_dependencies([image_ok]):
            image = decode_image(encoded)  # [H, W, 3]
        with tf.control_dependencies([mask_ok]):
            mask = tf.io.decode_png(mask_png, channels=1)  # [H, W, 1]
        mask = tf.cast(mask > 0, tf.uint8)

        image_shape = tf.shape(image, out_type=tf.int64)
        mask_shape = tf.shape(mask, out_type=tf.int64)
        size_ok = tf.debugging.Assert(
            tf.logical_and(
                tf.equal(image_shape[0], parsed[schema.IMAGE_HEIGHT]),
                tf.equal(image_shape[1], parsed[schema.IMAGE_WIDTH]),
            ),
            [
                tf.strings.format(
                    "Corrupt record (ref/id {}, sentence/id {}): image/encoded decodes to {}x{} "
                    "but image/height, image/width say {}x{}.",
                    (ref_id, sentence_id, image_shape[0], image_shape[1],
                     parsed[schema.IMAGE_HEIGHT], parsed[schema.IMAGE_WIDTH]),
                )
            ],
        )
        mask_size_ok = tf.debugging.Assert(
            tf.reduce_all(tf.equal(mask_shape[:2], image_shape[:2])),
            [
                tf.strings.format(
                    "Corrupt record (ref/id {}, sentence/id {}): mask/encoded is {}x{} but the "
                    "image is {}x{}.",
                    (ref_id, sentence_id, mask_shape[0], mask_shape[1], image_shape[0],
                     image_shape[1]),
                )
            ],
        )
        with tf.control_dependencies([size_ok, mask_size_ok]):
            image = tf.identity(image)
            mask = tf.identity(mask)
        return {
            "image": image,
            "mask": mask,
            "ids": parsed[schema.EXPRESSION_IDS],
            "image_bytes": encoded,
            "mask_png": mask_png,
            "expression": parsed[schema.EXPRESSION_RAW],
            "image_id": parsed[schema.IMAGE_ID],
            "ref_id": ref_id,
            "ann_id": parsed[schema.ANN_ID],
            "sentence_id": sentence_id,
        }


class Parser:
    """Decoded dict -> model inputs (the table in this module's docstring).

    Args:
        image_size: side `S` of the square model input (320 in the paper).
        max_words: number of word slots `T` (20 in the paper).
        include_original: add the encoded original image and mask and the record ids, for
            evaluation at the original resolution.

    Training and evaluation parse alike: the authors used no augmentation (and a horizontal flip
    would contradict "left" / "right" in the expressions).

    Example:
    >>> parse = Parser(image_size=320, max_words=20)
    >>> dataset = tf.data.TFRecordDataset(files).map(lambda s: parse(Decoder().decode(s)))

    Reference:
        The authors' preprocessing (spec, "Training recipe"); Model Garden's
        `official/vision/dataloaders/segmentation_input.py` for the Decoder / Parser split.
    """

    def __init__(self, image_size=DEFAULT_IMAGE_SIZE, max_words=DEFAULT_MAX_WORDS,
                 include_original=False):
        _check_size(image_size)
        if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
            raise ValueError(f"max_words must be a positive Python int, got {max_words!r}.")
        self.image_size = image_size
        self.max_words = max_words
        self.include_original = include_original

    def __call__(self, decoded):
        image, info = preprocess_image(decoded["image"], self.image_size)  # [S, S, 3]
        mask, _ = resize_and_pad_mask(decoded["mask"], self.image_size)  # [S, S, 1]
        outputs = {
            "image": image,
            "words": pad_words(decoded["ids"], self.max_words),  # [T]
            "mask": mask,
        }
        outputs.update(info)
        if self.include_original:
            outputs["image_bytes"] = decoded["image_bytes"]
            outputs["orig_mask_png"] = decoded["mask_png"]
            for key in ("expression", "image_id", "ref_id", "ann_id", "sentence_id"):
                outputs[key] = decoded[key]
        return outputs

    def parse_fn(self, is_training):
        """The per-example function for `Dataset.map` (identical for training and evaluation)."""
        del is_training  # No augmentation; see the class docstring.
        return self.__call__


# ----------------------------------------------------------------------------------------------
# Dataset builders.
# ----------------------------------------------------------------------------------------------


def _list_files(file_pattern_or_files):
    if isinstance(file_pattern_or_files, (str, os.PathLike)):
        patterns = [os.fspath(file_pattern_or_files)]
    else:
        patterns = [os.fspath(p) for p in file_pattern_or_files]
    if not patterns:
        raise ValueError("file_pattern_or_files is empty; pass a glob pattern or a list of files.")
    files = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise ValueError(f"No TFRecord files match {pattern!r}.")
        files.extend(matched)
    return files


def make_dataset(
    file_pattern_or_files,
    *,
    image_size=DEFAULT_IMAGE_SIZE,
    max_words=DEFAULT_MAX_WORDS,
    batch_size,
    training,
    shuffle_buffer=1000,
    seed=None,
    deterministic=False,
    repeat=None,
    include_original=False,
    input_context=None,
    drop_remainder=None,
    skip_corrupt=False,
):
    """TFRecords -> batched dicts of model inputs (see the module docstring for the keys).

    Args:
        file_pattern_or_files: a glob pattern, a file, or a list of them.
        image_size: side `S` of the square input.
        max_words: word slots `T`.
        batch_size: the global batch size; with `input_context` each input pipeline batches
            `input_context.get_per_replica_batch_size(batch_size)`.
        training: shuffle files and records, repeat by default, drop the last partial batch.
        shuffle_buffer: records in the shuffle buffer (training only).
        seed: shuffle seed. With `deterministic=True` and no seed, 0 is used.
        deterministic: fixed element order (`options.deterministic = True`) and seeded shuffles,
            so two datasets built alike give identical batches. Evaluation datasets
            (`training=False`) always keep file and record order.
        repeat: `None` -> forever when training, once otherwise; `True` -> forever; `False` -> once;
            an int `n >= 1` -> `n` epochs.
        include_original: add the encoded original image / mask and the ids (evaluation). These
            string tensors cannot live on accelerators: use them with a plain dataset, not one
            distributed over GPUs.
        input_context: a `tf.distribute.InputContext` (from
            `strategy.distribute_datasets_from_function`): files are sharded by input pipeline
            (records, when there are fewer files than pipelines) and the batch is per replica.
        drop_remainder: `None` -> `training`.
        skip_corrupt: drop records whose image or mask fails to decode (a warning is logged for
            each, by `tf.data`'s `ignore_errors`) instead of raising. Off by default: a corrupt
            record stops the iteration with `tf.errors.InvalidArgumentError` naming it.

    Returns:
        A `tf.data.Dataset` of dicts.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, int) or shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be a positive int, got {shuffle_buffer!r}.")
    if repeat is None:
        repeat = bool(training)
    if repeat is True:
        epochs = -1
    elif repeat is False:
        epochs = 1
    elif isinstance(repeat, int) and repeat >= 1:
        epochs = repeat
    else:
        raise ValueError(f"repeat must be None, a bool or an int >= 1, got {repeat!r}.")
    if drop_remainder is None:
        drop_remainder = bool(training)
    parser = Parser(image_size=image_size, max_words=max_words, include_original=include_original)
    files = _list_files(file_pattern_or_files)
    ordered = deterministic or not training
    if deterministic and seed is None:
        seed = 0

    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        num_pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
    else:
        num_pipelines, pipeline_id = 1, 0

    dataset = tf.data.Dataset.from_tensor_slices(files)
    shard_files = num_pipelines > 1 and len(files) >= num_pipelines
    if shard_files:
        dataset = dataset.shard(num_pipelines, pipeline_id)
    if training:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=8 << 20),
        cycle_length=min(len(files), 16),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=ordered,
    )
    if num_pipelines > 1 and not shard_files:
        dataset = dataset.shard(num_pipelines, pipeline_id)
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if epochs != 1:
        dataset = dataset.repeat(epochs)

    decoder = Decoder()
    parse = parser.parse_fn(is_training=training)
    dataset = dataset.map(
        lambda serialized: parse(decoder.decode(serialized)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=ordered,
    )
    if skip_corrupt:
        dataset = dataset.ignore_errors(log_warning=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)

    options = tf.data.Options()
    options.deterministic = ordered
    options.experimental_optimization.map_parallelization = True
    return dataset.with_options(options)


def load_manifest(manifest_path_or_dir):
    """Reads `manifest.json` (a path to it, or the directory holding it) -> (dict, directory)."""
    path = os.fspath(manifest_path_or_dir)
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, "manifest.json")
    if not tf.io.gfile.exists(path):
        raise ValueError(f"No TFRecord manifest at {path!r}; run cmsa_tf.data.build first.")
    with tf.io.gfile.GFile(path, "r") as f:
        manifest = json.load(f)
    if not isinstance(manifest.get("splits"), dict):
        raise ValueError(f"Manifest {path!r} has no 'splits' dict.")
    return manifest, os.path.dirname(path)


def manifest_files(manifest_path_or_dir, split):
    """The TFRecord files of `split` listed in the manifest (relative names resolved to its dir)."""
    manifest, directory = load_manifest(manifest_path_or_dir)
    splits = manifest["splits"]
    if split not in splits:
        raise ValueError(
            f"Split {split!r} is not in the manifest; available splits: {sorted(splits)}."
        )
    files = splits[split].get("files") or []
    if not files:
        raise ValueError(f"Split {split!r} lists no files in the manifest.")
    return [f if os.path.isabs(f) or "://" in f else os.path.join(directory, f) for f in files]


def dataset_from_manifest(manifest_path_or_dir, split, **kwargs):
    """`make_dataset` over one split of a TFRecord directory's `manifest.json`.

    Args:
        manifest_path_or_dir: the manifest file or the directory holding `manifest.json`.
        split: e.g. `"train"`, `"val"`, `"testA"`.
        **kwargs: keyword arguments of `make_dataset` (`batch_size` and `training` required).
    """
    return make_dataset(manifest_files(manifest_path_or_dir, split), **kwargs)
