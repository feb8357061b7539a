"""Rendering figures to pixels and writing PNGs."""

import numpy as np
import pytest
from PIL import Image

from cmsa_tf import visualize
from tests.visualize.common import box_mask, random_image


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


def test_save_png_round_trip(tmp_path):
    image = random_image(9, 11)
    path = visualize.save_png(tmp_path / "a" / "b" / "image.png", image)
    assert path.exists()
    with Image.open(path) as loaded:
        assert loaded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(loaded), image)
    mask_path = visualize.save_png(str(tmp_path / "mask.png"), box_mask(9, 40))
    with Image.open(mask_path) as loaded:
        np.testing.assert_array_equal(np.asarray(loaded), box_mask(9, 40).astype(np.uint8) * 255)
    with pytest.raises(ValueError, match="dtype uint8"):
        visualize.save_png(tmp_path / "x.png", image.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        visualize.save_png(tmp_path / "x.png", np.zeros((4, 4, 2), np.uint8))
