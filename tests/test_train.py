"""Training: an end-to-end tiny run, resume (also after SIGKILL), NaN stop, distribution."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _event_tags(directory):
    tags = set()
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.add(value.tag)
    return tags


def _checkpoint_steps(workdir):
    state = tf.train.get_checkpoint_state(os.path.join(workdir, "checkpoints"))
    if state is None:
        return []
    return sorted(int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths)


def test_end_to_end_writes_checkpoints_and_summaries(tmp_path, tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    config.train.eval_every = 4
    config.eval.num_images = 2
    config.eval.max_examples_during_training = 8
    workdir = str(tmp_path / "run")
    result = train.train_and_evaluate(config, workdir, progress=False)
    assert result["step"] == 4 and not result["stopped_early"]
    assert np.isfinite(result["loss"]) and result["learning_rate"] > 0
    assert _checkpoint_steps(workdir) == [2, 4]
    assert json.load(open(os.path.join(workdir, "config.json")))["train"]["steps"] == 4

    train_tags = _event_tags(os.path.join(workdir, "train"))
    assert {"loss", "learning_rate", "examples_per_second", "loss/weight_decay"} <= train_tags
    assert {"fusion/gamma_res5", "fusion/gamma_res4", "fusion/gamma_res3"} <= train_tags
    eval_tags = _event_tags(os.path.join(workdir, "eval"))
    assert {"val/overall_iou", "val/mean_iou", "val/prec@0.5", "val/prec@0.9"} <= eval_tags
    assert {"predictions/0", "predictions/1", "word_attention/0", "heat_map/1"} <= eval_tags


def test_resume_continues_step_and_optimizer(tmp_path, tiny_shapes_tfrecords, tiny_config):
    workdir = str(tmp_path / "run")
    config = tiny_config(tiny_shapes_tfrecords)
    config.train.steps = 2
    train.train_and_evaluate(config, workdir, progress=False)
    assert _checkpoint_steps(workdir) == [2]

    config = tiny_config(tiny_shapes_tfrecords)
    strategy = train.create_strategy("mirrored")
    trainer = train.Trainer(config, workdir, strategy)
    assert trainer.restore() == 2
    # The Adam moments came back too (they are zero in a fresh optimiser).
    moments = [v for v in trainer.optimizer.variables if "momentum" in v.path]
    assert moments and any(float(tf.reduce_max(tf.abs(v))) > 0 for v in moments)

    # What evaluation and export restore is exactly what training saved, BN statistics included.
    from cmsa_tf.utils import experiment

    restored, path, step = experiment.build_and_restore(config, workdir=workdir)
    assert step == 2 and path.endswith("ckpt-2")
    assert len(restored.variables) == len(trainer.model.variables)
    for a, b in zip(trainer.model.variables, restored.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    result = train.train_and_evaluate(config, workdir, progress=False)
    assert result["step"] == 4
    assert _checkpoint_steps(workdir) == [2, 4]
    # Already finished: nothing to do.
    assert train.train_and_evaluate(config, workdir, progress=False)["step"] == 4


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path, tiny_shapes_tfrecords, tiny_config, monkeypatch
):
    workdir = str(tmp_path / "run")
    config = tiny_config(tiny_shapes_tfrecords)
    config.train.steps = 2
    train.train_and_evaluate(config, workdir, progress=False)

    real = train.losses.sigmoid_cross_entropy
    monkeypatch.setattr(
        train.losses,
        "sigmoid_cross_entropy",
        lambda mask, logits, reduction: real(mask, logits, reduction) * float("nan"),
    )
    config.train.steps = 6
    with pytest.raises(train.NonFiniteLossError, match=r"nan at step 3.*ckpt-2"):
        train.train_and_evaluate(config, workdir, progress=False)
    assert _checkpoint_steps(workdir) == [2]


def _run_train(args, env=None, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "cmsa_tf.train", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_sigkill_loses_at_most_one_interval_and_sigterm_checkpoints(
    tmp_path, tiny_shapes_tfrecords, tiny_cli_flags
):
    workdir = str(tmp_path / "run")
    flags = tiny_cli_flags(tiny_shapes_tfrecords) + [
        f"--workdir={workdir}",
        "--config.train.steps=100000",
        "--config.train.checkpoint_every=3",
    ]
    process = _run_train(flags)
    deadline = time.time() + 240
    while time.time() < deadline and max(_checkpoint_steps(workdir), default=0) < 3:
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    saved = max(_checkpoint_steps(workdir))
    assert saved >= 3 and saved % 3 == 0

    # Same command again: resumes from the last checkpoint; SIGTERM makes it save and exit cleanly.
    process = _run_train(flags)
    output = []
    deadline = time.time() + 240
    resumed = False
    for line in process.stdout:
        output.append(line)
        if f"at step {saved}" in line and "Resumed" in line:
            resumed = True
        if resumed and "step" in line and "loss" in line:
            process.send_signal(signal.SIGTERM)
            break
        assert time.time() < deadline, "".join(output)
    output.append(process.communicate(timeout=120)[0])
    assert resumed, "".join(output)
    assert process.returncode == 0, "".join(output)
    assert max(_checkpoint_steps(workdir)) > saved, "".join(output)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    sys.path.insert(0, {repo!r})
    from tests.helpers import tiny_shapes_config
    from cmsa_tf import train
    config = tiny_shapes_config({records!r})
    config.data.deterministic = True  # same example order for both runs
    config.model.backbone.freeze_batchnorm = True  # per-replica BN statistics would differ
    results = {{}}
    for name, devices in (("one", ["/cpu:0"]), ("two", ["/cpu:0", "/cpu:1"])):
        strategy = tf.distribute.MirroredStrategy(devices)
        tf.keras.utils.set_random_seed(0)  # same initial weights and example order
        assert strategy.num_replicas_in_sync == len(devices)
        trainer = train.Trainer(config, {workdir!r} + name, strategy)
        step = trainer.train_step_fn()
        iterator = iter(trainer.dataset())
        before = [v.numpy().copy() for v in trainer.model.trainable_variables]
        loss = float(step(iterator)[0])  # one step on the same global batch of 4
        after = [v.numpy() for v in trainer.model.trainable_variables]
        results[name] = (loss, [b - a for a, b in zip(before, after)], before)
    (l1, u1, w1), (l2, u2, w2) = results["one"], results["two"]
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    assert len(u1) == len(u2) > 10
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)  # same start
    moved = 0
    for a, b in zip(u1, u2):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)  # same update
        moved += int(np.abs(a).max() > 0)
    assert moved == len(u1)
    print("OK", l1, l2)
    """
)


def test_mirrored_two_cpu_replicas_equal_one_device(tmp_path, tiny_shapes_tfrecords):
    script = MIRRORED_SCRIPT.format(
        repo=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        records=tiny_shapes_tfrecords,
        workdir=str(tmp_path / "run_"),
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    sys.path.insert(0, {repo!r})
    from tests.helpers import tiny_shapes_config
    from cmsa_tf import train
    strategy = train.create_strategy("multi_worker")
    assert strategy.num_replicas_in_sync == 2
    config = tiny_shapes_config({records!r})
    config.train.steps = 3
    config.train.checkpoint_every = 2
    trainer = train.Trainer(config, {workdir!r}, strategy)
    result = train.train_loop(trainer, progress=False)
    np.savez({out!r}, *[v.numpy() for v in trainer.model.trainable_variables])
    print("DONE", result["step"])
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_worker_two_local_processes_agree(tmp_path, tiny_shapes_tfrecords):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for index in range(2):
        script = WORKER_SCRIPT.format(
            repo=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            records=tiny_shapes_tfrecords,
            workdir=str(tmp_path / "run"),
            out=str(tmp_path / f"weights_{index}.npz"),
        )
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", script],
                cwd=REPO,
                env=dict(os.environ, TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL="2"),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=300)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
        assert "DONE 3" in output, output
    a = np.load(tmp_path / "weights_0.npz")
    b = np.load(tmp_path / "weights_1.npz")
    assert len(a.files) == len(b.files) > 10
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    # Only the chief keeps checkpoints; the other worker's copy is removed.
    assert _checkpoint_steps(str(tmp_path / "run")) == [2, 3]
    assert not os.path.exists(tmp_path / "run" / "worker_tmp" / "1")


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_trains(tmp_path, tiny_shapes_tfrecords, tiny_config, precision):
    import keras

    config = tiny_config(tiny_shapes_tfrecords)
    config.train.steps = 2
    config.train.mixed_precision = precision
    try:
        trainer = train.Trainer(config, str(tmp_path / "run"), train.create_strategy("mirrored"))
        assert trainer.model.compute_dtype == precision
        assert all(v.dtype == "float32" for v in trainer.model.trainable_variables)
        before = [v.numpy().copy() for v in trainer.model.trainable_variables]
        result = train.train_loop(trainer, progress=False)
        assert result["step"] == 2 and np.isfinite(result["loss"])
        after = [v.numpy() for v in trainer.model.trainable_variables]
        assert sum(int(not np.array_equal(a, b)) for a, b in zip(before, after)) > len(before) // 2
    finally:
        keras.mixed_precision.set_global_policy("float32")
