"""Image formats: magic bytes, header checks, and the one image decoder (in-graph and NumPy).

The pipeline, the SavedModel export, evaluation and prediction read images through this module,
so all of them see the same pixels for the same bytes:

- `image_format` (Python) / `is_supported_image` (in-graph): does a byte string start like one
  of `FORMATS` (JPEG, PNG, GIF, BMP, the formats `tf.io.decode_image` reads).
- `decode_image`: encoded bytes -> uint8 RGB [H, W, 3] in the graph (grayscale expanded, alpha
  dropped, 16-bit scaled to 8 bits, first GIF frame; JPEGs with the accurate IDCT, so the
  pixels equal PIL's). `decode_mask`: a PNG mask -> {0, 1}.
- `checked_decode_image`: `decode_image` after checks that name the problem of a bad input
  (empty, unknown signature, truncated, more pixels than `max_pixels` declared in the header), for
  the export, which must refuse a small file that claims a huge size before decoding it.
- `decode_rgb` / `decode_mask_png`: the same decoders for NumPy callers (evaluation, prediction).
"""

import numpy as np
import tensorflow as tf

# The formats `decode_image` reads, in the order of their branch index in `checked_decode_image`.
FORMATS = ("jpeg", "png", "gif", "bmp")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The leading bytes of each format in `FORMATS`.
SIGNATURES = {
    "jpeg": b"\xff\xd8\xff",
    "png": PNG_SIGNATURE,
    "gif": b"GIF8",
    "bmp": b"BM",
}
# PIL `Image.format` names of the formats in `FORMATS` (the TFRecord builder decodes with PIL).
PIL_FORMATS = {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "BMP": "bmp"}
# The export refuses images whose header declares more pixels (8192 x 8192).
DEFAULT_MAX_PIXELS = 8192 * 8192

_JPEG, _PNG, _GIF, _BMP = range(len(FORMATS))
_UNKNOWN = len(FORMATS)  # the branch of bytes whose size is not to be parsed
_HEADER_BYTES = 32


# ----------------------------------------------------------------------------------------------
# Magic bytes.
# ----------------------------------------------------------------------------------------------


def image_format(data: bytes) -> str | None:
    """The format a byte string starts like: "jpeg", "png", "gif", "bmp", or None."""
    for name in FORMATS:
        if bytes(data).startswith(SIGNATURES[name]):
            return name
    return None


def _starts_with(encoded, name):
    signature = SIGNATURES[name]
    return tf.equal(tf.strings.substr(encoded, 0, len(signature)), signature)


def _format_index(encoded):
    """int32 scalar: the index in `FORMATS` of the format the bytes start like, or -1."""
    index = tf.constant(-1)
    # Plain selects, no control flow: checked in reverse so the first match wins.
    for value, name in reversed(list(enumerate(FORMATS))):
        index = tf.where(_starts_with(encoded, name), value, index)
    return index


def is_supported_image(encoded: tf.Tensor) -> tf.Tensor:
    """Scalar bool: do the bytes start like a JPEG, PNG, GIF or BMP file."""
    return _format_index(encoded) >= 0


def is_png(encoded: tf.Tensor) -> tf.Tensor:
    """Scalar bool: do the bytes start with the PNG signature."""
    return _starts_with(encoded, "png")


# ----------------------------------------------------------------------------------------------
# Decoding.
# ----------------------------------------------------------------------------------------------


# TensorFlow's default JPEG IDCT ("INTEGER_FAST") gives other pixels than PIL (libjpeg's
# accurate IDCT), through which the REFER datasets and the authors' data were decoded;
# "INTEGER_ACCURATE" gives PIL's pixels exactly.
JPEG_DCT_METHOD = "INTEGER_ACCURATE"


def decode_image(encoded) -> tf.Tensor:
    """JPEG / PNG / BMP / GIF bytes -> uint8 RGB [H, W, 3] (grayscale expanded, alpha dropped,
    first GIF frame). JPEGs are decoded with the accurate IDCT (`JPEG_DCT_METHOD`), as PIL."""
    encoded = tf.convert_to_tensor(encoded, tf.string)

    def jpeg():
        return tf.io.decode_jpeg(encoded, channels=3, dct_method=JPEG_DCT_METHOD)

    def other():
        return tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)

    image = tf.cond(_starts_with(encoded, "jpeg"), jpeg, other)
    return tf.ensure_shape(image, [None, None, 3])  # [H, W, 3]


def decode_mask(mask_png) -> tf.Tensor:
    """A PNG mask -> uint8 [H, W, 1] in {0, 1}: any non-zero value counts as foreground."""
    mask = tf.io.decode_png(mask_png, channels=1)  # [H, W, 1]
    return tf.cast(mask > 0, tf.uint8)


def decode_rgb(data: bytes) -> np.ndarray:
    """`decode_image` for NumPy callers: encoded bytes -> np.uint8 RGB [H, W, 3]."""
    return decode_image(tf.constant(data, tf.string)).numpy()


def decode_mask_png(data: bytes) -> np.ndarray:
    """`decode_mask` for NumPy callers: PNG bytes -> np.uint8 [H, W] in {0, 1}."""
    return decode_mask(tf.constant(data, tf.string))[:, :, 0].numpy()


# ----------------------------------------------------------------------------------------------
# Header checks before decoding (the export's guard against bad and oversized inputs).
# ----------------------------------------------------------------------------------------------


def _contains(encoded, pattern):
    """Scalar bool: do the bytes contain `pattern` (a byte string) anywhere."""
    pieces = tf.strings.split(tf.reshape(encoded, [1]), sep=pattern)  # [1, (pieces)]
    return pieces.row_lengths()[0] > 1


def _header(encoded):
    """The first `_HEADER_BYTES` bytes as int64 [32], zero-filled past the end of short input."""
    head = tf.strings.join([tf.strings.substr(encoded, 0, _HEADER_BYTES), b"\x00" * _HEADER_BYTES])
    head = tf.strings.substr(head, 0, _HEADER_BYTES)
    return tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)  # [32]


def _big_endian(header, start, length):
    value = tf.constant(0, tf.int64)
    for i in range(length):
        value = value * 256 + header[start + i]
    return value


def _little_endian(header, start, length):
    value = tf.constant(0, tf.int64)
    for i in reversed(range(length)):
        value = value * 256 + header[start + i]
    return value


def _declared_size(encoded, branch):
    """(height, width) int64 as the file's header declares them, read without decoding.

    `branch` is the format index (`_JPEG`...), or `_UNKNOWN` for bytes not to be parsed (they
    give 0 x 0).
    """
    header = _header(encoded)

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)  # [H, W, C]
        return shape[0], shape[1]

    def png():  # IHDR: width, height as big-endian uint32 at bytes 16 and 20.
        return _big_endian(header, 20, 4), _big_endian(header, 16, 4)

    def gif():  # logical screen: width, height as little-endian uint16 at bytes 6 and 8.
        return _little_endian(header, 8, 2), _little_endian(header, 6, 2)

    def bmp():  # BITMAPINFOHEADER: width, height as little-endian int32 at 18 and 22.
        def signed(value):
            return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

        return signed(_little_endian(header, 22, 4)), signed(_little_endian(header, 18, 4))

    def unknown():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    return tf.switch_case(branch, [jpeg, png, gif, bmp, unknown])


def _assert(condition, message):
    return tf.debugging.Assert(condition, [message])


def checked_decode_image(index, encoded, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tf.Tensor:
    """`decode_image` after checks that name the problem of a bad input.

    Args:
        index: int32 scalar, the position of the image in the request (for the messages).
        encoded: string scalar, the file's bytes.
        max_pixels: refuse images whose header declares more pixels (0 or None: no limit).

    Returns:
        uint8 RGB [H, W, 3].

    Raises (when run):
        tf.errors.InvalidArgumentError: with a message "image_bytes[i] ..." naming the problem.
    """

    def message(text, *values):
        return tf.strings.format("image_bytes[{}] " + text, (index, *values))

    # The conditions exclude each other, so whichever assertion runs first names the problem;
    # the decoder runs only after all of them.
    length = tf.strings.length(encoded)
    format_index = _format_index(encoded)
    known = format_index >= 0
    is_jpeg = tf.equal(format_index, _JPEG)
    is_png_file = tf.equal(format_index, _PNG)
    is_bmp = tf.equal(format_index, _BMP)
    jpeg_complete = _contains(encoded, b"\xff\xd9")
    png_complete = _contains(encoded, b"IEND")
    bmp_complete = tf.cast(length, tf.int64) >= _little_endian(_header(encoded), 2, 4)
    checks = [
        _assert(length > 0, message("is empty (0 bytes); send an encoded image.")),
        _assert(
            tf.logical_or(tf.equal(length, 0), known),
            message(
                "is not a JPEG, PNG, GIF or BMP file ({} bytes with an unknown signature).", length
            ),
        ),
        _assert(
            tf.logical_or(tf.logical_not(is_jpeg), jpeg_complete),
            message("is a truncated JPEG (no end-of-image marker)."),
        ),
        _assert(
            tf.logical_or(tf.logical_not(is_png_file), png_complete),
            message("is a truncated PNG (no IEND chunk)."),
        ),
        _assert(
            tf.logical_or(tf.logical_not(is_bmp), bmp_complete),
            message("is a truncated BMP (shorter than its header says)."),
        ),
    ]
    if max_pixels:
        complete = tf.reduce_all(
            tf.stack(
                [
                    known,
                    tf.logical_or(tf.logical_not(is_jpeg), jpeg_complete),
                    tf.logical_or(tf.logical_not(is_png_file), png_complete),
                    tf.logical_or(tf.logical_not(is_bmp), bmp_complete),
                ]
            )
        )
        # Only complete files are measured: the JPEG header parser fails on truncated data
        # itself, and a truncated file that declares a huge size must fail as truncated only
        # (graph ops run in no fixed order, so two failing assertions could report either).
        height, width = _declared_size(encoded, tf.where(complete, format_index, _UNKNOWN))
        checks.append(
            _assert(
                height * width <= max_pixels,
                message(
                    "is {}x{} = {} pixels, more than the {} pixels this export accepts "
                    "(max_pixels); downscale it before sending.",
                    height,
                    width,
                    height * width,
                    max_pixels,
                ),
            )
        )
    with tf.control_dependencies(checks):
        return decode_image(encoded)  # [H, W, 3]
