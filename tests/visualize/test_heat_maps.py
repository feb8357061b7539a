"""The Fig. 5 heat maps: the strongest channel, the bilinear resize, the overlay."""

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
    np.testing.assert_allclose(visualize.resize_bilinear(ramp, (1, 4)), [[0.0, 0.25, 0.75, 1.0]])
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
