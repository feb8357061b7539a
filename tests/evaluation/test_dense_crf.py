"""Tests for cmsa_tf.evaluation.dense_crf on a synthetic image with hard edges."""

import numpy as np
import pytest

from cmsa_tf.evaluation.dense_crf import dense_crf
from cmsa_tf.evaluation.metrics import intersection_and_union

HEIGHT, WIDTH = 40, 56  # not square, so a swapped H / W would show


def _scene(seed=0):
    """A bright square on a dark textured background, and the square's mask."""
    rng = np.random.default_rng(seed)
    image = rng.integers(20, 60, size=(HEIGHT, WIDTH, 3)).astype(np.uint8)
    square = np.zeros((HEIGHT, WIDTH), bool)
    square[10:30, 14:40] = True
    image[square] = rng.integers(200, 240, size=(square.sum(), 3)).astype(np.uint8)
    return image, square


def _box_blur(x, size):
    kernel = np.ones(size) / size
    x = np.apply_along_axis(np.convolve, 0, x, kernel, mode="same")
    return np.apply_along_axis(np.convolve, 1, x, kernel, mode="same")


def _coarse_probabilities(seed=0):
    """A blurred, too large and noisy probability map of the square (a coarse prediction)."""
    rng = np.random.default_rng(seed)
    coarse = np.zeros((HEIGHT, WIDTH))
    coarse[6:34, 10:44] = 1.0
    probabilities = 0.05 + 0.9 * _box_blur(coarse, 9) + rng.normal(0.0, 0.15, (HEIGHT, WIDTH))
    return np.clip(probabilities, 0.0, 1.0)


def _iou(prediction, target):
    intersection, union = intersection_and_union(prediction, target)
    return intersection / union


def test_crf_snaps_a_coarse_map_to_the_edges():
    image, square = _scene()
    probabilities = _coarse_probabilities()
    before = _iou(probabilities >= 0.5, square)
    mask = dense_crf(image, probabilities)
    after = _iou(mask, square)
    assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 1}
    assert before < 0.75
    assert after >= before + 0.15
    assert after > 0.85


def test_confident_correct_map_is_kept_and_label_one_is_foreground():
    image, square = _scene(seed=1)
    mask = dense_crf(image, np.where(square, 0.98, 0.02))
    assert np.count_nonzero(mask != square) <= 0.01 * square.size
    # Swapping the probabilities swaps the labels: label 1 follows p, not 1 - p.
    inverse = dense_crf(image, np.where(square, 0.02, 0.98))
    assert np.count_nonzero(inverse != ~square) <= 0.01 * square.size


def test_extreme_probabilities_and_non_contiguous_image():
    image, square = _scene(seed=2)
    hard = square.astype(np.float32)  # exact 0 and 1: clipped, no infinities
    mask = dense_crf(image, hard)
    assert np.array_equal(mask, square.astype(np.uint8))
    # A flipped view (negative strides) gives the flipped result.
    flipped = dense_crf(image[:, ::-1], hard[:, ::-1])
    assert np.array_equal(flipped, mask[:, ::-1])
    fortran = dense_crf(np.asfortranarray(image), np.asfortranarray(hard))
    assert np.array_equal(fortran, mask)


def test_stronger_pairwise_terms_change_the_result():
    image, square = _scene()
    probabilities = _coarse_probabilities()
    weak = dense_crf(
        image, probabilities, gaussian_compat=1e-3, bilateral_compat=1e-3, iterations=1
    )
    # Almost no pairwise energy: the CRF returns the thresholded unary.
    assert np.array_equal(weak, (probabilities > 0.5).astype(np.uint8))
    assert not np.array_equal(dense_crf(image, probabilities), weak)


@pytest.mark.parametrize(
    "image, probabilities, message",
    [
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8)), r"`image` must have shape \[H, W, 3\]"),
        (np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8)), r"`image` must have shape"),
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8)), r"`image` must have dtype uint8"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9)), r"`probabilities` must have shape"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 1)), r"`probabilities` must have shape"),
        (np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 1.5), r"must lie in \[0, 1\]"),
        (np.zeros((8, 8, 3), np.uint8), np.full((8, 8), -0.1), r"must lie in \[0, 1\]"),
        (np.zeros((8, 8, 3), np.uint8), np.full((8, 8), np.nan), r"must be finite"),
        (np.zeros((8, 8, 3), np.uint8), np.full((8, 8), "a"), r"real-valued"),
        (np.zeros((0, 8, 3), np.uint8), np.zeros((0, 8)), r"must not be empty"),
    ],
)
def test_bad_inputs_raise(image, probabilities, message):
    with pytest.raises(ValueError, match=message):
        dense_crf(image, probabilities)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"iterations": 0}, "iterations"),
        ({"iterations": 2.5}, "iterations"),
        ({"gaussian_sxy": -1}, "gaussian_sxy"),
        ({"bilateral_srgb": 0}, "bilateral_srgb"),
        ({"bilateral_compat": "10"}, "bilateral_compat"),
    ],
)
def test_bad_parameters_raise(kwargs, name):
    image, square = _scene()
    with pytest.raises(ValueError, match=f"`{name}`"):
        dense_crf(image, square.astype(np.float32), **kwargs)


def test_read_only_image_is_accepted():
    from cmsa_tf.evaluation.dense_crf import dense_crf as refine

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(12, 10, 3), dtype=np.uint8)
    probabilities = rng.random((12, 10))
    expected = refine(image, probabilities)
    image.setflags(write=False)  # as np.asarray(PIL.Image) returns
    np.testing.assert_array_equal(refine(image, probabilities), expected)
