"""The training loop: an end-to-end tiny run, resume, and the stop on a non-finite loss."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.models.restore import build_and_restore
from cmsa_tf.training import (
    NonFiniteLossError,
    Trainer,
    create_strategy,
    train_and_evaluate,
)
from cmsa_tf.training import trainer as trainer_lib
from cmsa_tf.visualize import learning_curve
from tests.training.helpers import checkpoint_steps, event_tags


@pytest.mark.slow
def test_end_to_end_writes_checkpoints_and_summaries(tmp_path, tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    config.train.eval_every = 4
    config.eval.num_images = 2
    config.eval.max_examples_during_training = 8
    workdir = str(tmp_path / "run")
    result = train_and_evaluate(config, workdir, progress=False)
    assert result["step"] == 4 and not result["stopped_early"]
    assert np.isfinite(result["loss"]) and result["learning_rate"] > 0
    assert checkpoint_steps(workdir) == [2, 4]
    assert json.load(open(os.path.join(workdir, "config.json")))["train"]["steps"] == 4

    train_tags = event_tags(os.path.join(workdir, "train"))
    assert {"loss", "learning_rate", "examples_per_second", "loss/weight_decay"} <= train_tags
    assert {"fusion/gamma_res5", "fusion/gamma_res4", "fusion/gamma_res3"} <= train_tags
    eval_tags = event_tags(os.path.join(workdir, "eval"))
    assert {"val/overall_iou", "val/mean_iou", "val/prec@0.5", "val/prec@0.9"} <= eval_tags
    assert {"predictions/0", "predictions/1", "word_attention/0", "heat_map/1"} <= eval_tags
    # The learning curve `make demo` prints: one point per evaluation.
    points = learning_curve.read_curve(learning_curve.curve_path(workdir))
    assert [(p["step"], p["split"], p["count"]) for p in points] == [(4, "val", 8)]
    assert 0.0 <= points[0]["overall_iou"] <= 1.0


@pytest.mark.slow
def test_trains_with_a_region_loss_and_flips(tmp_path, tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    config.train.steps = 2
    config.train.region_loss = "lovasz"
    config.data.augment = ("hflip", "vflip")
    result = train_and_evaluate(config, str(tmp_path / "run"), progress=False)
    assert result["step"] == 2 and np.isfinite(result["loss"])


@pytest.mark.slow
def test_resume_continues_step_and_optimizer(tmp_path, tiny_shapes_tfrecords, tiny_config):
    workdir = str(tmp_path / "run")
    config = tiny_config(tiny_shapes_tfrecords)
    config.train.steps = 2
    train_and_evaluate(config, workdir, progress=False)
    assert checkpoint_steps(workdir) == [2]

    config = tiny_config(tiny_shapes_tfrecords)
    strategy = create_strategy("mirrored")
    trainer = Trainer(config, workdir, strategy)
    assert trainer.restore() == 2
    # The Adam moments came back too (they are zero in a fresh optimiser).
    moments = [v for v in trainer.optimizer.variables if "momentum" in v.path]
    assert moments and any(float(tf.reduce_max(tf.abs(v))) > 0 for v in moments)

    # What evaluation and export restore is exactly what training saved, BN statistics included.
    restored, path, step = build_and_restore(config, workdir=workdir)
    assert step == 2 and path.endswith("ckpt-2")
    assert len(restored.variables) == len(trainer.model.variables)
    for a, b in zip(trainer.model.variables, restored.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    result = train_and_evaluate(config, workdir, progress=False)
    assert result["step"] == 4
    assert checkpoint_steps(workdir) == [2, 4]
    # Already finished: nothing to do.
    assert train_and_evaluate(config, workdir, progress=False)["step"] == 4


@pytest.mark.slow
def test_resume_with_another_config_names_the_workdir_and_keeps_its_config(
    tmp_path, tiny_shapes_tfrecords, tiny_config
):
    workdir = str(tmp_path / "run")
    config = tiny_config(tiny_shapes_tfrecords)
    config.train.steps = 2
    train_and_evaluate(config, workdir, progress=False)
    saved = open(os.path.join(workdir, "config.json")).read()

    other = tiny_config(tiny_shapes_tfrecords)
    other.train.steps = 4
    other.model.fusion_channels = config.model.fusion_channels * 2  # another model
    with pytest.raises(ValueError, match=r"does not hold the model of this config") as error:
        train_and_evaluate(other, workdir, progress=False)
    assert workdir in str(error.value) and "config.json" in str(error.value)
    # Nothing lost: the run's config and checkpoint are as they were.
    assert open(os.path.join(workdir, "config.json")).read() == saved
    assert checkpoint_steps(workdir) == [2]


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path, tiny_shapes_tfrecords, tiny_config, monkeypatch
):
    workdir = str(tmp_path / "run")
    config = tiny_config(tiny_shapes_tfrecords)
    config.train.steps = 2
    train_and_evaluate(config, workdir, progress=False)

    real = trainer_lib.losses.sigmoid_cross_entropy
    monkeypatch.setattr(
        trainer_lib.losses,
        "sigmoid_cross_entropy",
        lambda mask, logits, reduction: real(mask, logits, reduction) * float("nan"),
    )
    config.train.steps = 6
    with pytest.raises(NonFiniteLossError, match=r"nan at step 3.*ckpt-2"):
        train_and_evaluate(config, workdir, progress=False)
    assert checkpoint_steps(workdir) == [2]


def test_steps_per_loop_trains_the_same_and_stops_at_log_and_checkpoint_steps(
    tmp_path, tiny_shapes_tfrecords, tiny_config, monkeypatch
):
    calls = []
    real_steps_fn = trainer_lib.Trainer.train_steps_fn

    def counting_steps_fn(self):
        train_steps = real_steps_fn(self)

        def run(iterator, num_steps):
            calls.append(int(num_steps))
            return train_steps(iterator, num_steps)

        return run

    monkeypatch.setattr(trainer_lib.Trainer, "train_steps_fn", counting_steps_fn)
    results = {}
    for steps_per_loop in (1, 4):
        config = tiny_config(tiny_shapes_tfrecords)
        config.data.deterministic = True
        config.train.steps = 7
        config.train.log_every = 5
        config.train.checkpoint_every = 3
        config.train.steps_per_loop = steps_per_loop
        workdir = str(tmp_path / f"run{steps_per_loop}")
        result = train_and_evaluate(config, workdir, progress=False)
        assert result["step"] == 7 and checkpoint_steps(workdir)[-2:] == [6, 7]
        model, _, _ = build_and_restore(config, workdir=workdir)
        results[steps_per_loop] = (result["loss"], [v.numpy() for v in model.weights])
    # Calls end at the checkpoint steps 3 and 6, the log step 5 and the last step 7.
    assert calls == [3, 2, 1, 1]
    np.testing.assert_allclose(results[4][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[1][1], results[4][1]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
