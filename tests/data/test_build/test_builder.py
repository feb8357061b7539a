"""Tests of cmsa_tf.data.build on the REFER fixture (and on a tiny ShapesRef root)."""

import hashlib
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cmsa_tf.data import build, schema
from cmsa_tf.data.build import shards
from cmsa_tf.data.tokenizer import Vocabulary

EXPECTED_COUNTS = {"train": 5, "val": 3, "testA": 0, "testB": 1}
EXPECTED_SKIPPED = {
    "missing_image": 1,
    "undecodable_image": 1,
    "empty_mask": 1,
    "empty_expression": 1,
}


def _build(info, output_dir, **kwargs):
    kwargs.setdefault("num_workers", 1)
    kwargs.setdefault("progress", False)
    return build.build_tfrecords(
        info["refer_root"],
        info["dataset"],
        info["split_by"],
        info["image_root"],
        output_dir,
        **kwargs,
    )


def _digests(directory):
    result = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            result[name] = hashlib.sha256(f.read()).hexdigest()
    return result


def _read_split(directory, manifest, split):
    files = [os.path.join(directory, f) for f in manifest["splits"][split]["files"]]
    return [
        {k: v.numpy() for k, v in schema.parse_example(r).items()}
        for r in tf.data.TFRecordDataset(files)
    ]


@pytest.fixture(scope="module")
def built(refer_fixture_root, tmp_path_factory):
    """The fixture built in this process with two shards per split."""
    output_dir = str(tmp_path_factory.mktemp("built"))
    manifest = _build(refer_fixture_root, output_dir, num_shards=2, num_workers=1)
    return output_dir, manifest


def test_manifest_counts_and_skips(built):
    output_dir, manifest = built
    assert manifest["complete"] is True
    assert (manifest["dataset"], manifest["split_by"], manifest["text_field"]) == (
        "refcoco",
        "unc",
        "sent",
    )
    assert manifest["counts"] == EXPECTED_COUNTS
    assert (
        manifest["skipped"]["by_reason"] == EXPECTED_SKIPPED and manifest["skipped"]["total"] == 4
    )
    skipped = {
        (i["ref_id"], tuple(i["sent_ids"])): i["reason"] for i in manifest["skipped"]["items"]
    }
    assert skipped == {
        (5, (51,)): "empty_expression",
        (6, (60,)): "empty_mask",
        (7, (70,)): "undecodable_image",
        (8, (80,)): "missing_image",
    }
    assert (
        manifest["splits"]["val"]["candidates"] == 4 and manifest["splits"]["val"]["skipped"] == 1
    )
    assert manifest["max_words"] == 5  # "red triangle on the left"
    for split, info in manifest["splits"].items():
        assert info["files"] == [f"{split}-0000{i}-of-00002.tfrecord" for i in range(2)]
        assert sum(s["count"] for s in info["shards"]) == EXPECTED_COUNTS[split]
        for shard in info["shards"]:
            path = os.path.join(output_dir, shard["file"])
            assert os.path.getsize(path) == shard["bytes"]
            assert _digests(output_dir)[shard["file"]] == shard["sha256"]
    with open(os.path.join(output_dir, "manifest.json"), encoding="utf-8") as f:
        assert json.load(f) == manifest
    assert not [n for n in os.listdir(output_dir) if n.endswith(".tmp")]


def test_vocabulary_is_built_from_train(built, refer_fixture_root):
    output_dir, manifest = built
    train = [
        s["sent"]
        for r in refer_fixture_root["refs"]
        if r["split"] == "train"
        for s in r["sentences"]
    ]
    expected = Vocabulary.build(train)
    assert Vocabulary.from_file(os.path.join(output_dir, "vocab.txt")) == expected
    assert (
        manifest["vocabulary"]["size"] == len(expected)
        and manifest["vocabulary"]["file"] == "vocab.txt"
    )
    assert "blob" in expected.tokens and "uncompressed" not in expected.tokens  # val word


def test_examples_match_sources(built, refer_fixture_root):
    output_dir, manifest = built
    vocab = Vocabulary.from_file(os.path.join(output_dir, "vocab.txt"))
    sentences = {s["sent_id"]: (r, s) for r in refer_fixture_root["refs"] for s in r["sentences"]}
    image_root = refer_fixture_root["image_root"]
    for split, count in EXPECTED_COUNTS.items():
        examples = _read_split(output_dir, manifest, split)
        assert len(examples) == count
        keys = [(int(e[schema.REF_ID]), int(e[schema.SENTENCE_ID])) for e in examples]
        assert keys == sorted(keys)  # ref_id order, sentences in file order
        for example in examples:
            ref, sentence = sentences[int(example[schema.SENTENCE_ID])]
            assert ref["split"] == split and int(example[schema.REF_ID]) == ref["ref_id"]
            assert int(example[schema.ANN_ID]) == ref["ann_id"]
            assert int(example[schema.IMAGE_ID]) == ref["image_id"]
            file_name, height, width = refer_fixture_root["images"][ref["image_id"]]
            with open(os.path.join(image_root, file_name), "rb") as f:
                assert example[schema.IMAGE_ENCODED] == f.read()  # copied, not re-encoded
            assert example[schema.IMAGE_FORMAT] == (
                b"png" if file_name.endswith(".png") else b"jpeg"
            )
            assert (example[schema.IMAGE_HEIGHT], example[schema.IMAGE_WIDTH]) == (height, width)
            assert example[schema.EXPRESSION_RAW].decode("utf-8") == sentence["sent"]
            assert example[schema.EXPRESSION_IDS].tolist() == vocab.encode(sentence["sent"])
            mask = np.asarray(Image.open(io.BytesIO(example[schema.MASK_ENCODED])))
            assert mask.dtype == np.uint8 and mask.ndim == 2
            np.testing.assert_array_equal(mask, refer_fixture_root["masks"][ref["ann_id"]])


def test_rebuild_is_byte_identical_and_skips_complete_shards(
    built, refer_fixture_root, tmp_path, monkeypatch
):
    reference_dir, _ = built
    calls = []
    write_shard = shards.write_shard

    def counting(task):
        calls.append(os.path.basename(task["path"]))
        return write_shard(task)

    monkeypatch.setattr(shards, "write_shard", counting)
    output_dir = str(tmp_path / "out")
    _build(refer_fixture_root, output_dir, num_shards=2)
    assert _digests(output_dir) == _digests(reference_dir)
    assert len(calls) == 8
    mtimes = {n: os.stat(os.path.join(output_dir, n)).st_mtime_ns for n in os.listdir(output_dir)}

    calls.clear()
    _build(refer_fixture_root, output_dir, num_shards=2)
    assert calls == []
    assert {
        n: os.stat(os.path.join(output_dir, n)).st_mtime_ns for n in os.listdir(output_dir)
    } == mtimes

    # A lost shard, a corrupted one and a leftover temporary file: only those two are redone.
    os.remove(os.path.join(output_dir, "train-00000-of-00002.tfrecord"))
    with open(os.path.join(output_dir, "val-00001-of-00002.tfrecord"), "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    open(os.path.join(output_dir, "testB-00000-of-00002.tfrecord.tmp"), "wb").close()
    calls.clear()
    _build(refer_fixture_root, output_dir, num_shards=2)
    assert sorted(calls) == ["train-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"]
    assert _digests(output_dir) == _digests(reference_dir)


def test_resharding_removes_stale_shards(refer_fixture_root, tmp_path):
    output_dir = str(tmp_path)
    _build(refer_fixture_root, output_dir, num_shards=2)
    manifest = _build(refer_fixture_root, output_dir, num_shards=5)
    # Capped at the number of candidate examples of each split.
    assert manifest["splits"]["train"]["files"] == [
        f"train-0000{i}-of-00005.tfrecord" for i in range(5)
    ]
    assert manifest["splits"]["testA"]["files"] == [
        "testA-00000-of-00002.tfrecord",
        "testA-00001-of-00002.tfrecord",
    ]
    listed = {f for info in manifest["splits"].values() for f in info["files"]}
    assert {n for n in os.listdir(output_dir) if n.endswith(".tfrecord")} == listed
    assert manifest["counts"] == EXPECTED_COUNTS


def test_strict_raises_on_first_bad_item(refer_fixture_root, tmp_path):
    with pytest.raises(
        build.BuildError, match=r"empty_mask in split 'testA', ref 6 .*covers no pixel"
    ):
        _build(refer_fixture_root, str(tmp_path / "a"), splits="testA", strict=True)
    with pytest.raises(
        build.BuildError, match=r"missing_image in split 'testB', ref 8 .*missing\.jpg"
    ):
        _build(refer_fixture_root, str(tmp_path / "b"), splits=["testB"], strict=True)
    # Shards that skipped items in an earlier, lenient build are not taken as they are.
    _build(refer_fixture_root, str(tmp_path / "c"), splits=["testA"])
    with pytest.raises(build.BuildError, match="empty_mask"):
        _build(refer_fixture_root, str(tmp_path / "c"), splits=["testA"], strict=True)
    assert not [n for n in os.listdir(tmp_path / "c") if n.endswith(".tmp")]
    # Clean splits pass.
    assert _build(refer_fixture_root, str(tmp_path / "d"), splits="train", strict=True)[
        "counts"
    ] == {"train": 5}


def test_split_subsets_accumulate(refer_fixture_root, tmp_path):
    manifest = _build(refer_fixture_root, str(tmp_path), splits=["val"])
    assert list(manifest["splits"]) == ["val"] and manifest["counts"] == {"val": 3}
    manifest = _build(refer_fixture_root, str(tmp_path), splits=["testB", "train"])
    assert list(manifest["splits"]) == ["train", "val", "testB"]
    assert manifest["counts"] == {"train": 5, "val": 3, "testB": 1}
    with pytest.raises(
        ValueError,
        match=r"Split 'test' is not in .*present splits: \['train', 'val', 'testA', 'testB'\]",
    ):
        _build(refer_fixture_root, str(tmp_path), splits=["test"])


def test_vocab_file_is_reused(refer_fixture_root, tmp_path):
    authors = tmp_path / "vocabulary_authors.txt"
    authors.write_text("<pad>\n<go>\n<eos>\n<unk>\nthe\nblob\n", encoding="utf-8")
    output_dir = str(tmp_path / "out")
    manifest = _build(refer_fixture_root, output_dir, splits=["val"], vocab_file=authors)
    assert manifest["vocabulary"]["layout"] == "authors" and manifest["vocabulary"]["size"] == 6
    assert (tmp_path / "out" / "vocab.txt").read_bytes() == authors.read_bytes()
    ids = [e[schema.EXPRESSION_IDS].tolist() for e in _read_split(output_dir, manifest, "val")]
    assert ids == [
        [4, 3, 5],
        [5, 3, 3, 3],
        [3, 3],
    ]  # "the uncompressed blob", "blob , right ...", ...


def test_bad_images_are_classified(refer_fixture, tmp_path):
    info = refer_fixture.write_refer_root(tmp_path / "root")
    # img_c.jpg gets another size than instances.json says; img_b.png becomes a TIFF.
    Image.new("RGB", (20, 10)).save(os.path.join(info["image_root"], "img_c.jpg"), format="JPEG")
    Image.new("RGB", (48, 40)).save(os.path.join(info["image_root"], "img_b.png"), format="TIFF")
    manifest = _build(info, str(tmp_path / "out"), splits=["train", "val", "testA"])
    assert manifest["skipped"]["by_reason"] == {
        "undecodable_image": 1,
        "unsupported_image_format": 3,
        "image_size_mismatch": 3,
    }
    assert manifest["counts"] == {"train": 4, "val": 0, "testA": 0}


def test_bad_arguments(refer_fixture_root, tmp_path):
    with pytest.raises(
        ValueError, match=r"Unknown dataset 'coco'; valid datasets: \['refclef', 'refcoco'"
    ):
        _build(dict(refer_fixture_root, dataset="coco"), str(tmp_path))
    with pytest.raises(ValueError, match=r"Unknown split_by 'berkeley' for dataset 'refcoco'"):
        _build(dict(refer_fixture_root, split_by="berkeley"), str(tmp_path))
    with pytest.raises(ValueError, match="num_shards must be a positive integer"):
        _build(refer_fixture_root, str(tmp_path), num_shards=0)
    with pytest.raises(ValueError, match="image_root .* is not a directory"):
        _build(dict(refer_fixture_root, image_root=str(tmp_path / "nope")), str(tmp_path))
    with pytest.raises(ValueError, match="text_field"):
        _build(refer_fixture_root, str(tmp_path), text_field="tokens")


@pytest.mark.slow
def test_two_worker_processes_write_the_same_bytes(built, refer_fixture_root, tmp_path):
    reference_dir, reference = built
    output_dir = str(tmp_path / "spawned")
    manifest = _build(refer_fixture_root, output_dir, num_shards=2, num_workers=2)
    # Two spawned worker processes here, one process in the reference: same bytes.
    assert _digests(output_dir) == _digests(reference_dir)
    assert manifest["counts"] == reference["counts"] == EXPECTED_COUNTS


def test_shapes_root_builds(tmp_path):
    from cmsa_tf.data import shapes

    root = str(tmp_path / "shapes_root")
    summary = shapes.generate_shapes_ref(
        root,
        num_train_images=2,
        num_val_images=1,
        num_test_images=1,
        image_size=32,
        num_workers=1,
        progress=False,
    )
    manifest = build.build_tfrecords(
        root,
        "shapes",
        "shapes",
        os.path.join(root, "images"),
        str(tmp_path / "out"),
        num_workers=1,
        progress=False,
    )
    expected = {s: v["expressions"] for s, v in summary["splits"].items() if v["expressions"]}
    assert manifest["counts"] == expected and manifest["skipped"]["total"] == 0
    assert manifest["vocabulary"]["size"] > 5


# sha256sum lines of the shards and vocabulary built from a tiny ShapesRef, recorded with the
# builder before it was split into the cmsa_tf/data/build package: the output must stay
# byte-identical.
GOLDEN_SHA256 = dict(
    reversed(line.split("  "))
    for line in """
fea9cad78e8019050f842b64ade9f013b6aea243854a511560621d6f8cb4d5b1  testA-00000-of-00002.tfrecord
ff1afad570d787468f0117aebd38963917839178893a837b22d321faf8987e13  testA-00001-of-00002.tfrecord
8a3458fdddc13a2a5f28eecf9bcc13ef94e3ced9d25c79af4235c0e9cdf71c1f  testB-00000-of-00002.tfrecord
4cb4586a2e5dd91f5a908780c4408443dd363a87069852bd43a843d9793e99cd  testB-00001-of-00002.tfrecord
ab509a184c3331ca5f415ec239f8de0555332eae2efc65884fc163d9a9cc55b2  train-00000-of-00002.tfrecord
6d0908333c1b4b3dd4602fa5bbcf3e55dc6b997341eb03cf8ac045f930c2f542  train-00001-of-00002.tfrecord
f8a20e8f46d7395971b70386d59769d7eec37a7c4af17098f3958b43eb7d01a1  val-00000-of-00002.tfrecord
3839e60553eea4ba5cec791d540cee3858e1bb4382932f8480b9dd3432753207  val-00001-of-00002.tfrecord
c83ca46a973a10ca9cf73d701acb80fe5b69d4f099e055ce9c3b5b035552e0f7  vocab.txt
""".strip().splitlines()
)


def test_output_is_byte_identical_to_the_recorded_build(tmp_path):
    from cmsa_tf.data import shapes

    root = str(tmp_path / "shapes_root")
    shapes.generate_shapes_ref(
        root,
        num_train_images=4,
        num_val_images=2,
        num_test_images=2,
        image_size=48,
        seed=5,
        num_workers=1,
        progress=False,
    )
    output_dir = str(tmp_path / "out")
    build.build_tfrecords(
        root,
        "shapes",
        "shapes",
        os.path.join(root, "images"),
        output_dir,
        num_workers=1,
        progress=False,
        num_shards=2,
    )
    digests = _digests(output_dir)
    assert {k: v for k, v in digests.items() if k != "manifest.json"} == GOLDEN_SHA256


# The authors' format: line n is id n, empty lines kept, a repeated token maps to its last line.
AUTHORS_VOCABULARY = "<pad>\n<go>\n<eos>\n<unk>\nthe\n\nman\nleft\n.\nblob\n\n.\nright\nthe\n"


def test_authors_tokenizer_gives_their_ids(refer_fixture_root, tmp_path):
    from cmsa_tf.data.authors_tokenizer import AuthorsVocabulary

    source = tmp_path / "vocabulary_Gref.txt"
    source.write_text(AUTHORS_VOCABULARY, encoding="utf-8")
    output_dir = str(tmp_path / "out")
    manifest = _build(refer_fixture_root, output_dir, vocab_file=source, tokenizer="authors")
    assert manifest["tokenizer"] == "authors"
    assert manifest["vocabulary"]["size"] == 14
    assert (tmp_path / "out" / "vocab.txt").read_bytes() == source.read_bytes()
    theirs = AuthorsVocabulary.from_file(source)
    seen = {}
    for split in manifest["splits"]:
        for example in _read_split(output_dir, manifest, split):
            text = example[schema.EXPRESSION_RAW].decode()
            ids = example[schema.EXPRESSION_IDS].tolist()
            assert ids == theirs.encode(text)
            seen[text] = ids
    # "the" is its last line (13); ", " is one <unk> word; the last "." is dropped.
    assert seen["the man, left."] == [13, 6, 3, 7]
    assert seen["blob, right..."] == [9, 3, 12, 3]
    # The default tokenizer refuses that file (empty lines, "." twice).
    with pytest.raises(ValueError, match="vocabulary_Gref.txt"):
        _build(refer_fixture_root, str(tmp_path / "default"), vocab_file=source)


def test_authors_tokenizer_needs_a_vocab_file(refer_fixture_root, tmp_path):
    with pytest.raises(ValueError, match="vocab_file"):
        _build(refer_fixture_root, str(tmp_path), tokenizer="authors")
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        _build(refer_fixture_root, str(tmp_path), tokenizer="bert")


def test_default_build_records_the_default_tokenizer(built):
    _, manifest = built
    assert manifest["tokenizer"] == "default"
