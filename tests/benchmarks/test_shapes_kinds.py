"""benchmarks/shapes_kinds.py: per-kind rows by hand, and its "all" row equal to the evaluation."""

import math
import os

import pytest

from cmsa_tf.evaluation.evaluator import evaluate_split
from cmsa_tf.models.restore import build_and_restore
from cmsa_tf.training import train_and_evaluate
from tests.helpers import load_benchmark


def _module():
    return load_benchmark("shapes_kinds")


def test_kind_rows_by_hand():
    kinds = _module()
    kind_of = {1: "ordinal", 2: "ordinal", 3: "attribute", 4: "attribute"}
    # IoUs: 0.1 (missed), 0.8, 1.0 (both masks empty), 0.5.
    rows = kinds.kind_rows([(1, 1, 10), (2, 8, 10), (3, 0, 0), (4, 5, 10)], kind_of)
    assert rows["ordinal"] == {
        "expressions": 2,
        "overall_iou": pytest.approx(9 / 20),
        "missed": pytest.approx(0.5),
        "rest_mean_iou": pytest.approx(0.8),
    }
    assert rows["attribute"]["overall_iou"] == pytest.approx(5 / 10)
    assert rows["attribute"]["missed"] == 0.0
    assert rows["attribute"]["rest_mean_iou"] == pytest.approx(0.75)
    assert rows["all"]["expressions"] == 4
    assert rows["all"]["overall_iou"] == pytest.approx(14 / 30)
    assert rows["all"]["missed"] == pytest.approx(0.25)
    assert rows["all"]["rest_mean_iou"] == pytest.approx((0.8 + 1.0 + 0.5) / 3)
    table = kinds.markdown_table(rows, "val").splitlines()
    assert table[2] == "| attribute | 2 | 50.0 | 0.0% | 75.0 |"
    assert table[3] == "| ordinal | 2 | 45.0 | 50.0% | 80.0 |"
    assert table[-1].startswith("| all | 4 | 46.7 | 25.0% |")
    # Every expression missed: no mean of the rest.
    assert math.isnan(kinds.kind_rows([(1, 0, 5)], kind_of)["all"]["rest_mean_iou"])


def test_unknown_sentence_and_missing_scenes_are_clear_errors(tmp_path):
    kinds = _module()
    with pytest.raises(KeyError, match="Sentence 9 is not in the scenes file"):
        kinds.kind_rows([(9, 1, 2)], {1: "ordinal"})
    with pytest.raises(FileNotFoundError, match="No ShapesRef scenes file"):
        kinds.expression_kinds(str(tmp_path))


@pytest.mark.slow
def test_all_row_equals_the_evaluation(tmp_path, tiny_shapes_tfrecords, tiny_config):
    kinds = _module()
    config = tiny_config(tiny_shapes_tfrecords)
    config.train.steps = 2
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir, progress=False)
    kind_of = kinds.expression_kinds(os.path.dirname(tiny_shapes_tfrecords))
    rows = kinds.kind_rows(kinds.score_workdir(workdir, "val"), kind_of)
    model, _, _ = build_and_restore(config, workdir=workdir)
    reference = evaluate_split(model, config, "val", progress=False)["val"]
    assert rows["all"]["expressions"] == reference["count"]
    assert rows["all"]["overall_iou"] == pytest.approx(reference["overall_iou"], abs=1e-12)
    assert sum(r["expressions"] for k, r in rows.items() if k != "all") == reference["count"]
    assert set(rows) - {"all"} <= {"attribute", "location", "ordinal", "relation"}
