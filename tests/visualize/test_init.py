"""The package's face: no TensorFlow at import, `to_uint8_rgb` re-exported from preprocessing."""

import subprocess
import sys

import numpy as np
import pytest

from cmsa_tf import visualize


def test_to_uint8_rgb_inverts_the_normalisation():
    from cmsa_tf.data import preprocess

    rgb = np.array([[[200, 100, 10], [0, 255, 37]]], np.uint8)  # [1, 2, 3]
    normalised = rgb[..., ::-1].astype(np.float32) - np.array(preprocess.MEAN_BGR, np.float32)
    np.testing.assert_array_equal(visualize.to_uint8_rgb(normalised), rgb)
    # Known pixel by hand: BGR (0, 0, 0) after mean subtraction is the mean; pad (-mean) is black.
    mean = np.array([104.00699, 116.66877, 122.67891], np.float32)
    np.testing.assert_array_equal(visualize.to_uint8_rgb(np.zeros((1, 1, 3))), [[[123, 117, 104]]])
    np.testing.assert_array_equal(visualize.to_uint8_rgb(-mean[None, None]), [[[0, 0, 0]]])
    # Same as the pipeline's TF version, batches included.
    batch = np.random.default_rng(2).uniform(-140.0, 160.0, (2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        visualize.to_uint8_rgb(batch), preprocess.denormalize_image(batch).numpy()
    )
    with pytest.raises(ValueError, match="3 \\(BGR\\) channels"):
        visualize.to_uint8_rgb(np.zeros((2, 2, 4)))


def test_module_import_does_not_import_tensorflow():
    code = "import sys, cmsa_tf.visualize; print('tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
