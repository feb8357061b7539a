"""The learning curve file, its table, its PNG and the demo's timing table."""

import json

import numpy as np
import pytest
from PIL import Image

from cmsa_tf.visualize import learning_curve


def _write(workdir):
    path = learning_curve.curve_path(str(workdir))
    for step, iou in ((300, 0.2), (600, 0.4), (300, 0.25)):  # step 300 evaluated again
        learning_curve.append_point(
            path, step, "val", {"overall_iou": iou, "mean_iou": iou + 0.01, "count": 300}
        )
    return path


def test_points_round_trip_by_step(tmp_path):
    path = _write(tmp_path)
    points = learning_curve.read_curve(path)
    assert [p["step"] for p in points] == [300, 600]
    assert [p["overall_iou"] for p in points] == [0.25, 0.4]  # the later point of step 300
    table = learning_curve.curve_table(points).splitlines()
    assert table[2].startswith("| 300 | val | 25.00 | 26.00 | 300 |")
    assert table[3].startswith("| 600 | val | 40.00 | 41.00 | 300 |")


def test_main_prints_the_table_writes_the_png_and_the_timing(tmp_path, capsys):
    _write(tmp_path)
    timing = tmp_path / "timing.txt"
    timing.write_text("100 start\n160 data\n460 train\n")
    learning_curve.main(["--workdir", str(tmp_path), "--timing", str(timing)])
    out = capsys.readouterr().out
    assert "| 600 | val | 40.00 |" in out
    assert "| data | 1.0 |" in out and "| train | 5.0 |" in out and "| total | 6.0 |" in out
    image = np.asarray(Image.open(tmp_path / "eval" / "learning_curve.png"))
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="eval_every"):
        learning_curve.read_curve(str(tmp_path / "none.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"split": "val"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        learning_curve.read_curve(str(bad))
