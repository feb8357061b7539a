"""The ablation runner: a tiny end-to-end run that resumes, and the command line on it."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from cmsa_tf.evaluation import evaluator as evaluator_lib
from cmsa_tf.experiments import ablation
from cmsa_tf.training import loop as loop_lib
from tests.helpers import REPO


@pytest.mark.slow
def test_runner_end_to_end_and_resume(
    tmp_path, tiny_shapes_tfrecords, tiny_config, tiny_cli_flags, monkeypatch
):
    calls = {"train": 0, "evaluate": 0}
    real_train, real_evaluate = loop_lib.train_and_evaluate, evaluator_lib.evaluate_split

    def counting_train(*args, **kwargs):
        calls["train"] += 1
        return real_train(*args, **kwargs)

    def counting_evaluate(*args, **kwargs):
        calls["evaluate"] += 1
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop_lib, "train_and_evaluate", counting_train)
    monkeypatch.setattr(evaluator_lib, "evaluate_split", counting_evaluate)

    config = tiny_config(tiny_shapes_tfrecords)
    workdir = str(tmp_path / "ablation")
    variants = ["no_attention", "cmsa_s"]  # single-level models: the cheapest to trace
    kwargs = dict(seeds=(0,), splits=("val", "testA"), steps=2, crf=False, progress=False)
    results = ablation.run_ablation(config, variants, workdir, **kwargs)
    assert calls == {"train": 2, "evaluate": 4}

    # Each run is a training workdir with the variant's config.
    for name, attention, representation in (
        ("no_attention", "none", "words"),
        ("cmsa_s", "cmsa", "sentence"),
    ):
        run_dir = os.path.join(workdir, name, "seed0")
        assert os.path.exists(os.path.join(run_dir, "checkpoints", "ckpt-2.index"))
        trained = json.load(open(os.path.join(run_dir, "config.json")))
        assert trained["model"]["attention"]["variant"] == attention
        assert trained["model"]["word_representation"] == representation
        assert trained["model"]["fusion"] == "single"
        assert trained["train"]["steps"] == 2
        run = json.load(open(os.path.join(run_dir, "results.json")))
        assert (run["variant"], run["seed"], run["step"]) == (name, 0, 2)
        assert set(run["results"]) == {"val", "testA"}

    assert json.load(open(os.path.join(workdir, "results.json"))) == json.loads(json.dumps(results))
    assert list(results["variants"]) == variants
    for name in variants:
        summary = results["variants"][name]["summary"]
        assert list(summary) == ["val", "testA"]
        for split, metrics in summary.items():
            value = results["variants"][name]["seeds"]["0"][split]["overall_iou"]
            assert 0.0 <= value <= 1.0
            assert metrics["overall_iou"] == {"mean": value, "std": 0.0, "values": [value]}
    table = open(os.path.join(workdir, "results.md")).read()
    rows = [line.split(" | ")[:2] for line in table.splitlines() if "(`" in line]
    assert rows == [
        ["| No attention (`no_attention`)", "val"],
        ["| No attention (`no_attention`)", "testA"],
        ["| CMSA-S (LSTM sentence vector, res5) (`cmsa_s`)", "val"],
        ["| CMSA-S (LSTM sentence vector, res5) (`cmsa_s`)", "testA"],
    ]
    assert min(Image.open(os.path.join(workdir, "ablation.png")).size) > 100

    # Again: nothing is retrained or re-evaluated, the results are the same.
    run_files = [os.path.join(workdir, n, "seed0", "results.json") for n in variants]
    mtimes = [os.path.getmtime(p) for p in run_files]
    again = ablation.run_ablation(config, variants, workdir, **kwargs)
    assert calls == {"train": 2, "evaluate": 4}
    assert again == results
    assert [os.path.getmtime(p) for p in run_files] == mtimes

    # A new split is evaluated on its own, without training.
    more = ablation.run_ablation(config, "cmsa_s", workdir, **dict(kwargs, splits=("testB",)))
    assert calls == {"train": 2, "evaluate": 5}
    assert list(more["variants"]) == ["cmsa_s"]
    assert list(more["variants"]["cmsa_s"]["summary"]) == ["testB"]
    assert set(json.load(open(run_files[1]))["results"]) == {"val", "testA", "testB"}

    # The command line on the finished workdir: same flags, nothing to redo.
    mtimes = [os.path.getmtime(p) for p in run_files]
    flags = tiny_cli_flags(tiny_shapes_tfrecords)
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "cmsa_tf.experiments.ablation",
            *flags,
            f"--workdir={workdir}",
            "--variants=no_attention,cmsa_s",
            "--seeds=0",
            "--steps=2",
            "--splits=val,testA",
            "--nocrf",
        ],
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert process.stdout.count("done before") == 2
    assert "| No attention (`no_attention`) | testA |" in process.stdout
    assert [os.path.getmtime(p) for p in run_files] == mtimes
