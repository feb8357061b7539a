"""Tests of cmsa_tf/evaluation/protocols.py on hand-made cases, against a NumPy re-implementation
of the authors' test mode (their `resize_and_crop` with skimage's bilinear resize of their time,
the `>= 1e-9` logit threshold, their DenseCRF call) written here."""

import numpy as np
import pydensecrf.densecrf as dcrf
import pytest
import tensorflow as tf

from cmsa_tf.data import map_back, preprocess
from cmsa_tf.evaluation import protocols
from cmsa_tf.evaluation.dense_crf import dense_crf
from tests.data.synthetic import encode

SIZE = 16


def np_bilinear_zeros_outside(image, out_h, out_w):
    """skimage `resize(order=1, mode="constant", cval=0)` of a 2-D map, vectorised."""
    in_h, in_w = image.shape
    padded = np.pad(np.asarray(image, np.float64), 1)
    r = (np.arange(out_h) + 0.5) * in_h / out_h - 0.5
    c = (np.arange(out_w) + 0.5) * in_w / out_w - 0.5
    r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
    dr, dc = (r - r0)[:, None], (c - c0)[None, :]
    rows0, rows1 = padded[r0 + 1], padded[r0 + 2]
    top = (1 - dc) * rows0[:, c0 + 1] + dc * rows0[:, c0 + 2]
    bottom = (1 - dc) * rows1[:, c0 + 1] + dc * rows1[:, c0 + 2]
    return (1 - dr) * top + dr * bottom


def np_resize_and_crop(im, input_h, input_w):
    """The authors' `im_processing.resize_and_crop`."""
    im_h, im_w = im.shape[:2]
    scale = max(input_h / im_h, input_w / im_w)
    resized_h, resized_w = int(np.round(im_h * scale)), int(np.round(im_w * scale))
    crop_h = int(np.floor(resized_h - input_h) / 2)
    crop_w = int(np.floor(resized_w - input_w) / 2)
    resized = np_bilinear_zeros_outside(im, resized_h, resized_w)
    return resized[crop_h : crop_h + input_h, crop_w : crop_w + input_w]


def np_their_crf(proc_im, sigm_val):
    h, w = sigm_val.shape
    d = dcrf.DenseCRF2D(w, h, 2)
    with np.errstate(divide="ignore"):
        unary = np.concatenate([-np.log(1 - sigm_val)[None], -np.log(sigm_val)[None]])
    d.setUnaryEnergy(np.ascontiguousarray(unary.reshape((2, -1))))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=20, srgb=3, rgbim=np.ascontiguousarray(proc_im), compat=10)
    return np.argmax(np.array(d.inference(5)), axis=0).reshape((h, w)).astype(np.float32)


def _item(height, width, seed):
    """An evaluation item: a blob of logits in the padded map, the padded image, the original."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    normalised, info = preprocess.preprocess_image(image, SIZE, preprocessing="authors")
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    logits = (6.0 - np.hypot(y - 7.3, x - 8.6)).astype(np.float32)
    logits += rng.normal(0, 1, logits.shape).astype(np.float32)
    logits[0, 0] = 1e-9  # exactly the threshold: foreground
    logits[0, 1] = 5e-10  # just below: background
    logits[1, 0] = 40.0  # sigmoid exactly 1 in float32
    probabilities = tf.sigmoid(logits).numpy()
    restored = map_back.unpad_and_resize(probabilities[..., None], info).numpy()[..., 0]
    return {
        "padded_logits": logits,
        "padded_probabilities": probabilities,
        "padded_image": preprocess.to_uint8_rgb(normalised.numpy()),
        "probabilities": restored,
        "ground_truth": np.zeros((height, width), bool),
        "image_bytes": encode(image),
    }


SHAPES = [(37, 53), (53, 37), (16, 16), (7, 31), (31, 7), (45, 45), (99, 12)]


@pytest.mark.parametrize("height, width", SHAPES)
def test_authors_mask_matches_their_code(height, width):
    item = _item(height, width, height * width)
    want = np_resize_and_crop((item["padded_logits"] >= 1e-9).astype(np.float32), height, width)
    got = protocols.AuthorsProtocol().mask(item)
    assert got.dtype == bool and got.shape == (height, width)
    np.testing.assert_array_equal(got, want != 0)
    assert 0 < got.sum() < got.size


@pytest.mark.parametrize("height, width", [(37, 53), (53, 37), (16, 16), (31, 7)])
def test_authors_crf_matches_their_code(height, width):
    item = _item(height, width, height + width)
    assert item["padded_probabilities"].max() == 1.0  # an infinite unary, as theirs
    labels = np_their_crf(item["padded_image"], item["padded_probabilities"])
    want = np_resize_and_crop(labels, height, width) != 0
    got = protocols.run_crf_job(protocols.AuthorsProtocol().crf_job(item))
    np.testing.assert_array_equal(got, want)


def test_authors_map_back_of_a_full_map_covers_the_image_and_portrait_centres():
    ones = np.ones((SIZE, SIZE), np.float32)
    for height, width in SHAPES:
        assert protocols.authors_map_back(ones, height, width).min() > 0
    # Column 8 of the square, scaled by 40 / 16, weighs on columns j with |0.4 j - 8.3| < 1,
    # 19..23, which the centre crop of 10 of 40 (offset 15) makes 4..8 of the portrait image.
    column = np.zeros((SIZE, SIZE), np.float32)
    column[:, SIZE // 2] = 1.0
    back = protocols.authors_map_back(column, 40, 10) > 0
    assert back[:, 4:9].all()
    np.testing.assert_array_equal(np.flatnonzero(back.any(axis=0)), [4, 5, 6, 7, 8])


def test_exact_protocol_is_todays_map_back():
    item = _item(37, 53, 0)
    protocol = protocols.get_protocol("exact", threshold=0.5)
    np.testing.assert_array_equal(protocol.mask(item), item["probabilities"] >= 0.5)
    image = preprocess.tf.io.decode_png(item["image_bytes"]).numpy()
    want = dense_crf(image, item["probabilities"]) > 0
    np.testing.assert_array_equal(protocols.run_crf_job(protocol.crf_job(item)), want)


def test_the_protocols_differ_on_the_same_logits():
    item = _item(37, 53, 1)
    exact = protocols.get_protocol("exact").mask(item)
    authors = protocols.get_protocol("authors").mask(item)
    assert (exact != authors).any()
    assert authors.sum() > exact.sum()  # a bilinear map read as "non-zero" grows the mask


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="config.eval.protocol must be one of"):
        protocols.get_protocol("paper")
    with pytest.raises(ValueError, match="padded_map must be"):
        protocols.authors_map_back(np.zeros((2, 2, 1)), 4, 4)
