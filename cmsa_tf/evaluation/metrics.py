"""Referring segmentation metrics: overall IoU, mean IoU and prec@X (the authors' definitions).

For every expression the binary prediction (probability >= 0.5, at the original image size) is
compared with the ground-truth mask, giving an intersection I and a union U (pixel counts).

- overall IoU = sum(I) / sum(U) over the split (the number Table 1 of the paper reports);
- mean IoU    = mean over expressions of I / U;
- prec@X      = share of expressions with I / U >= X, for X in 0.5, 0.6, 0.7, 0.8, 0.9.

Empty masks. An expression whose prediction and ground truth are both empty has I = U = 0. Its
IoU counts as 1.0 (a perfect answer) for mean IoU and prec@X, and it adds 0 to both sums of
overall IoU. If every expression of a split is empty-empty (sum U == 0), overall IoU is 1.0. An
accumulator that has seen no expression reports 0.0 for every metric and count 0.

Pure NumPy; no TensorFlow needed.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _as_binary_mask(mask, name: str) -> np.ndarray:
    """Returns `mask` as a boolean array; raises if it holds values other than 0 and 1."""
    array = np.asarray(mask)
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(
            f"`{name}` must be a boolean or {{0, 1}} numeric array, got dtype {array.dtype}."
        )
    invalid = (array != 0) & (array != 1)
    if np.any(invalid):
        bad = np.unique(array[invalid])[:5]
        raise ValueError(
            f"`{name}` must be a binary mask (values 0 and 1 only), found values like "
            f"{bad.tolist()}. Threshold probabilities first (e.g. probability >= 0.5)."
        )
    return array != 0


def intersection_and_union(prediction, target) -> tuple[int, int]:
    """Pixel counts of intersection and union of two binary masks.

    Args:
        prediction: boolean or {0, 1} array, any shape.
        target: boolean or {0, 1} array of the same shape as `prediction`.

    Returns:
        `(I, U)` as Python ints.

    Raises:
        ValueError: if the shapes differ or a mask holds values other than 0 and 1.
    """
    prediction = _as_binary_mask(prediction, "prediction")
    target = _as_binary_mask(target, "target")
    if prediction.shape != target.shape:
        raise ValueError(
            f"`prediction` and `target` must have the same shape, got prediction shape "
            f"{prediction.shape} and target shape {target.shape}."
        )
    intersection = int(np.count_nonzero(prediction & target))
    union = int(np.count_nonzero(prediction | target))
    return intersection, union


def _iou(intersection: int, union: int) -> float:
    """I / U of one expression; 1.0 when both masks are empty (U == 0)."""
    return 1.0 if union == 0 else intersection / union


def _threshold_key(threshold: float) -> str:
    return f"prec@{threshold:g}"


class ReferringSegmentationMetrics:
    """Streaming accumulator of overall IoU, mean IoU and prec@X over a split.

    Keeps only running sums, so it can run over any number of expressions and masks of any
    size; accumulators from parallel workers combine with `merge`.

    Args:
        thresholds: IoU thresholds X of the prec@X metrics, each in (0, 1].

    Example:
    ```python
    metrics = ReferringSegmentationMetrics()
    for probability, target in predictions:   # per expression, original image size
        metrics.update(probability >= 0.5, target)
    metrics.result()  # {"overall_iou": ..., "mean_iou": ..., "prec@0.5": ..., "count": ...}
    ```

    Reference:
        Ye et al., "Cross-Modal Self-Attention Network for Referring Image Segmentation",
        CVPR 2019, Sec. 4 (evaluation metrics follow the official code).
    """

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS):
        thresholds = tuple(float(t) for t in thresholds)
        if not thresholds:
            raise ValueError("`thresholds` must hold at least one IoU threshold, got none.")
        for threshold in thresholds:
            if not (0.0 < threshold <= 1.0) or math.isnan(threshold):
                raise ValueError(
                    f"`thresholds` must lie in (0, 1], got {threshold} in {thresholds}."
                )
        if len(set(thresholds)) != len(thresholds):
            raise ValueError(f"`thresholds` must not repeat values, got {thresholds}.")
        self.thresholds = thresholds
        self.reset()

    def reset(self) -> None:
        """Forgets every expression seen so far."""
        self.count = 0
        self.sum_intersection = 0
        self.sum_union = 0
        self.sum_iou = 0.0
        self.num_correct = [0] * len(self.thresholds)

    def update(self, prediction, target) -> float:
        """Adds one expression.

        Args:
            prediction: binary mask (boolean or {0, 1}) of the expression, any size.
            target: ground-truth binary mask of the same shape.

        Returns:
            The expression's IoU (1.0 if both masks are empty).
        """
        intersection, union = intersection_and_union(prediction, target)
        iou = _iou(intersection, union)
        self.count += 1
        self.sum_intersection += intersection
        self.sum_union += union
        self.sum_iou += iou
        for index, threshold in enumerate(self.thresholds):
            if iou >= threshold:
                self.num_correct[index] += 1
        return iou

    def update_batch(self, predictions: Iterable, targets: Iterable) -> list[float]:
        """Adds several expressions.

        Args:
            predictions: sequence of binary masks (or a stacked `[N, H, W]` array).
            targets: sequence of ground-truth masks, paired with `predictions`.

        Returns:
            The IoU of each expression, in order.
        """
        predictions = list(predictions)
        targets = list(targets)
        if len(predictions) != len(targets):
            raise ValueError(
                f"`predictions` and `targets` must hold the same number of masks, got "
                f"{len(predictions)} predictions and {len(targets)} targets."
            )
        return [self.update(p, t) for p, t in zip(predictions, targets)]

    def merge(self, other: "ReferringSegmentationMetrics") -> "ReferringSegmentationMetrics":
        """Adds the expressions of `other` (e.g. another worker's accumulator); returns self."""
        if not isinstance(other, ReferringSegmentationMetrics):
            raise ValueError(
                f"`other` must be a ReferringSegmentationMetrics, got {type(other).__name__}."
            )
        if other.thresholds != self.thresholds:
            raise ValueError(
                f"Cannot merge accumulators with different thresholds: {self.thresholds} "
                f"and {other.thresholds}."
            )
        self.count += other.count
        self.sum_intersection += other.sum_intersection
        self.sum_union += other.sum_union
        self.sum_iou += other.sum_iou
        self.num_correct = [a + b for a, b in zip(self.num_correct, other.num_correct)]
        return self

    def result(self) -> dict:
        """Metrics so far, as fractions in [0, 1].

        Returns:
            `{"overall_iou", "mean_iou", "prec@0.5", ..., "count"}`. See the module docstring
            for empty masks and for an accumulator without expressions.
        """
        results = {}
        if self.count == 0:
            results["overall_iou"] = 0.0
            results["mean_iou"] = 0.0
        else:
            results["overall_iou"] = (
                1.0 if self.sum_union == 0 else self.sum_intersection / self.sum_union
            )
            results["mean_iou"] = self.sum_iou / self.count
        for threshold, correct in zip(self.thresholds, self.num_correct):
            results[_threshold_key(threshold)] = correct / self.count if self.count else 0.0
        results["count"] = self.count
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(thresholds={self.thresholds}, count={self.count})"


def to_markdown(results_by_name: Mapping[str, Mapping], name_header: str = "Split") -> str:
    """Markdown table of `result()` dicts, metrics as percentages with 2 decimals.

    Args:
        results_by_name: row name (e.g. "val", "val + CRF") -> dict from `result()`.
        name_header: header of the first column.

    Returns:
        The table, one row a line, ending with a newline. The prec@X columns are those of the
        first row; every row must have them.
    """
    if not results_by_name:
        raise ValueError("`results_by_name` must hold at least one row, got an empty mapping.")
    first = next(iter(results_by_name.values()))
    metric_keys = ["overall_iou", "mean_iou"] + [k for k in first if k.startswith("prec@")]
    headers = [name_header, "Overall IoU", "Mean IoU"] + metric_keys[2:]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join([" --- "] + [" ---: "] * (len(headers) - 1)) + "|",
    ]
    for name, results in results_by_name.items():
        missing = [k for k in metric_keys if k not in results]
        if missing:
            raise ValueError(f"`results_by_name[{name!r}]` lacks the metrics {missing}.")
        cells = [str(name)] + [f"{100.0 * float(results[k]):.2f}" for k in metric_keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
