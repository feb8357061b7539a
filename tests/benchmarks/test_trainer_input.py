"""benchmarks/trainer_input.py on the tiny ShapesRef config: a row per input, each from its own
processes, with the step time, examples/s, page faults and the ratio to the plain iterator."""

import json
import pathlib
import subprocess
import sys

import pytest

from tests.helpers import TINY_OVERRIDES, run_tiny_trainer_benchmark

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_both_inputs_measured_in_their_own_processes(tmp_path, tiny_shapes_tfrecords):
    out = tmp_path / "trainer_input.json"
    result = run_tiny_trainer_benchmark("trainer_input", tiny_shapes_tfrecords, "--json", str(out))
    saved = json.loads(out.read_text())
    machine, rows = saved["machine"], saved["rows"]
    assert machine["batch"] == TINY_OVERRIDES["train.batch_size"]
    assert machine["Trainer.dataset() default"] == "plain"  # one CPU replica
    assert machine["processes x rounds x steps"] == "1 x 2 x 2"
    assert [row["input"] for row in rows] == ["distributed", "plain"]
    plain = rows[1]["s/step"]
    for row in rows:
        assert len(row["round s/step"]) == 2 and min(row["round s/step"]) > 0
        assert row["s/step"] == pytest.approx(
            sorted(row["round s/step"])[0] / 2 + sorted(row["round s/step"])[1] / 2, abs=1e-4
        )
        assert row["examples/s"] == pytest.approx(4 / row["s/step"], rel=1e-2)
        assert row["step / plain"] == pytest.approx(row["s/step"] / plain, abs=0.01)
        assert row["minor page faults/step"] >= 0
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 4 and table[2].startswith("| distributed |")  # header, rule, 2 rows
    assert table[3].split("|")[2].strip() == str(rows[1]["s/step"])


def test_missing_tfrecords_are_named(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "trainer_input.py"), "--repeats", "1"]
    command += ["--set", f"data.tfrecord_dir={str(tmp_path / 'none')!r}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode != 0
    assert "No TFRecords at" in result.stderr and str(tmp_path / "none") in result.stderr
