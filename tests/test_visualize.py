"""Tests for cmsa_tf.visualize: overlays, panels, the Fig. 4 matrix, Fig. 5 heat maps, I/O."""

import subprocess
import sys

import matplotlib.figure
import numpy as np
import pytest
from PIL import Image

from cmsa_tf import visualize


def _image(height=32, width=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _box_mask(height=32, width=48):
    mask = np.zeros((height, width), bool)
    mask[8:20, 10:30] = True
    return mask


# ----------------------------------------------------------------------------------------------------
# overlay_mask


def test_overlay_tints_mask_by_alpha_and_leaves_the_rest():
    image, mask = _image(), _box_mask()
    # alpha = 0.25 keeps every blend exact in binary floating point, so rounding is unambiguous.
    out = visualize.overlay_mask(image, mask, color=(10, 200, 30), alpha=0.25, contour=False)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[~mask], image[~mask])
    expected = np.rint(0.75 * image[mask].astype(np.float64) + 0.25 * np.array([10, 200, 30]))
    np.testing.assert_array_equal(out[mask], expected)
    assert out is not image and not np.shares_memory(out, image)


def test_overlay_alpha_extremes_and_probability_masks():
    image = _image()
    probabilities = np.zeros((32, 48), np.float32)
    probabilities[8:20, 10:30] = 0.7
    probabilities[0, 0] = 0.49  # below the threshold: background
    full = visualize.overlay_mask(image, probabilities, color=(1, 2, 3), alpha=1.0, contour=False)
    mask = _box_mask()
    np.testing.assert_array_equal(full[mask], np.broadcast_to([1, 2, 3], full[mask].shape))
    np.testing.assert_array_equal(full[~mask], image[~mask])
    none = visualize.overlay_mask(image, probabilities, alpha=0.0, contour=False)
    np.testing.assert_array_equal(none, image)
    # A higher threshold empties the mask; {0, 1} integers and [H, W, 1] work like booleans.
    np.testing.assert_array_equal(visualize.overlay_mask(image, probabilities, threshold=0.8), image)
    as_int = visualize.overlay_mask(image, mask.astype(np.int64)[..., None], contour=False)
    np.testing.assert_array_equal(as_int, visualize.overlay_mask(image, mask, contour=False))


def test_overlay_empty_mask_is_unchanged():
    image = _image()
    out = visualize.overlay_mask(image, np.zeros((32, 48), bool), contour=True)
    np.testing.assert_array_equal(out, image)


def test_overlay_contour_is_the_inner_boundary_in_full_color():
    image, mask = _image(), _box_mask()
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
    image = _image()
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


# ----------------------------------------------------------------------------------------------------
# Figures


def test_comparison_panel_is_rgb_uint8_and_shows_the_overlays():
    image = np.full((32, 48, 3), 128, np.uint8)
    truth = _box_mask()
    prediction = truth.astype(np.float32) * 0.9
    panel = visualize.comparison_panel(image, truth, prediction, "man on the left", iou=0.75, dpi=50)
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
    image = _image()
    with pytest.raises(ValueError, match="prediction_probabilities has shape"):
        visualize.comparison_panel(image, None, np.zeros((16, 16)), "x")
    with pytest.raises(ValueError, match="ground_truth has shape"):
        visualize.comparison_panel(image, np.zeros((16, 16)), np.zeros((32, 48)), "x")
    with pytest.raises(ValueError, match="expression must be a str"):
        visualize.comparison_panel(image, None, np.zeros((32, 48)), 3)


def test_figure_to_array_renders_at_size_and_closes_pyplot_figures():
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1), dpi=40)
    fig.patch.set_facecolor((0.0, 0.0, 1.0))
    number = fig.number
    pixels = visualize.figure_to_array(fig)
    assert pixels.shape == (40, 80, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[0, 0], [0, 0, 255])
    assert not plt.fignum_exists(number)
    with pytest.raises(ValueError, match="matplotlib.figure.Figure"):
        visualize.figure_to_array(np.zeros((4, 4, 3)))


def test_word_attention_figure_labels_and_values():
    tokens = ["man", "in", "red"]
    attention = np.zeros((3, 20))
    attention[:, :3] = [[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]]
    attention[:, 3:] = 9.0  # padding columns: must not be drawn
    fig = visualize.word_attention_figure(tokens, attention, title="man in red")
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert [t.get_text() for t in ax.get_yticklabels()] == ["res5", "res4", "res3"]
    np.testing.assert_array_equal(ax.images[0].get_array(), attention[:, :3])
    cell_texts = sorted(t.get_text() for t in ax.texts)
    expected = sorted(f"{v:.2f}" for v in attention[:, :3].ravel())
    assert cell_texts == expected
    assert len(fig.axes) == 2  # the matrix and its colour bar
    assert ax.get_title() == "man in red"

    image = visualize.word_attention_image(tokens, attention[:2], level_names=("a", "b"), dpi=40)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3


def test_word_attention_figure_rejects_bad_inputs():
    with pytest.raises(ValueError, match="2 word columns but there are 3 tokens"):
        visualize.word_attention_figure(["a", "b", "c"], np.ones((3, 2)))
    with pytest.raises(ValueError, match="level_names has 3 names but attention has 2 rows"):
        visualize.word_attention_figure(["a"], np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"shape \[levels, words\]"):
        visualize.word_attention_figure(["a"], np.ones((3,)))
    with pytest.raises(ValueError, match="at least one word"):
        visualize.word_attention_figure([], np.ones((3, 4)))


# ----------------------------------------------------------------------------------------------------
# Heat maps


def test_heat_map_picks_the_strongest_channel_and_places_its_peak():
    features = np.zeros((4, 6, 3), np.float32)
    features[..., 0] = 0.3  # flat: mean 0.3, max 0.3
    features[1, 4, 1] = 5.0  # one spike: mean 0.21, max 5 (the largest max)
    features[..., 2] = np.linspace(0, 1.0, 24).reshape(4, 6) * 0.6  # a ramp ...
    features[2, 1, 2] = 4.0  # ... with a peak: mean 0.45 (the largest mean), max 4
    assert visualize.strongest_channel(features, "mean") == 2
    assert visualize.strongest_channel(features, "max") == 1

    heat = visualize.heat_map(features, (32, 48))
    assert heat.shape == (32, 48) and heat.dtype == np.float32
    assert heat.min() == 0.0 and heat.max() == 1.0
    # Feature cell (2, 1) covers rows 16..23 and columns 8..15 of the upsampled map.
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    assert 16 <= peak[0] < 24 and 8 <= peak[1] < 16

    heat_max = visualize.heat_map(features, (32, 48), criterion="max")
    peak = np.unravel_index(np.argmax(heat_max), heat_max.shape)
    assert 8 <= peak[0] < 16 and 32 <= peak[1] < 40


def test_heat_map_constant_and_resize_properties():
    np.testing.assert_array_equal(visualize.heat_map(np.full((3, 3, 2), 7.0), (9, 9)), 0.0)
    # The resize matches half-pixel-centre bilinear interpolation: a 2x upsample of a ramp.
    ramp = np.array([[0.0, 1.0]])
    np.testing.assert_allclose(
        visualize.resize_bilinear(ramp, (1, 4)), [[0.0, 0.25, 0.75, 1.0]]
    )
    # Same size is the identity.
    values = np.random.default_rng(1).random((5, 7))
    np.testing.assert_allclose(visualize.resize_bilinear(values, (5, 7)), values)


def test_heat_map_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"features must have shape \[h, w, C\]"):
        visualize.heat_map(np.ones((4, 4)), (8, 8))
    with pytest.raises(ValueError, match="output_size"):
        visualize.heat_map(np.ones((4, 4, 2)), (8, 0))
    with pytest.raises(ValueError, match="criterion"):
        visualize.heat_map(np.ones((4, 4, 2)), (8, 8), criterion="median")


def test_heat_map_overlay_blends_the_colormap():
    import matplotlib

    image = _image()
    heat = np.tile(np.linspace(0.0, 1.0, 48), (32, 1))
    out = visualize.heat_map_overlay(image, heat, alpha=0.25, colormap="viridis")
    colors = matplotlib.colormaps["viridis"](heat)[..., :3] * 255.0
    expected = 0.75 * image + 0.25 * colors
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_allclose(out.astype(np.float64), expected, atol=0.51)
    np.testing.assert_array_equal(visualize.heat_map_overlay(image, heat, alpha=0.0), image)
    with pytest.raises(ValueError, match=r"heat must be in \[0, 1\]"):
        visualize.heat_map_overlay(image, heat * 2.0)
    with pytest.raises(ValueError, match="not a matplotlib colormap"):
        visualize.heat_map_overlay(image, heat, colormap="no-such-map")


# ----------------------------------------------------------------------------------------------------
# Conversions and I/O


def test_to_uint8_rgb_inverts_the_normalisation():
    from cmsa_tf.data import pipeline

    rgb = np.array([[[200, 100, 10], [0, 255, 37]]], np.uint8)  # [1, 2, 3]
    normalised = rgb[..., ::-1].astype(np.float32) - np.array(pipeline.MEAN_BGR, np.float32)
    np.testing.assert_array_equal(visualize.to_uint8_rgb(normalised), rgb)
    # Known pixel by hand: BGR (0, 0, 0) after mean subtraction is the mean; pad (-mean) is black.
    mean = np.array([104.00699, 116.66877, 122.67891], np.float32)
    np.testing.assert_array_equal(visualize.to_uint8_rgb(np.zeros((1, 1, 3))), [[[123, 117, 104]]])
    np.testing.assert_array_equal(visualize.to_uint8_rgb(-mean[None, None]), [[[0, 0, 0]]])
    # Same as the pipeline's TF version, batches included.
    batch = np.random.default_rng(2).uniform(-140.0, 160.0, (2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        visualize.to_uint8_rgb(batch), pipeline.denormalize_image(batch).numpy()
    )
    with pytest.raises(ValueError, match="3 \\(BGR\\) channels"):
        visualize.to_uint8_rgb(np.zeros((2, 2, 4)))


def test_save_png_round_trip(tmp_path):
    image = _image(9, 11)
    path = visualize.save_png(tmp_path / "a" / "b" / "image.png", image)
    assert path.exists()
    with Image.open(path) as loaded:
        assert loaded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(loaded), image)
    mask_path = visualize.save_png(str(tmp_path / "mask.png"), _box_mask(9, 40))
    with Image.open(mask_path) as loaded:
        np.testing.assert_array_equal(np.asarray(loaded), _box_mask(9, 40).astype(np.uint8) * 255)
    with pytest.raises(ValueError, match="dtype uint8"):
        visualize.save_png(tmp_path / "x.png", image.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        visualize.save_png(tmp_path / "x.png", np.zeros((4, 4, 2), np.uint8))


def test_to_summary_image_shapes():
    tensor = visualize.to_summary_image(_image(8, 6))
    assert tensor.shape == (1, 8, 6, 3) and tensor.dtype.name == "uint8"
    fig = matplotlib.figure.Figure(figsize=(1, 1), dpi=20)
    assert visualize.to_summary_image(fig).shape == (1, 20, 20, 3)
    with pytest.raises(ValueError, match="uint8"):
        visualize.to_summary_image(np.zeros((8, 6, 3), np.float32))


def test_module_import_does_not_import_tensorflow():
    code = "import sys, cmsa_tf.visualize; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
