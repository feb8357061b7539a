"""The evaluation command line, and its clear error when there is no checkpoint."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from cmsa_tf.models.restore import build_and_restore
from cmsa_tf.training import train_and_evaluate
from tests.helpers import REPO


@pytest.mark.slow
def test_command_line_writes_json_markdown_and_overlays(
    tmp_path, tiny_shapes_tfrecords, tiny_config, tiny_cli_flags
):
    workdir = str(tmp_path / "run")
    config = tiny_config(tiny_shapes_tfrecords)
    config.train.steps = 2
    train_and_evaluate(config, workdir, progress=False)
    flags = [f for f in tiny_cli_flags(tiny_shapes_tfrecords) if not f.startswith("--config.train")]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cmsa_tf.evaluate",
            *flags,
            f"--workdir={workdir}",
            "--split=val,testA",
            "--crf",
            "--crf_workers=1",
            "--num_overlays=2",
            "--max_examples=6",
        ],
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| val + CRF |" in result.stdout and "| testA |" in result.stdout
    out = os.path.join(workdir, "eval")
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["step"] == 2 and summary["checkpoint"].endswith("ckpt-2")
    assert set(summary["results"]) == {"val", "val + CRF", "testA", "testA + CRF"}
    for name in ("val", "testA"):
        data = json.load(open(os.path.join(out, f"{name}.json")))
        assert data["results"][name]["count"] == 6
        assert open(os.path.join(out, f"{name}.md")).read().startswith("|")
    overlays = sorted(os.listdir(os.path.join(out, "overlays")))
    assert overlays == [
        f"{split}_{i:04d}{suffix}.png"
        for split in ("testA", "val")
        for i in range(2)
        for suffix in ("", "_heat")
    ]
    for name in ("val_0000.png", "val_0000_heat.png"):
        assert Image.open(os.path.join(out, "overlays", name)).mode == "RGB"


def test_missing_checkpoint_is_a_clear_error(tmp_path, tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        build_and_restore(config, workdir=str(tmp_path))
