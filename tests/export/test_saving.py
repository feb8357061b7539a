"""Versioned saving: checkpoint coverage, the version directory's contents, refusing to replace."""

import json
import os
import pathlib

import keras
import numpy as np
import pytest

from cmsa_tf.export import module, saving
from tests.export.common import STEP


def test_every_model_variable_reaches_the_checkpoint(trained):
    # Otherwise training never saves those weights and the export would ship random values.
    assert trained["untracked"] == []


def test_untracked_variables_finds_layers_kept_only_in_lists():
    class Holder(keras.layers.Layer):
        def __init__(self):
            super().__init__(name="holder")
            self.listed = [keras.layers.Dense(2, name="listed")]
            self.attribute = keras.layers.Dense(2, name="attribute")

        def call(self, x):
            return self.attribute(self.listed[0](x))

    class Wrapper(keras.Model):
        def __init__(self):
            super().__init__(name="wrapper")
            self.holder = Holder()

        def call(self, x):
            return self.holder(x)

    model = Wrapper()
    model(np.zeros((1, 3), np.float32))
    assert saving.untracked_variables(model) == [
        "wrapper/holder/listed/kernel",
        "wrapper/holder/listed/bias",
    ]


def test_list_versions_lists_integer_directories_only(tmp_path):
    assert saving.list_versions(tmp_path / "missing") == []
    for name in ("3", "12", "1", ".tmp-5-123", "latest", "7.new-99"):
        (tmp_path / name).mkdir()
    (tmp_path / "40").write_text("a file, not a version directory")
    assert saving.list_versions(tmp_path) == [1, 3, 12]
    assert saving.list_versions(str(tmp_path)) == [1, 3, 12]


@pytest.mark.slow
def test_export_writes_a_self_contained_version_directory(exported, loaded):
    base, version_dir = pathlib.Path(exported["base"]), pathlib.Path(exported["version_dir"])
    assert sorted(os.listdir(base)) == [str(STEP)]  # no temporary directory left behind
    assert saving.list_versions(base) == [STEP]
    assert (version_dir / "saved_model.pb").is_file()
    vocab_file = exported["vocab_file"]
    assert (version_dir / "assets" / os.path.basename(vocab_file)).read_bytes() == pathlib.Path(
        vocab_file
    ).read_bytes()
    metadata = json.loads((version_dir / "assets.extra" / saving.METADATA_FILE).read_text())
    config = exported["config"]
    assert metadata["step"] == STEP
    assert metadata["checkpoint"].endswith(f"ckpt-{STEP}")
    assert metadata["image_size"] == config.data.image_size
    assert metadata["max_words"] == config.data.max_words
    assert metadata["level_names"] == list(config.model.levels)
    assert metadata["config"]["model"]["embedding_dim"] == config.model.embedding_dim
    # The same constants travel as variables of the SavedModel itself.
    assert int(loaded.step.numpy()) == STEP
    assert int(loaded.image_size.numpy()) == config.data.image_size
    assert int(loaded.max_words.numpy()) == config.data.max_words
    assert [n.decode() for n in loaded.level_names.numpy()] == list(config.model.levels)
    assert int(loaded.vocabulary_size.numpy()) == len(exported["vocabulary"])
    assert set(loaded.signatures) == {module.SERVING_SIGNATURE, module.PREPROCESSED_SIGNATURE}


@pytest.mark.slow
def test_existing_version_is_not_replaced(exported, tmp_path):
    before = sorted(os.listdir(exported["version_dir"]))
    with pytest.raises(FileExistsError, match=rf"{STEP}' already exists .*--overwrite"):
        saving.export_model(exported["config"], exported["workdir"], exported["base"])
    assert sorted(os.listdir(exported["version_dir"])) == before
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        saving.export_model(exported["config"], str(tmp_path / "empty"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="version must be a non-negative int"):
        saving.export_model(exported["config"], exported["workdir"], str(tmp_path), version=-1)
