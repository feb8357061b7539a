"""Tests for cmsa_tf.evaluation.metrics against hand-computed masks."""

import numpy as np
import pytest

from cmsa_tf.evaluation.metrics import (
    ReferringSegmentationMetrics,
    intersection_and_union,
    to_markdown,
)

PRED_3X3 = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]])
TARGET_3X3 = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]])


def _masks(intersection, union):
    """1-D prediction/target masks of length `union` with the given I and U (target = all)."""
    prediction = np.zeros(union, bool)
    prediction[:intersection] = True
    return prediction, np.ones(union, bool)


def test_intersection_and_union_hand_computed_3x3():
    # Overlap at (0,0), (1,1); union adds (0,1), (1,0), (2,2).
    assert intersection_and_union(PRED_3X3, TARGET_3X3) == (2, 5)
    assert intersection_and_union(TARGET_3X3, PRED_3X3) == (2, 5)


def test_intersection_and_union_hand_computed_4x4_and_dtypes():
    target = np.zeros((4, 4), bool)
    target[1:3, 1:3] = True  # 4 pixels
    prediction = np.zeros((4, 4), bool)
    prediction[1:4, 2:4] = True  # 6 pixels, overlap (1,2), (2,2)
    expected = (2, 8)
    assert intersection_and_union(prediction, target) == expected
    assert intersection_and_union(prediction.astype(np.uint8), target.astype(np.int64)) == expected
    assert intersection_and_union(prediction.astype(np.float32), target.tolist()) == expected
    i, u = intersection_and_union(prediction, target)
    assert type(i) is int and type(u) is int


def test_intersection_and_union_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"prediction shape \(3, 3\).*target shape \(4, 4\)"):
        intersection_and_union(np.zeros((3, 3)), np.zeros((4, 4)))


@pytest.mark.parametrize("bad", [np.full((3, 3), 0.7), np.full((3, 3), 2), np.full((3, 3), np.nan)])
def test_non_binary_masks_raise(bad):
    with pytest.raises(ValueError, match="binary mask"):
        intersection_and_union(bad, TARGET_3X3)
    with pytest.raises(ValueError, match="`target`"):
        intersection_and_union(TARGET_3X3, bad)


def test_string_masks_raise():
    with pytest.raises(ValueError, match="dtype"):
        intersection_and_union(np.array(["a", "b"]), np.array([1, 0]))


def test_empty_ground_truth_with_prediction_scores_zero():
    metrics = ReferringSegmentationMetrics()
    iou = metrics.update(np.eye(3), np.zeros((3, 3)))
    assert iou == 0.0
    result = metrics.result()
    assert result["overall_iou"] == 0.0
    assert result["mean_iou"] == 0.0
    assert all(result[f"prec@{x}"] == 0.0 for x in (0.5, 0.6, 0.7, 0.8, 0.9))
    assert metrics.sum_union == 3 and metrics.sum_intersection == 0


def test_both_empty_counts_as_perfect_but_not_in_overall_sums():
    metrics = ReferringSegmentationMetrics()
    assert metrics.update(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
    assert metrics.update(PRED_3X3, TARGET_3X3) == pytest.approx(0.4)
    result = metrics.result()
    # Overall IoU sees only the 3x3 expression: 2 / 5.
    assert result["overall_iou"] == pytest.approx(0.4)
    assert result["mean_iou"] == pytest.approx((1.0 + 0.4) / 2)
    assert result["prec@0.5"] == 0.5
    assert result["prec@0.9"] == 0.5
    assert result["count"] == 2


def test_split_of_only_empty_expressions_and_empty_accumulator():
    metrics = ReferringSegmentationMetrics()
    empty = metrics.result()
    assert empty["count"] == 0
    assert empty["overall_iou"] == 0.0 and empty["mean_iou"] == 0.0 and empty["prec@0.5"] == 0.0
    metrics.update(np.zeros((2, 2)), np.zeros((2, 2)))
    metrics.update(np.zeros((5, 3)), np.zeros((5, 3)))
    result = metrics.result()
    assert result["overall_iou"] == 1.0
    assert result["mean_iou"] == 1.0
    assert result["prec@0.9"] == 1.0
    assert result["count"] == 2


def test_overall_and_mean_iou_differ_on_two_expressions():
    metrics = ReferringSegmentationMetrics()
    # Small object, poor answer: I = 1, U = 4 (IoU 0.25).
    small_pred = np.zeros((4, 4), bool)
    small_pred[0, 0:4] = True
    small_target = np.zeros((4, 4), bool)
    small_target[0, 0] = True
    # Large object, perfect answer: I = U = 8 (IoU 1.0).
    large = np.zeros((4, 4), bool)
    large[2:4, :] = True
    ious = metrics.update_batch([small_pred, large], [small_target, large])
    assert ious == [0.25, 1.0]
    result = metrics.result()
    assert result["overall_iou"] == pytest.approx(9 / 12)
    assert result["mean_iou"] == pytest.approx(0.625)
    assert result["prec@0.5"] == 0.5
    assert result["count"] == 2


@pytest.mark.parametrize(
    "threshold, intersection, union",
    [(0.5, 2, 4), (0.6, 3, 5), (0.7, 7, 10), (0.8, 4, 5), (0.9, 9, 10)],
)
def test_iou_exactly_at_threshold_counts(threshold, intersection, union):
    metrics = ReferringSegmentationMetrics()
    metrics.update(*_masks(intersection, union))
    metrics.update(*_masks(intersection * 10 - 1, union * 10))  # just below X
    result = metrics.result()
    assert result[f"prec@{threshold}"] == 0.5
    for other in (0.5, 0.6, 0.7, 0.8, 0.9):
        expected = 1.0 if other < threshold else 0.0
        if other != threshold:
            assert result[f"prec@{other}"] == expected, other


def _random_masks(rng, n):
    pairs = []
    for _ in range(n):
        shape = tuple(rng.integers(1, 9, size=2))
        density = rng.uniform(0.0, 1.0)
        pairs.append((rng.uniform(size=shape) < density, rng.uniform(size=shape) < 0.5))
    pairs.append((np.zeros((3, 3)), np.zeros((3, 3))))
    pairs.append((np.ones((2, 2)), np.zeros((2, 2))))
    return pairs


def test_merge_equals_one_accumulator_over_everything():
    rng = np.random.default_rng(0)
    pairs = _random_masks(rng, 30)
    whole = ReferringSegmentationMetrics()
    for prediction, target in pairs:
        whole.update(prediction, target)
    workers = [ReferringSegmentationMetrics() for _ in range(3)]
    for index, (prediction, target) in enumerate(pairs):
        workers[index % 3].update(prediction, target)
    merged = ReferringSegmentationMetrics()
    assert merged.merge(workers[0]) is merged
    merged.merge(workers[1]).merge(workers[2])
    expected = whole.result()
    got = merged.result()
    assert got.keys() == expected.keys()
    assert got["count"] == expected["count"] == 32
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    # The accumulators really saw different data.
    assert workers[0].result()["overall_iou"] != expected["overall_iou"]


def test_merge_rejects_different_thresholds_and_types():
    with pytest.raises(ValueError, match="different thresholds"):
        ReferringSegmentationMetrics().merge(ReferringSegmentationMetrics(thresholds=(0.5,)))
    with pytest.raises(ValueError, match="`other`"):
        ReferringSegmentationMetrics().merge({"count": 1})


def test_update_batch_matches_update_and_checks_lengths():
    rng = np.random.default_rng(1)
    predictions = rng.uniform(size=(5, 6, 7)) < 0.5
    targets = rng.uniform(size=(5, 6, 7)) < 0.5
    batched = ReferringSegmentationMetrics()
    batched.update_batch(predictions, targets)
    single = ReferringSegmentationMetrics()
    for prediction, target in zip(predictions, targets):
        single.update(prediction, target)
    assert batched.result() == single.result()
    assert batched.result()["count"] == 5
    with pytest.raises(ValueError, match="5 predictions and 4 targets"):
        batched.update_batch(predictions, targets[:4])


def test_reset_forgets_everything():
    metrics = ReferringSegmentationMetrics()
    metrics.update(PRED_3X3, TARGET_3X3)
    metrics.reset()
    assert metrics.result() == ReferringSegmentationMetrics().result()
    metrics.update(TARGET_3X3, TARGET_3X3)
    assert metrics.result()["overall_iou"] == 1.0


def test_custom_thresholds_and_validation():
    metrics = ReferringSegmentationMetrics(thresholds=(0.25, 0.75))
    metrics.update(PRED_3X3, TARGET_3X3)  # IoU 0.4
    result = metrics.result()
    assert result["prec@0.25"] == 1.0 and result["prec@0.75"] == 0.0
    assert "prec@0.5" not in result
    for bad in [(), (0.0,), (1.5,), (0.5, 0.5)]:
        with pytest.raises(ValueError, match="`thresholds`"):
            ReferringSegmentationMetrics(thresholds=bad)


def test_to_markdown_table():
    val = {
        "overall_iou": 0.58321,
        "mean_iou": 0.6,
        "prec@0.5": 0.5,
        "prec@0.6": 0.4,
        "prec@0.7": 0.3,
        "prec@0.8": 0.2,
        "prec@0.9": 0.0512345,
        "count": 10,
    }
    crf = dict(val, overall_iou=0.6, mean_iou=1.0)
    table = to_markdown({"val": val, "val + CRF": crf})
    lines = table.splitlines()
    assert lines[0] == (
        "| Split | Overall IoU | Mean IoU | prec@0.5 | prec@0.6 | prec@0.7 | prec@0.8 | prec@0.9 |"
    )
    assert lines[1].count("---") == 8
    assert lines[2] == "| val | 58.32 | 60.00 | 50.00 | 40.00 | 30.00 | 20.00 | 5.12 |"
    assert lines[3] == "| val + CRF | 60.00 | 100.00 | 50.00 | 40.00 | 30.00 | 20.00 | 5.12 |"
    assert len(lines) == 4 and table.endswith("\n")


def test_to_markdown_from_results_and_errors():
    metrics = ReferringSegmentationMetrics()
    metrics.update(PRED_3X3, TARGET_3X3)
    table = to_markdown({"test": metrics.result()}, name_header="Set")
    assert table.splitlines()[0].startswith("| Set | Overall IoU |")
    assert table.splitlines()[2] == "| test | 40.00 | 40.00 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 |"
    with pytest.raises(ValueError, match="empty"):
        to_markdown({})
    with pytest.raises(ValueError, match=r"'b'.*prec@0.5"):
        to_markdown({"a": metrics.result(), "b": {"overall_iou": 1.0, "mean_iou": 1.0}})
