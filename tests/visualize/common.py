"""Test pictures shared by the visualize tests."""

import numpy as np


def random_image(height=32, width=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def box_mask(height=32, width=48):
    mask = np.zeros((height, width), bool)
    mask[8:20, 10:30] = True
    return mask
