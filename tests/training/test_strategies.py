"""Distribution strategies: two local worker processes train the same weights."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import REPO
from tests.training.helpers import checkpoint_steps

WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    sys.path.insert(0, {repo!r})
    from tests.helpers import tiny_shapes_config
    from cmsa_tf.training import Trainer, create_strategy, train_loop
    strategy = create_strategy("multi_worker")
    assert strategy.num_replicas_in_sync == 2
    config = tiny_shapes_config({records!r})
    config.train.steps = 3
    config.train.checkpoint_every = 2
    trainer = Trainer(config, {workdir!r}, strategy)
    result = train_loop(trainer, progress=False)
    np.savez({out!r}, *[v.numpy() for v in trainer.model.trainable_variables])
    print("DONE", result["step"])
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_local_processes_agree(tmp_path, tiny_shapes_tfrecords):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for index in range(2):
        script = WORKER_SCRIPT.format(
            repo=str(REPO),
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
    assert checkpoint_steps(str(tmp_path / "run")) == [2, 3]
    assert not os.path.exists(tmp_path / "run" / "worker_tmp" / "1")
