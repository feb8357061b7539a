"""Evaluation: the authors' protocol wired end to end, and the command line."""

import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from cmsa_tf import evaluate
from cmsa_tf.data import schema
from cmsa_tf.utils import experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class EverywhereModel:
    """Predicts foreground at every pixel: the prediction is the whole original image."""

    levels = ("res5", "res4", "res3")

    def __call__(self, inputs, training=False, return_attention=False):
        image, words = inputs["image"], inputs["words"]
        batch = tf.shape(image)[0]
        return {
            "logits": 20.0 * tf.ones_like(image[..., :1]),
            "word_attention": tf.zeros([batch, 3, tf.shape(words)[1]]),
            "features": tf.zeros([batch, 2, 2, 4]),
        }


def test_metrics_are_computed_at_the_original_image_size(tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    results = evaluate.evaluate_split(EverywhereModel(), config, "val", progress=False)
    # Independently: I = |ground truth|, U = image area, read straight from the TFRecords.
    intersections, unions = [], []
    for path in experiment.split_files(tiny_shapes_tfrecords, "val"):
        for record in tf.data.TFRecordDataset(path):
            example = schema.parse_example(record)
            mask = np.asarray(Image.open(io.BytesIO(example[schema.MASK_ENCODED].numpy()))) > 0
            intersections.append(mask.sum())
            unions.append(mask.size)
    val = results["val"]
    assert val["count"] == len(unions) > 0
    np.testing.assert_allclose(val["overall_iou"], sum(intersections) / sum(unions), rtol=1e-9)
    ious = np.asarray(intersections) / np.asarray(unions)
    np.testing.assert_allclose(val["mean_iou"], ious.mean(), rtol=1e-9)
    np.testing.assert_allclose(val["prec@0.5"], (ious >= 0.5).mean())


def test_max_examples_and_crf(tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    results = evaluate.evaluate_split(
        EverywhereModel(), config, "testB", crf=True, max_examples=5, progress=False
    )
    assert set(results) == {"testB", "testB + CRF"}
    assert results["testB"]["count"] == results["testB + CRF"]["count"] == 5
    # An all-foreground map is uninformative; DenseCRF must still return valid masks.
    assert 0.0 <= results["testB + CRF"]["overall_iou"] <= 1.0


def test_unknown_split_is_a_clear_error(tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    with pytest.raises(ValueError, match="testC.*available splits"):
        evaluate.evaluate_split(EverywhereModel(), config, "testC", progress=False)


def test_command_line_writes_json_markdown_and_overlays(
    tmp_path, tiny_shapes_tfrecords, tiny_config, tiny_cli_flags
):
    from cmsa_tf import train

    workdir = str(tmp_path / "run")
    config = tiny_config(tiny_shapes_tfrecords)
    config.train.steps = 2
    train.train_and_evaluate(config, workdir, progress=False)
    flags = [f for f in tiny_cli_flags(tiny_shapes_tfrecords) if not f.startswith("--config.train")]
    result = subprocess.run(
        [
            sys.executable, "-m", "cmsa_tf.evaluate", *flags,
            f"--workdir={workdir}", "--split=val,testA", "--crf", "--crf_workers=1",
            "--num_overlays=2", "--max_examples=6",
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
    assert overlays == ["testA_0000.png", "testA_0001.png", "val_0000.png", "val_0001.png"]
    assert Image.open(os.path.join(out, "overlays", "val_0000.png")).mode == "RGB"


def test_missing_checkpoint_is_a_clear_error(tmp_path, tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        experiment.build_and_restore(config, workdir=str(tmp_path))
