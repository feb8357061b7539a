"""Tests of cmsa_tf/data/map_back.py: the authors' map back (`resize_and_crop`) in TF ops.

The exact map back (`unpad_and_resize`) is tested with its forward half in test_preprocess.py
(round trips) and against evaluation in tests/export/test_map_back.py.
"""

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import map_back

# ---------------------------------------------------------------------------------------------
# The authors' map-back (`resize_and_crop`), in the graph.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "height,width", [(23, 37), (37, 23), (5, 61), (61, 5), (16, 16), (1, 1), (49, 48)]
)
def test_authors_map_back_in_a_graph_equals_their_resize_and_crop(height, width):
    from tests.evaluation.test_protocols import np_resize_and_crop

    rng = np.random.default_rng(height * 100 + width)
    padded = rng.random((16, 16, 2))
    graph = tf.function(
        map_back.authors_map_back,
        input_signature=[
            tf.TensorSpec([None, None, 2], tf.float64),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.int32),
        ],
    )
    got = graph(tf.constant(padded), height, width).numpy()
    assert got.shape == (height, width, 2) and got.dtype == np.float64
    for channel in range(2):
        want = np_resize_and_crop(padded[..., channel], height, width)
        np.testing.assert_allclose(got[..., channel], want, rtol=0, atol=1e-12)


def test_authors_map_back_batch_fills_each_top_left_corner():
    rng = np.random.default_rng(3)
    maps = rng.random((2, 16, 16, 1))
    info = {"orig_height": tf.constant([23, 9]), "orig_width": tf.constant([11, 30])}
    batch = map_back.authors_map_back_batch(maps, info).numpy()
    assert batch.shape == (2, 23, 30, 1)
    for i, (h, w) in enumerate([(23, 11), (9, 30)]):
        one = map_back.authors_map_back(maps[i], h, w).numpy()
        np.testing.assert_array_equal(batch[i, :h, :w], one)
        assert not batch[i, h:].any() and not batch[i, :, w:].any()


def test_authors_map_back_refuses_a_map_without_channels():
    with pytest.raises(ValueError, match="padded_map"):
        map_back.authors_map_back(tf.zeros([4, 4]), 3, 3)
