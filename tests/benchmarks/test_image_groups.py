"""benchmarks/image_groups.py on the tiny ShapesRef config: a row per k, each from its own
process, with the step time, expressions/s, images/s and the ratio to k = 1."""

import json
import pathlib
import subprocess
import sys

import pytest

from tests.helpers import TINY_OVERRIDES, run_tiny_trainer_benchmark

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "image_groups.py"


@pytest.mark.slow
def test_each_group_size_measured_in_its_own_process(tmp_path, tiny_shapes_tfrecords):
    out = tmp_path / "image_groups.json"
    result = run_tiny_trainer_benchmark(
        "image_groups", tiny_shapes_tfrecords, "--json", str(out), "--groups", "1,2"
    )
    saved = json.loads(out.read_text())
    machine, rows = saved["machine"], saved["rows"]
    batch = TINY_OVERRIDES["train.batch_size"]
    assert machine["batch (expressions)"] == batch
    assert [row["expressions per image"] for row in rows] == [1, 2]
    assert [row["images per step"] for row in rows] == [batch, batch // 2]
    for row in rows:
        seconds = sorted(row["round s/step"])
        assert len(seconds) == 2 and seconds[0] > 0
        assert row["s/step"] == pytest.approx((seconds[0] + seconds[1]) / 2, abs=1e-4)
        assert row["expressions/s"] == pytest.approx(batch / row["s/step"], rel=1e-2)
        assert row["images/s"] == pytest.approx(row["images per step"] / row["s/step"], rel=1e-2)
        assert row["step / k=1"] == pytest.approx(row["s/step"] / rows[0]["s/step"], abs=0.01)
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 4 and table[2].startswith("| 1 |")  # header, rule, 2 rows


@pytest.mark.parametrize("groups", ["2,4", "0,1", "a"])
def test_bad_groups_are_refused(groups):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--groups", groups],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 2 and "--groups" in result.stderr
