"""benchmarks/resolution_ceiling.py: the best score map of a stride, on masks drawn by hand."""

import numpy as np
import tensorflow as tf

from tests.helpers import load_benchmark


def _mask(array):
    return tf.constant(np.asarray(array, np.float32)[None, :, :, None])  # [1, S, S, 1]


def _disk(size, radius):
    y, x = np.mgrid[:size, :size] + 0.5
    return (x - size / 2) ** 2 + (y - size / 2) ** 2 <= radius**2


def test_a_square_of_whole_cells_loses_only_its_corners():
    ceiling = load_benchmark("resolution_ceiling")
    mask = np.zeros((32, 32))
    mask[8:24, 8:24] = 1  # 2x2 cells of 8 pixels, 4x4 of 4 pixels
    overlaps = {stride: ceiling.best_map_overlap(_mask(mask), stride) for stride in (4, 8)}
    # The upsampled coverage crosses 0.5 on the square's edges, so nothing outside it is
    # predicted (union = its 256 pixels); the corners are rounded off, by a triangle of 1
    # pixel at stride 4 and of 6 pixels at stride 8.
    assert overlaps == {4: (256.0 - 4, 256.0), 8: (256.0 - 4 * 6, 256.0)}


def test_a_finer_stride_fits_a_small_disk_better():
    ceiling = load_benchmark("resolution_ceiling")
    mask = _mask(_disk(64, 7))
    ious = {}
    for stride in (16, 8, 4, 1):
        intersection, union = ceiling.best_map_overlap(mask, stride)
        assert 0 <= intersection <= union
        ious[stride] = intersection / union
    assert ious[1] == 1.0  # stride 1: the map is the mask
    assert ious[16] < ious[8] < ious[4] <= ious[1]
