"""Eq. 7: the binary cross-entropy between the predicted map and the ground-truth mask, and
optional region terms beyond the paper (soft Dice, Lovasz hinge) that target IoU directly.

See docs/design.md, "Training recipe" (its "Region losses" paragraph).
"""

import keras
from keras import ops

PIXEL_REDUCTIONS = ("sum", "mean")
# `config.train.region_loss`: "none" (the paper: Eq. 7 alone), "dice" or "lovasz".
REGION_LOSSES = ("none", "dice", "lovasz")


def sigmoid_cross_entropy(mask, logits, pixel_reduction: str = "sum"):
    """Per-example binary cross-entropy of logits against a {0, 1} mask.

    Args:
        mask: float [B, H, W, 1] ground truth in {0, 1}.
        logits: float [B, H, W, 1] pre-sigmoid scores.
        pixel_reduction: `"sum"` over pixels (the authors' code) or `"mean"`.

    Returns:
        float32 [B]: one loss per example (callers average over the batch / replicas).
    """
    if pixel_reduction not in PIXEL_REDUCTIONS:
        raise ValueError(
            f"pixel_reduction must be one of {PIXEL_REDUCTIONS}, got {pixel_reduction!r}."
        )
    logits = ops.cast(logits, "float32")
    mask = ops.cast(mask, "float32")
    if tuple(mask.shape[1:]) != tuple(logits.shape[1:]):
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match logits shape {tuple(logits.shape)}."
        )
    # Numerically stable: max(x, 0) - x * z + log(1 + exp(-|x|)).
    per_pixel = ops.relu(logits) - logits * mask + ops.log1p(ops.exp(-ops.abs(logits)))
    axes = tuple(range(1, len(per_pixel.shape)))
    if pixel_reduction == "sum":
        return ops.sum(per_pixel, axis=axes)
    return ops.mean(per_pixel, axis=axes)


@keras.saving.register_keras_serializable(package="cmsa_tf")
class SegmentationLoss(keras.losses.Loss):
    """Binary cross-entropy of Eq. 7, summed (authors) or averaged over pixels, mean over the batch.

    Args:
        pixel_reduction: `"sum"` (the authors' code) or `"mean"`.

    Example:
    >>> loss = SegmentationLoss(pixel_reduction="mean")
    >>> value = loss(mask, logits)  # mask, logits: [B, H, W, 1]
    """

    def __init__(self, pixel_reduction: str = "sum", name: str = "segmentation_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if pixel_reduction not in PIXEL_REDUCTIONS:
            raise ValueError(
                f"pixel_reduction must be one of {PIXEL_REDUCTIONS}, got {pixel_reduction!r}."
            )
        self.pixel_reduction = pixel_reduction

    def call(self, y_true, y_pred):
        return sigmoid_cross_entropy(y_true, y_pred, self.pixel_reduction)

    def get_config(self):
        config = super().get_config()
        config.update(pixel_reduction=self.pixel_reduction)
        return config


def _flat(mask, logits):
    logits = ops.cast(logits, "float32")
    mask = ops.cast(mask, "float32")
    if tuple(mask.shape[1:]) != tuple(logits.shape[1:]):
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match logits shape {tuple(logits.shape)}."
        )
    batch = ops.shape(logits)[0]
    return ops.reshape(mask, (batch, -1)), ops.reshape(logits, (batch, -1))  # [B, N]


def soft_dice_loss(mask, logits, smooth: float = 1.0):
    """Per-example soft Dice loss `1 - (2 sum(p m) + s) / (sum p + sum m + s)`, `p = sigmoid`.

    Args:
        mask: float [B, H, W, 1] ground truth in {0, 1}.
        logits: float [B, H, W, 1] pre-sigmoid scores.
        smooth: `s`, keeps an empty mask with an empty prediction at loss 0.

    Returns:
        float32 [B] in [0, 1].
    """
    mask, logits = _flat(mask, logits)  # [B, N]
    probabilities = ops.sigmoid(logits)
    intersection = ops.sum(probabilities * mask, axis=1)
    total = ops.sum(probabilities, axis=1) + ops.sum(mask, axis=1)
    return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


def lovasz_hinge_loss(mask, logits):
    """Per-example Lovasz hinge: the Lovasz extension of the Jaccard loss over hinge errors.

    Errors `1 - logit * sign` (sign +1 on the mask, -1 off it) are sorted in decreasing order and
    weighted by the gradient of the Jaccard loss along that order (Berman et al., "The
    Lovasz-Softmax loss", CVPR 2018, Alg. 1), with ReLU on the errors.

    Args:
        mask: float [B, H, W, 1] ground truth in {0, 1}.
        logits: float [B, H, W, 1] pre-sigmoid scores.

    Returns:
        float32 [B].
    """
    mask, logits = _flat(mask, logits)  # [B, N]
    signs = 2.0 * mask - 1.0
    errors = 1.0 - logits * signs
    order = ops.flip(ops.argsort(errors, axis=1), axis=1)  # decreasing errors
    errors_sorted = ops.take_along_axis(errors, order, axis=1)
    mask_sorted = ops.take_along_axis(mask, order, axis=1)
    positives = ops.sum(mask_sorted, axis=1, keepdims=True)  # [B, 1]
    intersection = positives - ops.cumsum(mask_sorted, axis=1)
    union = positives + ops.cumsum(1.0 - mask_sorted, axis=1)
    jaccard = 1.0 - intersection / union  # [B, N], union >= 1
    gradient = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=1)
    return ops.sum(ops.relu(errors_sorted) * ops.stop_gradient(gradient), axis=1)


def check_region_loss(region_loss: str) -> None:
    if region_loss not in REGION_LOSSES:
        raise ValueError(f"region_loss must be one of {REGION_LOSSES}, got {region_loss!r}.")


def segmentation_loss(
    mask,
    logits,
    pixel_reduction: str = "sum",
    region_loss: str = "none",
    region_weight: float = 1.0,
):
    """Per-example training loss: Eq. 7 plus `region_weight` x the region term, if any.

    Args:
        mask, logits: float [B, H, W, 1].
        pixel_reduction: of the cross-entropy, as `sigmoid_cross_entropy`.
        region_loss: "none" (Eq. 7 alone, the paper), "dice" (`soft_dice_loss`) or "lovasz"
            (`lovasz_hinge_loss`).
        region_weight: the region term's factor.

    Returns:
        float32 [B].
    """
    check_region_loss(region_loss)
    loss = sigmoid_cross_entropy(mask, logits, pixel_reduction)
    if region_loss == "dice":
        loss = loss + region_weight * soft_dice_loss(mask, logits)
    elif region_loss == "lovasz":
        loss = loss + region_weight * lovasz_hinge_loss(mask, logits)
    return loss
