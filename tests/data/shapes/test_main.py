"""Tests of `python -m cmsa_tf.data.shapes`."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_command_line(tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cmsa_tf.data.shapes",
            f"--output_dir={out}",
            "--num_train_images=3",
            "--num_val_images=1",
            "--num_test_images=1",
            "--image_size=48",
            "--num_workers=1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with open(out / "shapes" / "summary.json") as f:
        summary = json.load(f)
    assert summary["images"] == {"train": 3, "val": 1, "test": 1} and summary["image_size"] == 48
    assert len(os.listdir(out / "images")) == 5
