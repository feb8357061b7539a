"""The Fig. 5 heat maps: the channel criteria, the score contributions, the resize, the overlay,
the figure with its colour bar and title, and the inside-the-mask measure."""

import numpy as np
import pytest

from cmsa_tf import visualize
from tests.visualize.common import random_image


def test_heat_map_picks_the_strongest_channel_and_places_its_peak():
    features = np.zeros((4, 6, 3), np.float32)
    features[..., 0] = 0.3  # flat: mean 0.3, max 0.3
    features[1, 4, 1] = 5.0  # one spike: mean 0.21, max 5 (the largest max)
    features[..., 2] = np.linspace(0, 1.0, 24).reshape(4, 6) * 0.6  # a ramp ...
    features[2, 1, 2] = 4.0  # ... with a peak: mean 0.45 (the largest mean), max 4
    assert visualize.strongest_channel(features, "mean") == 2
    assert visualize.strongest_channel(features, "max") == 1

    heat = visualize.heat_map(features, (32, 48), criterion="mean")
    assert heat.shape == (32, 48) and heat.dtype == np.float32
    assert heat.min() == 0.0 and heat.max() == 1.0
    # Feature cell (2, 1) covers rows 16..23 and columns 8..15 of the upsampled map.
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    assert 16 <= peak[0] < 24 and 8 <= peak[1] < 16

    heat_max = visualize.heat_map(features, (32, 48), criterion="max")
    peak = np.unravel_index(np.argmax(heat_max), heat_max.shape)
    assert 8 <= peak[0] < 16 and 32 <= peak[1] < 40


def test_heat_map_constant_and_resize_properties():
    np.testing.assert_array_equal(
        visualize.heat_map(np.full((3, 3, 2), 7.0), (9, 9), criterion="max"), 0.0
    )
    # The resize matches half-pixel-centre bilinear interpolation: a 2x upsample of a ramp.
    ramp = np.array([[0.0, 1.0]])
    np.testing.assert_allclose(visualize.resize_bilinear(ramp, (1, 4)), [[0.0, 0.25, 0.75, 1.0]])
    # Same size is the identity.
    values = np.random.default_rng(1).random((5, 7))
    np.testing.assert_allclose(visualize.resize_bilinear(values, (5, 7)), values)


def test_heat_map_of_bfloat16_features_equals_float32():
    # Mixed-precision models (config.train.mixed_precision="bfloat16") hand over ml_dtypes'
    # bfloat16 arrays, which numpy does not count as np.number.
    import ml_dtypes

    rng = np.random.default_rng(3)
    features = rng.normal(size=(4, 5, 3)).astype(ml_dtypes.bfloat16)
    kernel, bias = rng.normal(size=(1, 1, 3, 1)).astype(np.float32), np.zeros(1, np.float32)
    as_float = features.astype(np.float32)
    for criterion, weights in (
        ("mean", {}),
        ("weighted", dict(score_kernel=kernel, score_bias=bias)),
    ):
        np.testing.assert_array_equal(
            visualize.heat_map(features, (8, 10), criterion=criterion, **weights),
            visualize.heat_map(as_float, (8, 10), criterion=criterion, **weights),
        )
    features[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        visualize.heat_map(features, (8, 10), criterion="mean")


def test_heat_map_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"features must have shape \[h, w, C\]"):
        visualize.heat_map(np.ones((4, 4)), (8, 8), criterion="mean")
    with pytest.raises(ValueError, match="output_size"):
        visualize.heat_map(np.ones((4, 4, 2)), (8, 0), criterion="mean")
    with pytest.raises(ValueError, match="criterion"):
        visualize.heat_map(np.ones((4, 4, 2)), (8, 8), criterion="median")


def test_heat_map_overlay_blends_the_colormap():
    import matplotlib

    image = random_image()
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


def _referent_scene():
    """A [8, 8, 3] feature map: channel 0 a large background response (the largest mean and max),
    channel 1 a blob at rows 2..3, columns 4..5 (the referent), channel 2 noise; and a 1 x 1
    score kernel (in a 3 x 3 one) that scores channel 1 up and channel 0 down."""
    rng = np.random.default_rng(3)
    features = np.zeros((8, 8, 3))
    features[..., 0] = 4.0
    features[2:4, 4:6, 0] = 1.0
    features[2:4, 4:6, 1] = 2.0
    features[..., 2] = rng.normal(0.0, 0.05, (8, 8))
    kernel = np.zeros((3, 3, 3, 1))
    kernel[1, 1, :, 0] = [-0.5, 3.0, 0.1]
    bias = np.array([1.0])  # logits: -1 on the background, 3.5 on the blob
    referent = np.zeros((8, 8), bool)
    referent[2:4, 4:6] = True
    return features, kernel, bias, referent


def test_score_criteria_pick_the_channel_that_scores_the_referent():
    features, kernel, bias, referent = _referent_scene()
    assert visualize.strongest_channel(features, "mean") == 0
    assert visualize.strongest_channel(features, "max") == 0
    assert visualize.strongest_channel(features, "score", kernel, bias) == 1
    assert visualize.strongest_channel(features, "correlation", kernel, bias) == 1
    for criterion in ("score", "correlation", "weighted"):
        heat = visualize.heat_map(features, (8, 8), criterion, kernel, bias)
        assert heat.min() == 0.0 and heat.max() == 1.0
        assert heat[referent].min() > 0.99 and heat[~referent].max() < 0.1
        assert visualize.hotter_inside(heat, referent)
    assert not visualize.hotter_inside(visualize.heat_map(features, (8, 8), "mean"), referent)
    # "score" shows the channel's contribution: with a negative weight on the chosen channel the
    # referent is still hot.
    flipped_features, flipped_kernel = -features, kernel.copy()
    flipped_kernel[1, 1, :, 0] *= -1.0
    heat = visualize.heat_map(flipped_features, (8, 8), "score", flipped_kernel, bias)
    assert heat[referent].min() > 0.99 and heat[~referent].max() < 0.1


def test_score_criterion_ignores_a_channel_that_scores_everywhere():
    features, kernel, bias, referent = _referent_scene()
    # Channel 3 adds 10 to every logit (the bias takes it back): on the predicted foreground it
    # contributes more than channel 1 (10 > 6), but it does not tell foreground from background.
    features = np.concatenate([features, np.ones((8, 8, 1))], axis=-1)
    kernel = np.concatenate([kernel, np.zeros((3, 3, 1, 1))], axis=2)
    kernel[1, 1, 3, 0] = 10.0
    assert visualize.strongest_channel(features, "score", kernel, bias - 10.0) == 1


def test_score_criterion_without_predicted_foreground_uses_the_largest_logit():
    features, kernel, _, referent = _referent_scene()
    bias = np.array([-10.0])  # every logit negative; the blob's is the largest
    kernel[1, 1, 2, 0] = 0.0
    features[0, 0, 2] = 50.0  # a channel that would win on the whole map's contribution mean
    kernel[1, 1, 2, 0] = 0.01
    assert visualize.strongest_channel(features, "score", kernel, bias) == 1


def test_score_contributions_sum_to_the_score_convolution():
    import keras

    rng = np.random.default_rng(4)
    features = rng.normal(size=(5, 7, 6)).astype(np.float32)
    layer = keras.layers.Conv2D(1, 3, padding="same")
    expected = np.asarray(layer(features[None]))[0, ..., 0]  # [5, 7]
    kernel, bias = layer.get_weights()

    class Model:
        score = layer

    got_kernel, got_bias = visualize.score_weights(Model())
    np.testing.assert_array_equal(got_kernel, kernel)
    contributions = visualize.score_contributions(features, got_kernel)
    assert contributions.shape == (5, 7, 6)
    np.testing.assert_allclose(contributions.sum(-1) + got_bias, expected, atol=1e-5)
    # Channel c alone is the convolution of the features with only channel c kept.
    only = np.zeros_like(features)
    only[..., 2] = features[..., 2]
    np.testing.assert_allclose(
        contributions[..., 2] + bias, np.asarray(layer(only[None]))[0, ..., 0], atol=1e-5
    )
    with pytest.raises(ValueError, match=r"score_kernel must have shape \[k, k, 6, 1\]"):
        visualize.score_contributions(features, kernel[:, :, :3])
    with pytest.raises(ValueError, match="has none"):
        visualize.score_weights(object())


def test_score_criteria_need_the_kernel():
    with pytest.raises(ValueError, match="pass score_kernel"):
        visualize.heat_map(np.ones((4, 4, 2)), (8, 8))
    with pytest.raises(ValueError, match="picks no single one"):
        visualize.strongest_channel(np.ones((4, 4, 2)), "weighted", np.ones((3, 3, 2, 1)))


def test_heat_map_window_crops_the_pad_before_resizing():
    # A 16 x 16 padded input whose image is the 8 rows 4..11 (a 2:1 image, padded top and bottom).
    values = np.random.default_rng(5).random((4, 4, 1))
    heat = visualize.heat_map(values, (10, 20), "max", window=(16, 4, 0, 8, 16))
    padded = visualize.resize_bilinear(values[..., 0], (16, 16))
    expected = visualize.resize_bilinear(padded[4:12], (10, 20))
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(heat, expected, atol=1e-6)
    with pytest.raises(ValueError, match="does not lie inside"):
        visualize.heat_map(values, (10, 20), "max", window=(16, 10, 0, 8, 16))


def test_hotter_inside_on_hand_made_maps():
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # 4 pixels inside, 12 outside
    heat = np.zeros((4, 4))
    heat[:2, :2] = 0.5  # inside mean 0.5 > outside mean 0
    assert visualize.hotter_inside(heat, mask)
    heat[2:, :] = 1.0  # outside mean 8 / 12 = 0.67 > 0.5
    assert not visualize.hotter_inside(heat, mask)
    assert not visualize.hotter_inside(np.ones((4, 4)), mask)  # equal is not hotter
    spike = np.zeros((4, 4))
    spike[3, 3] = 1.0  # the hottest pixel outside, but one pixel: outside mean 1 / 12
    spike[:2, :2] = 0.1  # inside mean 0.1 > 0.083
    assert visualize.hotter_inside(spike, mask)
    assert visualize.share_hotter_inside([heat, spike, spike, heat[::-1]], [mask] * 4) == 0.75
    with pytest.raises(ValueError, match="both inside and outside"):
        visualize.hotter_inside(heat, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="mask must be boolean"):
        visualize.hotter_inside(heat, mask.astype(np.uint8))
    with pytest.raises(ValueError, match="2 heat maps but 1 masks"):
        visualize.share_hotter_inside([heat, heat], [mask])
    with pytest.raises(ValueError, match="mask has shape"):
        visualize.hotter_inside(heat, mask[:3])


def test_heat_map_figure_has_the_expression_title_and_a_colour_bar():
    image = np.full((32, 48, 3), 255, np.uint8)  # white, so that only the map gives colour
    heat = np.zeros((32, 48))
    fig = visualize.heat_map_figure(image, heat, "the big blue triangle", iou=0.8125, dpi=50)
    assert fig._suptitle.get_text() == '"the big blue triangle"  IoU = 0.812'
    assert fig._suptitle.get_text() == visualize.expression_title("the big blue triangle", 0.8125)
    assert len(fig.axes) == 3
    bar = fig.axes[2]._colorbar
    assert bar.cmap.name == "jet" and (bar.norm.vmin, bar.norm.vmax) == (0.0, 1.0)
    assert bar.ax.get_ylabel() == "normalised activation"
    overlay = visualize.heat_map_overlay(image, heat)
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), overlay)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), image)

    # Rendered: the heat map is all "cold" (jet at 0, blue), so the red end of the scale appears
    # only in the colour bar, right of the heat-map panel.
    pixels = visualize.heat_map_image(image, heat, b"the big blue triangle", dpi=50)
    red = (pixels[..., 0] > 100) & (pixels[..., 1] < 40) & (pixels[..., 2] < 40)
    columns = np.flatnonzero(red.any(axis=0))
    assert red.sum() > 20
    assert columns.min() > 2 * 3.0 * 50  # past the two 3-inch panels
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 150)
    assert blue[:, : int(2 * 3.0 * 50)].sum() > 1000  # the cold overlay
    # Without a colour bar nothing red would be there at all.
    no_bar = visualize.figure_to_array(visualize.comparison_figure(image, None, heat, "x", dpi=50))
    assert not ((no_bar[..., 0] > 100) & (no_bar[..., 1] < 40) & (no_bar[..., 2] < 40)).any()
