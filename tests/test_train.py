"""The training command line: SIGKILL loses at most one checkpoint interval, SIGTERM saves."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO
from tests.training.helpers import checkpoint_steps


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


@pytest.mark.slow
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
    while time.time() < deadline and max(checkpoint_steps(workdir), default=0) < 3:
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    saved = max(checkpoint_steps(workdir))
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
    assert max(checkpoint_steps(workdir)) > saved, "".join(output)
