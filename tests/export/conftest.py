"""The export tests' fixtures: a training-like checkpoint, its export by the CLI, the loaded model.

Package-scoped, so the (slow) export runs once for all the files of tests/export/.
"""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import manifest as manifest_lib
from cmsa_tf.data import tokenizer as tokenizer_lib
from cmsa_tf.export import saving
from cmsa_tf.models import restore
from cmsa_tf.models.factory import build_model
from tests import helpers
from tests.export.common import STEP, subprocess_env


@pytest.fixture(autouse=True)
def _seed():
    """Overrides conftest's seeding: NumPy only. `keras.utils.set_random_seed` also clears
    TensorFlow's kernel caches, so the first call of the loaded SavedModel in each test would
    take seconds; nothing here draws TensorFlow random numbers (`trained` seeds the weights)."""
    np.random.seed(1234)
    yield


@pytest.fixture(scope="package")
def trained(tiny_shapes_tfrecords, tmp_path_factory):
    """A workdir whose checkpoint looks like training's (model, optimizer, step) at step STEP."""
    config = helpers.tiny_shapes_config(tiny_shapes_tfrecords)
    vocab_size = manifest_lib.vocab_size(tiny_shapes_tfrecords)
    keras.utils.set_random_seed(7)
    model = build_model(
        config.model,
        vocab_size=vocab_size,
        image_size=config.data.image_size,
        max_words=config.data.max_words,
    )
    # Non-trivial BatchNorm statistics, so inference mode matters.
    for variable in model.non_trainable_variables:
        if "moving_mean" in variable.path:
            variable.assign(np.random.default_rng(1).normal(0, 0.1, variable.shape))
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    workdir = tmp_path_factory.mktemp("workdir")
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, step=tf.Variable(STEP, dtype=tf.int64)
    )
    tf.train.CheckpointManager(checkpoint, restore.checkpoint_dir(str(workdir)), 2).save(
        checkpoint_number=STEP
    )
    return {
        "config": config,
        "workdir": str(workdir),
        "vocab_file": manifest_lib.vocab_path(tiny_shapes_tfrecords),
        "vocab_size": vocab_size,
        "tfrecords": tiny_shapes_tfrecords,
        "untracked": saving.untracked_variables(model),
    }


@pytest.fixture(scope="package")
def exported(trained, tmp_path_factory):
    """The export written by `python -m cmsa_tf.export` in a subprocess, and the Keras model."""
    base = tmp_path_factory.mktemp("saved_models") / "tiny"
    flags = helpers.tiny_flags(trained["tfrecords"])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cmsa_tf.export",
            *flags,
            f"--workdir={trained['workdir']}",
            f"--export_dir={base}",
        ],
        cwd=helpers.REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Meanwhile, the same checkpoint in this process: the reference.
    model, _, step = restore.build_and_restore(trained["config"], workdir=trained["workdir"])
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    assert step == STEP
    version_dir = str(base / str(STEP))
    vocabulary = tokenizer_lib.Vocabulary.from_file(trained["vocab_file"])
    return dict(
        trained,
        base=str(base),
        version_dir=version_dir,
        model=model,
        vocabulary=vocabulary,
        cli_stdout=stdout,
    )


@pytest.fixture(scope="package")
def loaded(exported):
    return tf.saved_model.load(exported["version_dir"])
