"""Eq. 7 against a NumPy reference."""

import numpy as np
import pytest

from cmsa_tf.losses import SegmentationLoss, sigmoid_cross_entropy


def _reference(mask, logits):
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return -(mask * np.log(p) + (1 - mask) * np.log(1 - p))


def test_sum_and_mean_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 4, 1)).astype("float32") * 4
    mask = (rng.random((3, 5, 4, 1)) > 0.5).astype("float32")
    ref = _reference(mask, logits)
    np.testing.assert_allclose(
        sigmoid_cross_entropy(mask, logits, "sum"), ref.sum(axis=(1, 2, 3)), rtol=1e-5
    )
    np.testing.assert_allclose(
        sigmoid_cross_entropy(mask, logits, "mean"), ref.mean(axis=(1, 2, 3)), rtol=1e-5
    )
    np.testing.assert_allclose(
        float(SegmentationLoss("sum")(mask, logits)), ref.sum(axis=(1, 2, 3)).mean(), rtol=1e-5
    )


def test_extreme_logits_are_finite():
    logits = np.array([[[[80.0]], [[-80.0]]]], "float32")
    mask = np.array([[[[0.0]], [[1.0]]]], "float32")
    np.testing.assert_allclose(sigmoid_cross_entropy(mask, logits, "sum"), [160.0], rtol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="pixel_reduction"):
        SegmentationLoss("median")
    with pytest.raises(ValueError, match="does not match"):
        sigmoid_cross_entropy(np.zeros((1, 4, 4, 1)), np.zeros((1, 8, 8, 1)))
    config = SegmentationLoss("mean").get_config()
    assert SegmentationLoss.from_config(config).pixel_reduction == "mean"
