"""Evaluation: the authors' metrics (overall IoU, mean IoU, prec@X) and DenseCRF refinement.

`cmsa_tf.evaluation.evaluator` evaluates a model on a split (`evaluate_split`); the command line
over it is `python -m cmsa_tf.evaluate`.
"""

from cmsa_tf.evaluation.dense_crf import dense_crf
from cmsa_tf.evaluation.metrics import (
    DEFAULT_THRESHOLDS,
    ReferringSegmentationMetrics,
    intersection_and_union,
    to_markdown,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ReferringSegmentationMetrics",
    "dense_crf",
    "intersection_and_union",
    "to_markdown",
]
