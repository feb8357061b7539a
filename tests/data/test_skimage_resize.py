"""Tests of cmsa_tf/data/skimage_resize.py and the "authors" preprocessing of preprocess.py,
against a NumPy re-implementation of the authors' `resize_and_pad` / `img_as_ubyte` written here
(skimage's `resize(order=1, mode="constant", cval=0)` of their time, pixel by pixel)."""

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import preprocess, skimage_resize


def np_skimage_resize(image, out_h, out_w):
    """skimage's bilinear `resize` with zeros outside the image, float64, one pixel at a time."""
    image = np.asarray(image, np.float64)
    in_h, in_w = image.shape[:2]
    out = np.zeros((out_h, out_w) + image.shape[2:])

    def pixel(r, c):
        if r < 0 or r >= in_h or c < 0 or c >= in_w:
            return 0.0
        return image[r, c]

    for i in range(out_h):
        r = (i + 0.5) * in_h / out_h - 0.5
        r0, r1 = int(np.floor(r)), int(np.ceil(r))
        dr = r - r0
        for j in range(out_w):
            c = (j + 0.5) * in_w / out_w - 0.5
            c0, c1 = int(np.floor(c)), int(np.ceil(c))
            dc = c - c0
            top = (1 - dc) * pixel(r0, c0) + dc * pixel(r0, c1)
            bottom = (1 - dc) * pixel(r1, c0) + dc * pixel(r1, c1)
            out[i, j] = (1 - dr) * top + dr * bottom
    return out


def np_authors_resize_and_pad(image, size):
    """The authors' `im_processing.resize_and_pad(im, size, size)`."""
    im_h, im_w = image.shape[:2]
    scale = min(size / im_h, size / im_w)
    resized_h, resized_w = int(np.round(im_h * scale)), int(np.round(im_w * scale))
    pad_h = int(np.floor(size - resized_h) / 2)
    pad_w = int(np.floor(size - resized_w) / 2)
    new = np.zeros((size, size) + image.shape[2:])
    new[pad_h : pad_h + resized_h, pad_w : pad_w + resized_w] = np_skimage_resize(
        image, resized_h, resized_w
    )
    return new


def np_img_as_ubyte(image):
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("in_hw, out_hw", [((5, 7), (11, 3)), ((8, 8), (4, 4)), ((3, 9), (9, 27))])
def test_resize_bilinear_matches_numpy_reference(in_hw, out_hw):
    image = np.random.default_rng(0).uniform(-1, 1, in_hw + (2,))
    got = skimage_resize.resize_bilinear(image, *out_hw).numpy()
    assert got.dtype == np.float64 and got.shape == out_hw + (2,)
    np.testing.assert_allclose(got, np_skimage_resize(image, *out_hw), rtol=0, atol=1e-12)


def test_resize_bilinear_reads_zeros_outside_but_equals_tf_inside():
    image = np.random.default_rng(1).uniform(0, 1, (6, 10, 1))
    got = skimage_resize.resize_bilinear(image, 12, 20).numpy()
    tf_resized = tf.image.resize(image, [12, 20], "bilinear").numpy()
    # Output rows / columns 1..-2 sample inside the image: the same as TensorFlow's.
    np.testing.assert_allclose(got[1:-1, 1:-1], tf_resized[1:-1, 1:-1], atol=1e-6)
    # The border samples a quarter pixel outside: a quarter of a zero.
    np.testing.assert_allclose(got[0, 1:-1], 0.75 * tf_resized[0, 1:-1], atol=1e-6)
    assert got[0, 0] == pytest.approx(0.75 * 0.75 * image[0, 0, 0])


def test_resize_bilinear_zero_weight_on_a_pixel_centre():
    # Downscaling 9 -> 3 samples exactly on the source pixels 1, 4, 7: a binary map keeps
    # exactly those pixels, and a pixel beside them gets exactly zero weight.
    mask = np.zeros((9, 9, 1))
    mask[4, 4] = 1.0
    got = skimage_resize.resize_bilinear(mask, 3, 3).numpy()[..., 0]
    want = np.zeros((3, 3), bool)
    want[1, 1] = True
    np.testing.assert_array_equal(got > 0, want)
    mask = np.zeros((9, 9, 1))
    mask[4, 3] = 1.0
    assert not (skimage_resize.resize_bilinear(mask, 3, 3).numpy() > 0).any()


@pytest.mark.parametrize("height, width", [(37, 53), (53, 37), (17, 17), (1, 9), (64, 20)])
def test_authors_image_preprocessing_matches_their_code(height, width):
    size = 24
    image = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    reference = np_authors_resize_and_pad(image / 255.0, size)
    want = np_img_as_ubyte(reference)
    got, info = preprocess.authors_resized_uint8(image, size)
    # Equal, except where the value lies on a rounding tie (x.5 up to float round-off): there the
    # last bits of the sample coordinate decide (ours are exact, skimage's come from a fitted
    # affine transform), and the two may differ by one level.
    scaled = reference * 255.0
    tie = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-9
    differs = got.numpy() != want
    assert not (differs & ~tie).any()
    assert np.abs(got.numpy().astype(int) - want)[differs].max(initial=0) <= 1
    assert differs.sum() <= 0.01 * differs.size
    want = got.numpy()
    # The model input is the quantised image, BGR, minus the mean; the pad is -mean.
    normalised, _ = preprocess.preprocess_image(image, size, preprocessing="authors")
    np.testing.assert_array_equal(preprocess.to_uint8_rgb(normalised.numpy()), want)
    # The geometry is the default's (their pad offsets are ours).
    default_info = preprocess.resize_and_pad_info(height, width, size)
    assert {k: int(v) for k, v in info.items() if k != "scale"} == {
        k: int(v) for k, v in default_info.items() if k != "scale"
    }


@pytest.mark.parametrize("height, width", [(37, 53), (53, 37), (10, 15), (7, 40)])
def test_authors_mask_is_nonzero_after_skimage_resize(height, width):
    size = 24
    rng = np.random.default_rng(width)
    mask = (rng.uniform(size=(height, width, 1)) > 0.8).astype(np.uint8)
    want = np_authors_resize_and_pad(mask.astype(np.float64), size) > 0
    got, _ = preprocess.resize_and_pad_mask(mask, size, preprocessing="authors")
    np.testing.assert_array_equal(got.numpy() > 0, want)
    default, _ = preprocess.resize_and_pad_mask(mask, size)
    # `> 0` keeps every pixel that `>= 0.5` keeps, and more.
    assert np.all(got.numpy() >= default.numpy()) and got.numpy().sum() > default.numpy().sum()


def test_pad_offsets_match_their_rounding_over_many_sizes():
    for height in range(1, 70, 3):
        for width in range(1, 70, 5):
            info = preprocess.resize_and_pad_info(height, width, 32)
            scale = min(32 / height, 32 / width)
            resized_h, resized_w = int(np.round(height * scale)), int(np.round(width * scale))
            if min(resized_h, resized_w) == 0:  # theirs: an empty image; ours keeps 1 pixel
                assert min(int(info["resized_height"]), int(info["resized_width"])) == 1
                continue
            assert int(info["resized_height"]) == resized_h
            assert int(info["resized_width"]) == resized_w
            assert int(info["pad_top"]) == int(np.floor(32 - resized_h) / 2)
            assert int(info["pad_left"]) == int(np.floor(32 - resized_w) / 2)


def test_preprocessing_option_is_checked():
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        preprocess.preprocess_image(np.zeros((4, 4, 3), np.uint8), 8, preprocessing="skimage")
    with pytest.raises(ValueError, match="uint8"):
        preprocess.authors_resized_uint8(np.zeros((4, 4, 3), np.float32), 8)


def test_encoded_images_take_the_option():
    from tests.data.synthetic import encode

    image = np.random.default_rng(3).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    batch, _ = preprocess.preprocess_encoded_images([encode(image)], 16, preprocessing="authors")
    want, _ = preprocess.preprocess_image(image, 16, preprocessing="authors")
    np.testing.assert_array_equal(batch.numpy()[0], want.numpy())
