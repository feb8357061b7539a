"""Tests of cmsa_tf/data/manifest.py: reading, errors, split files, vocabulary, atomic writes."""

import json
import os

import pytest

from cmsa_tf.data import manifest

MANIFEST = {
    "dataset": "shapes",
    "vocabulary": {"file": "vocab.txt", "size": 7},
    "splits": {
        "train": {"files": ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]},
        "val": {"files": ["/elsewhere/val-00000-of-00001.tfrecord"]},
        "testA": {"files": []},
    },
}


@pytest.fixture
def directory(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    (tmp_path / "vocab.txt").write_text("".join(f"t{i}\n" for i in range(5)))
    return tmp_path


def test_names():
    assert (manifest.MANIFEST_NAME, manifest.VOCAB_NAME) == ("manifest.json", "vocab.txt")


def test_manifest_path_takes_the_file_or_its_directory(directory):
    path = str(directory / "manifest.json")
    assert manifest.manifest_path(directory) == path == manifest.manifest_path(str(directory))
    assert manifest.manifest_path(path) == path
    assert manifest.manifest_path(directory / "other.json") == str(directory / "other.json")


def test_read_manifest_resolves_the_vocabulary(directory):
    for where in (directory, directory / "manifest.json"):
        got = manifest.read_manifest(where)
        assert got["dataset"] == "shapes" and set(got["splits"]) == {"train", "val", "testA"}
        assert got["vocab_file"] == str(directory / "vocab.txt") and got["vocab_size"] == 7
    assert manifest.vocab_path(directory) == str(directory / "vocab.txt")
    assert manifest.vocab_size(directory) == 7
    # Without a recorded size, the file's lines are counted.
    del_size = dict(MANIFEST, vocabulary={"file": "vocab.txt"})
    (directory / "manifest.json").write_text(json.dumps(del_size))
    assert manifest.vocab_size(directory) == 5


def test_split_files(directory):
    assert manifest.split_files(directory, "train") == [
        str(directory / "train-00000-of-00002.tfrecord"),
        str(directory / "train-00001-of-00002.tfrecord"),
    ]
    assert manifest.split_files(directory / "manifest.json", "val") == [
        "/elsewhere/val-00000-of-00001.tfrecord"
    ]


def test_missing_manifest_names_the_path(tmp_path):
    path = os.path.join(str(tmp_path), "manifest.json")
    for function in (manifest.read_manifest, manifest.vocab_path, manifest.vocab_size):
        with pytest.raises(
            ValueError, match=rf"No TFRecord manifest at '{path}'.*cmsa_tf.data.build"
        ):
            function(tmp_path)
    with pytest.raises(ValueError, match="No TFRecord manifest at"):
        manifest.split_files(tmp_path, "train")


def test_bad_json_names_the_path(tmp_path):
    (tmp_path / "manifest.json").write_text('{"splits": {"train": ')
    path = str(tmp_path / "manifest.json")
    with pytest.raises(ValueError, match=rf"The TFRecord manifest '{path}' is not valid JSON \("):
        manifest.read_manifest(tmp_path)
    with pytest.raises(ValueError, match="is not valid JSON"):
        manifest.split_files(tmp_path, "train")


@pytest.mark.parametrize("content", [[1, 2], {"splits": ["train"]}, {"dataset": "x"}])
def test_manifest_without_splits_is_refused(tmp_path, content):
    (tmp_path / "manifest.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"Manifest '.*manifest\.json' has no 'splits' dict"):
        manifest.read_manifest(tmp_path)


def test_unknown_split_names_the_split_and_the_known_ones(directory):
    with pytest.raises(
        ValueError,
        match=r"Split 'testB' is not in the manifest '.*manifest\.json'; available splits: "
        r"\['testA', 'train', 'val'\]",
    ):
        manifest.split_files(directory, "testB")
    with pytest.raises(ValueError, match=r"Split 'testA' lists no files in the manifest '.*'"):
        manifest.split_files(directory, "testA")


def test_no_vocabulary_named(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"splits": {}}))
    assert "vocab_file" not in manifest.read_manifest(tmp_path)
    for function in (manifest.vocab_path, manifest.vocab_size):
        with pytest.raises(
            ValueError, match=r"manifest '.*manifest\.json' names no vocabulary file"
        ):
            function(tmp_path)


def test_write_manifest_is_atomic_and_round_trips(tmp_path):
    path = manifest.write_manifest(tmp_path, MANIFEST)
    assert path == str(tmp_path / "manifest.json")
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]  # no .tmp left
    with open(path, "rb") as f:
        data = f.read()
    assert data == manifest.manifest_bytes(MANIFEST) and data.endswith(b"}\n")
    assert json.loads(data) == MANIFEST
    assert manifest.read_manifest(tmp_path)["splits"] == MANIFEST["splits"]
    # An identical rewrite leaves the file alone; a different one replaces it.
    mtime = os.stat(path).st_mtime_ns
    os.utime(path, ns=(mtime - 10**9, mtime - 10**9))
    manifest.write_manifest(tmp_path, MANIFEST)
    assert os.stat(path).st_mtime_ns == mtime - 10**9
    manifest.write_manifest(tmp_path, dict(MANIFEST, dataset="refcoco"))
    assert manifest.read_manifest(tmp_path)["dataset"] == "refcoco"
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]


def test_tokenizer_is_recorded_and_checked(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(dict(MANIFEST, tokenizer="authors")))
    assert manifest.tokenizer(tmp_path) == "authors"
    manifest.check_tokenizer(tmp_path, "authors")
    with pytest.raises(ValueError, match=r"'default'.*'authors'.*--tokenizer=default"):
        manifest.check_tokenizer(tmp_path, "default")


def test_a_manifest_without_a_tokenizer_is_the_default_one(directory):
    assert manifest.tokenizer(directory) == "default"
    manifest.check_tokenizer(directory, "default")
    with pytest.raises(ValueError, match=r"config.data.tokenizer is 'authors'.*'default'"):
        manifest.check_tokenizer(directory, "authors")
