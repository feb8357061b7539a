"""Tests of cmsa_tf/data/preprocess.py: resize-and-pad and its inverse, normalisation."""

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import map_back, preprocess
from tests.data.synthetic import blob as _blob
from tests.data.synthetic import encode as _encode
from tests.data.synthetic import iou as _iou
from tests.data.synthetic import np_geometry as _np_geometry
from tests.data.synthetic import np_resize_and_pad as _np_resize_and_pad

MEAN_BGR = np.array([104.00699, 116.66877, 122.67891], np.float32)


# ---------------------------------------------------------------------------------------------
# Geometry.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "height,width,size,expected",
    [
        # (resized_height, resized_width, pad_top, pad_left)
        ((480, 640, 320, (240, 320, 40, 0))),
        ((640, 480, 320, (320, 240, 0, 40))),
        ((427, 640, 320, (214, 320, 53, 0))),  # 213.5 rounds half to even -> 214
        ((1, 1000, 320, (1, 320, 159, 0))),  # never 0 pixels
        ((32, 32, 32, (32, 32, 0, 0))),
        ((10, 7, 64, (64, 45, 0, 9))),
    ],
)
def test_resize_and_pad_info(height, width, size, expected):
    info = preprocess.resize_and_pad_info(height, width, size)
    got = tuple(int(info[k]) for k in ("resized_height", "resized_width", "pad_top", "pad_left"))
    assert got == expected
    assert got == _np_geometry(height, width, size)
    assert int(info["orig_height"]) == height and int(info["orig_width"]) == width
    assert float(info["scale"]) == pytest.approx(size / max(height, width))


def test_resize_and_pad_matches_numpy_reference():
    rng = np.random.default_rng(1)
    image = rng.random((37, 53, 2)).astype(np.float32)
    padded, info = preprocess.resize_and_pad(image, 48)
    assert padded.shape == (48, 48, 2) and padded.dtype == tf.float32
    for c in range(2):
        np.testing.assert_allclose(padded[..., c], _np_resize_and_pad(image[..., c], 48), atol=1e-5)
    top, rh = int(info["pad_top"]), int(info["resized_height"])
    assert np.all(padded.numpy()[:top] == 0) and np.all(padded.numpy()[top + rh :] == 0)


def test_round_trip_exact_when_size_matches():
    rng = np.random.default_rng(2)
    for shape in [(64, 64, 3), (64, 48, 1), (40, 64, 2)]:
        values = rng.random(shape).astype(np.float32)
        padded, info = preprocess.resize_and_pad(values, 64)
        np.testing.assert_array_equal(map_back.unpad_and_resize(padded, info).numpy(), values)
        mask = (values[..., :1] > 0.5).astype(np.uint8)
        padded_mask, info = preprocess.resize_and_pad_mask(mask, 64)
        restored = preprocess.binarize(map_back.unpad_and_resize(padded_mask, info)).numpy()
        np.testing.assert_array_equal(restored, mask.astype(np.float32))


def test_round_trip_big_blob_iou():
    mask = _blob(240, 320)[..., None]  # an ellipse over about a third of the image
    for size in (160, 96):
        padded, info = preprocess.resize_and_pad_mask(mask, size)
        assert set(np.unique(padded.numpy())) == {0.0, 1.0}
        restored = preprocess.binarize(map_back.unpad_and_resize(padded, info)).numpy()
        assert restored.shape == mask.shape
        iou = _iou(restored, mask)
        assert iou > 0.98, (size, iou)
        # Differences only on the blob's boundary: nothing far from an edge flips.
        eroded = _blob(240, 320, ry=0.27, rx=0.32)[..., None]
        assert np.all(restored[eroded == 1] == 1)
        assert np.all(restored[_blob(240, 320, ry=0.33, rx=0.38)[..., None] == 0] == 0)


def test_graph_mode_with_unknown_sizes_matches_eager():
    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def preprocess_in_graph(image):
        return preprocess.preprocess_image(image, 32)

    @tf.function(
        input_signature=[
            tf.TensorSpec([32, 32, 1], tf.float32),
            {
                k: tf.TensorSpec([], tf.float32 if k == "scale" else tf.int32)
                for k in preprocess.INFO_KEYS
            },
        ]
    )
    def restore(prediction, info):
        return map_back.unpad_and_resize(prediction, info)

    image = np.random.default_rng(3).integers(0, 256, (21, 50, 3), dtype=np.uint8)
    graph_image, graph_info = preprocess_in_graph(tf.constant(image))
    eager_image, eager_info = preprocess.preprocess_image(image, 32)
    np.testing.assert_array_equal(graph_image.numpy(), eager_image.numpy())
    assert {k: float(v) for k, v in graph_info.items()} == {
        k: float(v) for k, v in eager_info.items()
    }
    restored = restore(graph_image[..., :1], graph_info)
    assert restored.shape == (21, 50, 1)


def test_batched_preprocess_and_restore_match_single():
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in [(20, 30), (35, 12)]]
    encoded = tf.constant([_encode(im) for im in images])
    batch, info = preprocess.preprocess_encoded_images(encoded, 24)
    assert batch.shape == (2, 24, 24, 3)
    for i, image in enumerate(images):
        single, single_info = preprocess.preprocess_image(image, 24)
        np.testing.assert_allclose(batch[i].numpy(), single.numpy(), atol=1e-4)
        for key in preprocess.INFO_KEYS:
            assert float(info[key][i]) == float(single_info[key])

    ragged = tf.ragged.constant([im.tolist() for im in images], ragged_rank=2, dtype=tf.uint8)
    padded, ragged_info = preprocess.resize_and_pad_batch(ragged, 24)
    np.testing.assert_allclose(preprocess.normalize_image(padded).numpy(), batch.numpy(), atol=1e-4)
    assert ragged_info["pad_left"].numpy().tolist() == info["pad_left"].numpy().tolist()

    predictions = rng.random((2, 24, 24, 1)).astype(np.float32)
    restored = map_back.unpad_and_resize_batch(predictions, info).numpy()
    assert restored.shape == (2, 35, 30, 1)
    for i, image in enumerate(images):
        one = {key: info[key][i] for key in preprocess.INFO_KEYS}
        single = map_back.unpad_and_resize(predictions[i], one).numpy()
        h, w = image.shape[:2]
        np.testing.assert_allclose(restored[i, :h, :w], single, atol=1e-6)
        assert np.all(restored[i, h:] == 0) and np.all(restored[i, :, w:] == 0)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="method"):
        preprocess.resize_and_pad(np.zeros((4, 4, 1)), 8, method="cubic-ish")
    with pytest.raises(ValueError, match="size"):
        preprocess.resize_and_pad(np.zeros((4, 4, 1)), 0)
    with pytest.raises(ValueError, match="image must have rank 3"):
        preprocess.resize_and_pad(np.zeros((4, 4)), 8)
    with pytest.raises(ValueError, match="info is missing"):
        map_back.unpad_and_resize(np.zeros((8, 8, 1)), {"pad_top": 0})
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        preprocess.normalize_image(np.zeros((4, 4, 4), np.uint8))


# ---------------------------------------------------------------------------------------------
# Pixels.
# ---------------------------------------------------------------------------------------------


def test_normalization_at_known_pixels():
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (10, 20, 30)
    image[:, 30:] = (200, 150, 100)
    normalized, info = preprocess.preprocess_image(image, 30)  # resized 20 x 30, pad_top 5
    assert (int(info["pad_top"]), int(info["resized_height"])) == (5, 20)
    out = normalized.numpy()
    np.testing.assert_allclose(out[15, 5], np.array([30, 20, 10]) - MEAN_BGR, atol=1e-4)
    np.testing.assert_allclose(out[15, 25], np.array([100, 150, 200]) - MEAN_BGR, atol=1e-4)
    # The authors pad with 0 and subtract the mean afterwards: the pad is -mean.
    np.testing.assert_allclose(out[0, 0], -MEAN_BGR, atol=1e-6)
    np.testing.assert_allclose(out[29, 29], -MEAN_BGR, atol=1e-6)
    np.testing.assert_array_equal(
        preprocess.denormalize_image(out[15, 25]).numpy(), [200, 150, 100]
    )


def test_to_uint8_rgb_inverts_the_normalisation():
    rgb = np.array([[[200, 100, 10], [0, 255, 37]]], np.uint8)  # [1, 2, 3]
    normalised = rgb[..., ::-1].astype(np.float32) - np.array(preprocess.MEAN_BGR, np.float32)
    np.testing.assert_array_equal(preprocess.to_uint8_rgb(normalised), rgb)
    # Known pixel by hand: BGR (0, 0, 0) after mean subtraction is the mean; pad (-mean) is black.
    np.testing.assert_array_equal(preprocess.to_uint8_rgb(np.zeros((1, 1, 3))), [[[123, 117, 104]]])
    np.testing.assert_array_equal(preprocess.to_uint8_rgb(-MEAN_BGR[None, None]), [[[0, 0, 0]]])
    # Same as the TF version, batches and eager tensors included.
    batch = np.random.default_rng(2).uniform(-140.0, 160.0, (2, 4, 5, 3)).astype(np.float32)
    expected = preprocess.denormalize_image(batch).numpy()
    np.testing.assert_array_equal(preprocess.to_uint8_rgb(batch), expected)
    np.testing.assert_array_equal(preprocess.to_uint8_rgb(tf.constant(batch)), expected)
    assert preprocess.to_uint8_rgb(batch).dtype == np.uint8
    with pytest.raises(ValueError, match="3 \\(BGR\\) channels"):
        preprocess.to_uint8_rgb(np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="finite numbers"):
        preprocess.to_uint8_rgb(np.full((1, 1, 3), np.nan))
