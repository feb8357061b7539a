"""build_and_restore: the config's model with the weights of a training checkpoint."""

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import manifest
from cmsa_tf.models import restore
from cmsa_tf.models.factory import build_model
from tests.helpers import TINY_OVERRIDES, load_config

VOCAB_SIZE = 20


def _config(tfrecord_dir="unused"):
    config = load_config("shapes")
    config.update_from_flattened_dict(TINY_OVERRIDES)
    config.data.tfrecord_dir = tfrecord_dir
    return config


def _train_checkpoint(config, workdir, step):
    """A checkpoint as training writes it: the model and the step under `<workdir>/checkpoints`."""
    model = build_model(
        config.model,
        vocab_size=VOCAB_SIZE,
        image_size=config.data.image_size,
        max_words=config.data.max_words,
    )
    for variable in model.variables:
        if str(variable.dtype).startswith("float"):
            variable.assign(tf.random.normal(variable.shape, dtype=variable.dtype))
    checkpoint = tf.train.Checkpoint(model=model, step=tf.Variable(step, dtype=tf.int64))
    manager = tf.train.CheckpointManager(checkpoint, restore.checkpoint_dir(workdir), 2)
    return model, manager.save(checkpoint_number=step)


def test_checkpoint_dir():
    assert restore.checkpoint_dir("run") == "run/checkpoints" == f"run/{restore.CHECKPOINT_DIR}"


def test_restores_the_latest_checkpoint_of_a_workdir(tmp_path, monkeypatch):
    config = _config(str(tmp_path / "records"))
    trained, path = _train_checkpoint(config, str(tmp_path), step=7)
    # The vocabulary size comes from the TFRecord manifest of config.data.tfrecord_dir.
    seen = []
    monkeypatch.setattr(manifest, "vocab_size", lambda d: seen.append(d) or VOCAB_SIZE)
    model, checkpoint, step = restore.build_and_restore(config, workdir=str(tmp_path))
    assert seen == [config.data.tfrecord_dir]
    assert (checkpoint, step) == (path, 7)
    assert len(model.variables) == len(trained.variables)
    for a, b in zip(trained.variables, model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_explicit_checkpoint_and_vocab_size(tmp_path):
    config = _config()
    _, path = _train_checkpoint(config, str(tmp_path), step=3)
    _, checkpoint, step = restore.build_and_restore(config, checkpoint=path, vocab_size=VOCAB_SIZE)
    assert (checkpoint, step) == (path, 3)


def test_errors(tmp_path):
    config = _config()
    with pytest.raises(ValueError, match="Give a workdir or a checkpoint"):
        restore.build_and_restore(config, vocab_size=VOCAB_SIZE)
    with pytest.raises(FileNotFoundError, match="No checkpoint in"):
        restore.build_and_restore(config, workdir=str(tmp_path), vocab_size=VOCAB_SIZE)
