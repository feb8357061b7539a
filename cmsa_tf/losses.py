"""Eq. 7: the binary cross-entropy between the predicted map and the ground-truth mask.

See docs/design.md, "Training recipe".
"""

import keras
from keras import ops

PIXEL_REDUCTIONS = ("sum", "mean")


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
