"""The TFRecord schema shared by the builder (writer) and the pipeline (reader).

One `tf.train.Example` per (ref, sentence) pair:

| key                  | type         | meaning                                              |
|----------------------|--------------|------------------------------------------------------|
| `image/encoded`      | bytes        | the original image file bytes (JPEG, PNG, ...)       |
| `image/format`       | bytes        | `jpeg`, `png`, ...                                   |
| `image/height`       | int64        | original image height in pixels                      |
| `image/width`        | int64        | original image width in pixels                       |
| `image/id`           | int64        | COCO / REFER image id                                |
| `mask/encoded`       | bytes        | single-channel 8-bit PNG, values in {0, 1}, H x W    |
| `expression/raw`     | bytes        | the sentence as written (UTF-8)                      |
| `expression/ids`     | int64 list   | token ids, untruncated, unpadded (manifest's vocab)  |
| `ref/id`             | int64        | REFER ref id                                         |
| `ann/id`             | int64        | COCO annotation id                                   |
| `sentence/id`        | int64        | REFER sentence id                                    |
"""

import tensorflow as tf

IMAGE_ENCODED = "image/encoded"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_ID = "image/id"
MASK_ENCODED = "mask/encoded"
EXPRESSION_RAW = "expression/raw"
EXPRESSION_IDS = "expression/ids"
REF_ID = "ref/id"
ANN_ID = "ann/id"
SENTENCE_ID = "sentence/id"

FEATURE_SPEC = {
    IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
    IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=b""),
    IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    IMAGE_ID: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    MASK_ENCODED: tf.io.FixedLenFeature([], tf.string),
    EXPRESSION_RAW: tf.io.FixedLenFeature([], tf.string),
    EXPRESSION_IDS: tf.io.VarLenFeature(tf.int64),
    REF_ID: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    ANN_ID: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    SENTENCE_ID: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
}


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def serialize_example(
    *,
    image_encoded,
    image_format,
    height,
    width,
    mask_png,
    expression,
    ids,
    image_id=-1,
    ref_id=-1,
    ann_id=-1,
    sentence_id=-1,
):
    """Returns one serialized `tf.train.Example` in the schema above.

    Args:
        image_encoded: bytes of the image file.
        image_format: e.g. `"jpeg"` or `"png"`.
        height, width: original image size.
        mask_png: bytes of a single-channel PNG with values in {0, 1}.
        expression: the raw sentence (`str`).
        ids: token ids (iterable of int), unpadded and untruncated.
        image_id, ref_id, ann_id, sentence_id: REFER / COCO ids.
    """
    if isinstance(image_format, str):
        image_format = image_format.encode("ascii")
    feature = {
        IMAGE_ENCODED: _bytes(image_encoded),
        IMAGE_FORMAT: _bytes(image_format),
        IMAGE_HEIGHT: _ints([height]),
        IMAGE_WIDTH: _ints([width]),
        IMAGE_ID: _ints([image_id]),
        MASK_ENCODED: _bytes(mask_png),
        EXPRESSION_RAW: _bytes(expression.encode("utf-8")),
        EXPRESSION_IDS: _ints(ids),
        REF_ID: _ints([ref_id]),
        ANN_ID: _ints([ann_id]),
        SENTENCE_ID: _ints([sentence_id]),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    # Deterministic map order, so the same example gives the same bytes in every process.
    return example.SerializeToString(deterministic=True)


def parse_example(serialized):
    """Parses one serialized example into a dict of tensors (ids densified)."""
    parsed = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    parsed[EXPRESSION_IDS] = tf.sparse.to_dense(parsed[EXPRESSION_IDS])
    return parsed
