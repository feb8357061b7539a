"""Tests of cmsa_tf/data/image_io.py: magic bytes, header checks, in-graph and NumPy decoding."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cmsa_tf.data import image_io
from tests.data.synthetic import blob, encode


def _pixels(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _truncated_png_bomb(height, width):
    """A PNG signature and an IHDR claiming height x width, plus an IEND: no pixel data at all."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + ihdr + b"\x00" * 4
        + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Magic bytes.
# ----------------------------------------------------------------------------------------------

FILES = {
    "jpeg": encode(_pixels(8, 6), "JPEG"),
    "png": encode(_pixels(8, 6)),
    "gif": encode(_pixels(8, 6), "GIF"),
    "bmp": encode(_pixels(8, 6), "BMP"),
    None: b"this is not an image",
}
ODD = {
    "jpeg": b"\xff\xd8\xff",  # the signature alone
    "png": image_io.PNG_SIGNATURE,
    "gif": b"GIF89a",
    "bmp": b"BM",
    None: [b"", b"\xff\xd8", b"\x89PNG\r\n\x1a", b"GIF7", b"B", encode(_pixels(4, 4), "TIFF")],
}


@pytest.mark.parametrize("name", ["jpeg", "png", "gif", "bmp", None])
def test_image_format_on_each_magic(name):
    assert image_io.image_format(FILES[name]) == name
    odd = ODD[name] if name is None else [ODD[name]]
    for data in odd:
        assert image_io.image_format(data) == name, data
    # The in-graph test agrees, eagerly and in a graph.
    graph = tf.function(image_io.is_supported_image)
    for data in [FILES[name], *odd]:
        assert bool(image_io.is_supported_image(tf.constant(data))) is (name is not None), data
        assert bool(graph(tf.constant(data))) is (name is not None), data
    assert bool(image_io.is_png(tf.constant(FILES[name]))) is (name == "png")


def test_format_names_agree():
    assert tuple(image_io.SIGNATURES) == image_io.FORMATS == ("jpeg", "png", "gif", "bmp")
    assert sorted(image_io.PIL_FORMATS.values()) == sorted(image_io.FORMATS)
    for name, data in FILES.items():
        if name is not None:
            assert image_io.PIL_FORMATS[Image.open(io.BytesIO(data)).format] == name


# ----------------------------------------------------------------------------------------------
# Decoding: NumPy decoders are the TF decoder.
# ----------------------------------------------------------------------------------------------


def _odd_images():
    rgb = _pixels(12, 18, 1)
    gray = rgb[..., 0]
    return {
        "rgb_png": encode(rgb),
        "rgb_jpeg": encode(rgb, "JPEG", quality=90),
        "gray_png": encode(gray),
        "gray_jpeg": encode(gray, "JPEG"),
        "rgba_png": encode(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])),
        "png16": encode(gray.astype(np.uint16) * 257),
        "gif": encode(rgb, "GIF"),
        "bmp": encode(rgb, "BMP"),
    }


@pytest.mark.parametrize("name", list(_odd_images()))
def test_decode_rgb_is_the_tf_decoder(name):
    data = _odd_images()[name]
    got = image_io.decode_rgb(data)
    assert isinstance(got, np.ndarray) and got.dtype == np.uint8 and got.shape == (12, 18, 3)
    if name.endswith("jpeg"):
        want = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE").numpy()
    else:
        want = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, image_io.decode_image(tf.constant(data)).numpy())
    rgb = _pixels(12, 18, 1)
    if name in ("rgb_png", "rgba_png", "bmp"):  # lossless: the original pixels
        np.testing.assert_array_equal(got, rgb)
    if name in ("gray_png", "png16"):  # grayscale expanded to three equal channels
        np.testing.assert_array_equal(got, np.repeat(rgb[..., :1], 3, axis=-1))


def test_decode_mask_png_is_the_pipeline_mask():
    mask = blob(10, 14)
    for values in (mask, mask * 255):  # any non-zero value is foreground
        data = encode(values)
        got = image_io.decode_mask_png(data)
        assert got.dtype == np.uint8 and got.shape == (10, 14)
        np.testing.assert_array_equal(got, mask)
        in_graph = image_io.decode_mask(tf.constant(data)).numpy()
        np.testing.assert_array_equal(in_graph[..., 0], got)
        np.testing.assert_array_equal(got, (tf.io.decode_png(data)[..., 0].numpy() > 0))


# ----------------------------------------------------------------------------------------------
# checked_decode_image: the export's checks before decoding.
# ----------------------------------------------------------------------------------------------

GOOD = encode(_pixels(16, 16, 5))


_ERR = r"image_bytes\[3\] "
BAD_INPUTS = {
    "not_an_image": (
        b"this is not an image",
        _ERR + r"is not a JPEG, PNG, GIF or BMP file \(20 bytes",
    ),
    "empty_bytes": (b"", _ERR + r"is empty \(0 bytes\)"),
    "truncated_jpeg": (
        encode(_pixels(30, 30), "JPEG")[:300],
        _ERR + r"is a truncated JPEG \(no end-of-image marker\)",
    ),
    "truncated_png": (
        encode(_pixels(30, 30))[:200],
        _ERR + r"is a truncated PNG \(no IEND chunk\)",
    ),
    "truncated_bmp": (
        encode(_pixels(30, 30), "BMP")[:200],
        _ERR + r"is a truncated BMP \(shorter than its header says\)",
    ),
    "pixel_bomb": (
        _truncated_png_bomb(9000, 9000),
        _ERR + r"is 9000x9000 = 81000000 pixels, more than the 67108864 pixels",
    ),
    "truncated_pixel_bomb": (_truncated_png_bomb(9000, 9000)[:-12], _ERR + r"is a truncated PNG"),
}


@pytest.mark.parametrize("data, message", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_checked_decode_names_the_problem(data, message):
    assert image_io.DEFAULT_MAX_PIXELS == 8192 * 8192 == 67108864
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        image_io.checked_decode_image(tf.constant(3), tf.constant(data))
    graph = tf.function(lambda encoded: image_io.checked_decode_image(tf.constant(3), encoded))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        graph(tf.constant(data))


def test_checked_decode_of_a_good_image_is_decode_image():
    got = image_io.checked_decode_image(tf.constant(0), tf.constant(GOOD))
    np.testing.assert_array_equal(got.numpy(), image_io.decode_rgb(GOOD))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_pixel_limit_reads_each_format_header(fmt):
    data = encode(_pixels(40, 30, 9), fmt)
    image = image_io.checked_decode_image(tf.constant(0), tf.constant(data), max_pixels=40 * 30)
    assert image.shape == (40, 30, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"is 40x30 = 1200 pixels, more than"):
        image_io.checked_decode_image(tf.constant(2), tf.constant(data), max_pixels=40 * 30 - 1)
    # No limit.
    for limit in (0, None):
        shape = image_io.checked_decode_image(tf.constant(0), tf.constant(data), max_pixels=limit)
        assert shape.shape == (40, 30, 3)


# ----------------------------------------------------------------------------------------------
# JPEG pixels equal PIL's (the accurate IDCT).
# ----------------------------------------------------------------------------------------------


def _smooth_photo(height, width, seed):
    """A photo-like image (smooth gradients plus noise), so the IDCT's rounding shows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [128 + 100 * np.sin(x / 7.0 + c) * np.cos(y / 5.0 - c) for c in range(3)], axis=-1
    )
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "height, width, quality, subsampling",
    [(37, 53, 95, 0), (64, 48, 75, 1), (101, 67, 50, 2), (17, 240, 90, 2), (240, 17, 30, 0)],
)
def test_decode_jpeg_equals_pil(height, width, quality, subsampling):
    buffer = io.BytesIO()
    Image.fromarray(_smooth_photo(height, width, quality)).save(
        buffer, "JPEG", quality=quality, subsampling=subsampling
    )
    data = buffer.getvalue()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(image_io.decode_rgb(data), expected)
    # The fast IDCT (TensorFlow's default) does differ on these files: the test can fail.
    fast = tf.io.decode_jpeg(data, channels=3).numpy()
    assert (fast != expected).any()


def test_decode_grayscale_jpeg_equals_pil():
    buffer = io.BytesIO()
    Image.fromarray(_smooth_photo(30, 41, 1)[..., 0]).save(buffer, "JPEG", quality=80)
    data = buffer.getvalue()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(image_io.decode_rgb(data), expected)
