"""overlay_mask, mask_outline and comparison_panel."""

import numpy as np
import pytest

from cmsa_tf import visualize
from tests.visualize.common import box_mask, random_image


def test_overlay_tints_mask_by_alpha_and_leaves_the_rest():
    image, mask = random_image(), box_mask()
    # alpha = 0.25 keeps every blend exact in binary floating point, so rounding is unambiguous.
    out = visualize.overlay_mask(image, mask, color=(10, 200, 30), alpha=0.25, contour=False)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[~mask], image[~mask])
    expected = np.rint(0.75 * image[mask].astype(np.float64) + 0.25 * np.array([10, 200, 30]))
    np.testing.assert_array_equal(out[mask], expected)
    assert out is not image and not np.shares_memory(out, image)


def test_overlay_alpha_extremes_and_probability_masks():
    image = random_image()
    probabilities = np.zeros((32, 48), np.float32)
    probabilities[8:20, 10:30] = 0.7
    probabilities[0, 0] = 0.49  # below the threshold: background
    full = visualize.overlay_mask(image, probabilities, color=(1, 2, 3), alpha=1.0, contour=False)
    mask = box_mask()
    np.testing.assert_array_equal(full[mask], np.broadcast_to([1, 2, 3], full[mask].shape))
    np.testing.assert_array_equal(full[~mask], image[~mask])
    none = visualize.overlay_mask(image, probabilities, alpha=0.0, contour=False)
    np.testing.assert_array_equal(none, image)
    # A higher threshold empties the mask; {0, 1} integers and [H, W, 1] work like booleans.
    np.testing.assert_array_equal(
        visualize.overlay_mask(image, probabilities, threshold=0.8), image
    )
    as_int = visualize.overlay_mask(image, mask.astype(np.int64)[..., None], contour=False)
    np.testing.assert_array_equal(as_int, visualize.overlay_mask(image, mask, contour=False))


def test_overlay_empty_mask_is_unchanged():
    image = random_image()
    out = visualize.overlay_mask(image, np.zeros((32, 48), bool), contour=True)
    np.testing.assert_array_equal(out, image)


def test_overlay_contour_is_the_inner_boundary_in_full_color():
    image, mask = random_image(), box_mask()
    out = visualize.overlay_mask(image, mask, color=(0, 255, 0), alpha=0.5, contour=True)
    outline = np.zeros_like(mask)
    outline[8:20, 10:30] = True
    outline[9:19, 11:29] = False
    np.testing.assert_array_equal(visualize.mask_outline(mask), outline)
    np.testing.assert_array_equal(out[outline], np.broadcast_to([0, 255, 0], out[outline].shape))
    np.testing.assert_array_equal(out[~mask], image[~mask])
    tinted = visualize.overlay_mask(image, mask, color=(0, 255, 0), alpha=0.5, contour=False)
    inside = mask & ~outline
    np.testing.assert_array_equal(out[inside], tinted[inside])
    # A thicker outline is two pixels deep; the image border is not an edge.
    assert visualize.mask_outline(mask, width=2).sum() == mask.sum() - 8 * 16
    assert not visualize.mask_outline(np.ones((5, 6), bool)).any()


def test_overlay_rejects_bad_inputs():
    image = random_image()
    with pytest.raises(ValueError, match="mask has shape"):
        visualize.overlay_mask(image, np.zeros((31, 48)))
    with pytest.raises(ValueError, match=r"image_rgb_uint8 must be an RGB image"):
        visualize.overlay_mask(image[..., 0], np.zeros((32, 48)))
    with pytest.raises(ValueError, match="dtype uint8"):
        visualize.overlay_mask(image.astype(np.float32), np.zeros((32, 48)))
    with pytest.raises(ValueError, match="alpha"):
        visualize.overlay_mask(image, np.zeros((32, 48)), alpha=1.5)
    with pytest.raises(ValueError, match="color"):
        visualize.overlay_mask(image, np.zeros((32, 48)), color=(0, 300, 0))
    with pytest.raises(ValueError, match="NaN"):
        visualize.overlay_mask(image, np.full((32, 48), np.nan))


def test_comparison_panel_is_rgb_uint8_and_shows_the_overlays():
    image = np.full((32, 48, 3), 128, np.uint8)
    truth = box_mask()
    prediction = truth.astype(np.float32) * 0.9
    panel = visualize.comparison_panel(
        image, truth, prediction, "man on the left", iou=0.75, dpi=50
    )
    assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[-1] == 3
    assert panel.shape[1] == int(round(3 * 3.0 * 50))  # three panels of 3 inches at 50 dpi
    # The green ground-truth tint and the red prediction tint both appear.
    green = (panel[..., 1] > 180) & (panel[..., 0] < 90) & (panel[..., 2] < 90)
    red = (panel[..., 0] > 180) & (panel[..., 1] < 90) & (panel[..., 2] < 90)
    assert green.sum() > 50 and red.sum() > 50
    # Without ground truth the panel has two images; bytes expressions are accepted.
    two = visualize.comparison_panel(image, None, prediction, b"man", dpi=50)
    assert two.shape[1] == int(round(2 * 3.0 * 50))
    green_two = (two[..., 1] > 180) & (two[..., 0] < 90) & (two[..., 2] < 90)
    assert green_two.sum() == 0


def test_comparison_panel_rejects_bad_inputs():
    image = random_image()
    with pytest.raises(ValueError, match="prediction_probabilities has shape"):
        visualize.comparison_panel(image, None, np.zeros((16, 16)), "x")
    with pytest.raises(ValueError, match="ground_truth has shape"):
        visualize.comparison_panel(image, np.zeros((16, 16)), np.zeros((32, 48)), "x")
    with pytest.raises(ValueError, match="expression must be a str"):
        visualize.comparison_panel(image, None, np.zeros((32, 48)), 3)
