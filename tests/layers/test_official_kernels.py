"""The official-form kernels: 2x2x2 pooling and the chunked attention's hand-written gradient."""

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers import attention_kernels, official_kernels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_matches_tensorflow_same_pooling(dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 3, 7, 4)).astype(np.float32)  # odd sizes: 'same' padding
    expected = tf.nn.max_pool3d(x, ksize=2, strides=2, padding="SAME")
    got = official_kernels.max_pool_2x2x2(
        tf.constant(x.astype(dtype)), attention_kernels.mask_value(dtype)
    )
    assert got.shape == (2, 3, 2, 4, 4)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)
