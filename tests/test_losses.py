"""Eq. 7 against a NumPy reference."""

import numpy as np
import pytest

from cmsa_tf.losses import (
    SegmentationLoss,
    lovasz_hinge_loss,
    segmentation_loss,
    sigmoid_cross_entropy,
    soft_dice_loss,
)


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


def _dice_reference(mask, logits, smooth=1.0):
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    axes = (1, 2, 3)
    return 1 - (2 * (p * mask).sum(axes) + smooth) / (p.sum(axes) + mask.sum(axes) + smooth)


def _lovasz_reference(mask, logits):
    """Berman et al.'s Alg. 1 for one example at a time, in plain NumPy."""
    out = []
    for m, x in zip(mask.reshape(len(mask), -1), logits.reshape(len(logits), -1)):
        errors = 1.0 - x.astype(np.float64) * (2 * m - 1)
        order = np.argsort(-errors, kind="stable")
        e, g = errors[order], m[order]
        intersection = g.sum() - np.cumsum(g)
        union = g.sum() + np.cumsum(1 - g)
        jaccard = 1 - intersection / union
        jaccard[1:] = jaccard[1:] - jaccard[:-1].copy()
        out.append(np.dot(np.maximum(e, 0), jaccard))
    return np.array(out)


def test_region_losses_match_numpy():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 6, 5, 1)).astype("float32") * 3
    mask = (rng.random((3, 6, 5, 1)) > 0.6).astype("float32")
    mask[2] = 0.0  # an empty mask
    np.testing.assert_allclose(soft_dice_loss(mask, logits), _dice_reference(mask, logits), 1e-5)
    np.testing.assert_allclose(
        lovasz_hinge_loss(mask, logits), _lovasz_reference(mask, logits), rtol=1e-5, atol=1e-6
    )
    bce = sigmoid_cross_entropy(mask, logits, "mean")
    for region, reference in (("dice", _dice_reference), ("lovasz", _lovasz_reference)):
        np.testing.assert_allclose(
            segmentation_loss(mask, logits, "mean", region_loss=region, region_weight=0.5),
            bce + 0.5 * reference(mask, logits),
            rtol=1e-5,
            atol=1e-6,
        )
    np.testing.assert_array_equal(segmentation_loss(mask, logits, "mean"), bce)


def test_region_losses_vanish_on_a_confident_correct_prediction():
    mask = np.zeros((1, 4, 4, 1), "float32")
    mask[0, 1:3, 1:3] = 1.0
    logits = (2 * mask - 1) * 20.0
    np.testing.assert_allclose(lovasz_hinge_loss(mask, logits), [0.0], atol=1e-6)
    np.testing.assert_allclose(soft_dice_loss(mask, logits), [0.0], atol=1e-6)
    # A wrong one costs: the Lovasz hinge grows with the error.
    assert float(lovasz_hinge_loss(mask, -logits)[0]) > 1.0
    with pytest.raises(ValueError, match="region_loss must be one of"):
        segmentation_loss(mask, logits, region_loss="focal")
