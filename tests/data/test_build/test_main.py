"""Tests of `python -m cmsa_tf.data.build`: the flags drive `build_tfrecords`."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from cmsa_tf.data import schema
from tests.helpers import REPO


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "cmsa_tf.data.build", *args],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO, env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_flags_drive_the_build(refer_fixture_root, tmp_path):
    result = _run(
        f"--refer_root={refer_fixture_root['refer_root']}", "--dataset=refcoco",
        "--split_by=unc", f"--image_root={refer_fixture_root['image_root']}",
        f"--output_dir={tmp_path}", "--splits=train,testB", "--num_shards=1", "--num_workers=1",
        "--noprogress", "--text_field=raw",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "manifest.json", encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["counts"] == {"train": 5, "testB": 1} and manifest["text_field"] == "raw"
    assert manifest["splits"]["train"]["files"] == ["train-00000-of-00001.tfrecord"]
    files = [str(tmp_path / f) for f in manifest["splits"]["train"]["files"]]
    raw = [
        schema.parse_example(r)[schema.EXPRESSION_RAW].numpy().decode()
        for r in tf.data.TFRecordDataset(files)
    ]
    assert raw[0] == "The man, left."
    printed = json.loads(result.stdout[result.stdout.index("{") :])
    assert printed == {
        "counts": manifest["counts"],
        "skipped": manifest["skipped"]["by_reason"],
        "vocabulary_size": manifest["vocabulary"]["size"],
        "max_words": manifest["max_words"],
        "tokenizer": "default",
    }


@pytest.mark.slow
def test_tokenizer_flag_builds_with_the_authors_ids(refer_fixture_root, tmp_path):
    vocabulary = tmp_path / "vocabulary_Gref.txt"
    vocabulary.write_text("<pad>\n<go>\n<eos>\n<unk>\nthe\n\nman\nthe\nleft\n", encoding="utf-8")
    output_dir = tmp_path / "out"
    result = _run(
        f"--refer_root={refer_fixture_root['refer_root']}", "--dataset=refcoco",
        "--split_by=unc", f"--image_root={refer_fixture_root['image_root']}",
        f"--output_dir={output_dir}", "--splits=train", "--num_workers=1", "--noprogress",
        "--tokenizer=authors", f"--vocab_file={vocabulary}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(output_dir / "manifest.json", encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["tokenizer"] == "authors" and manifest["vocabulary"]["size"] == 9
    files = [str(output_dir / f) for f in manifest["splits"]["train"]["files"]]
    first = schema.parse_example(next(iter(tf.data.TFRecordDataset(files))))
    assert first[schema.EXPRESSION_IDS].numpy().tolist() == [7, 6, 3, 8]  # "The man, left."


@pytest.mark.slow
def test_bad_flags_are_refused():
    result = _run(
        "--refer_root=r", "--dataset=refcoco+", "--split_by=google", "--image_root=i",
        "--output_dir=o",
    )  # fmt: skip
    assert result.returncode != 0
    assert "Unknown split_by 'google' for dataset 'refcoco+'; valid: ['unc']" in result.stderr
    missing = _run("--dataset=refcoco")
    assert missing.returncode != 0 and "--refer_root" in missing.stderr
