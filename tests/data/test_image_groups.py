"""Image groups: runs of one image's records cut into groups, parsed once per image, flattened."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import augment, image_groups, pipeline, schema
from tests.data.synthetic import blob, encode, write_records

SIZE, MAX_WORDS = 24, 5


def _tagged(image_id, tag):
    """A record holding only `image/id` and a tag (all `group_records` reads is the id)."""
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                schema.IMAGE_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[image_id])),
                "tag": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tag.encode()])),
            }
        )
    )
    return example.SerializeToString()


def _tags(group):
    spec = {"tag": tf.io.FixedLenFeature([], tf.string)}
    return [tf.io.parse_single_example(r, spec)["tag"].numpy().decode() for r in group]


def test_runs_are_cut_into_groups_completed_from_their_first_records():
    # Runs: image 1 a-e (5), image 2 f-g (2), image 3 h (1), image 1 again i (not consecutive).
    stream = [(1, "a"), (1, "b"), (1, "c"), (1, "d"), (1, "e"), (2, "f"), (2, "g"), (3, "h")]
    stream += [(1, "i")]
    records = tf.data.Dataset.from_tensor_slices([_tagged(i, t) for i, t in stream])
    groups = [_tags(g) for g in image_groups.group_records(records, 4)]
    assert groups == [
        ["a", "b", "c", "d"],
        ["e", "a", "b", "c"],
        ["f", "g", "f", "g"],
        ["h", "h", "h", "h"],
        ["i", "i", "i", "i"],
    ]
    pairs = [_tags(g) for g in image_groups.group_records(records, 2)]
    assert pairs == [["a", "b"], ["c", "d"], ["e", "a"], ["f", "g"], ["h", "h"], ["i", "i"]]
    singles = [_tags(g) for g in image_groups.group_records(records, 1)]
    assert singles == [[t] for _, t in stream]
    assert list(image_groups.group_records(records.take(0), 3)) == []


def test_every_record_is_in_some_group_of_one_image():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(30), rng.integers(1, 12, 30))
    stream = [(int(i), f"r{n}") for n, i in enumerate(ids)]
    image_of = dict((t, i) for i, t in stream)
    records = tf.data.Dataset.from_tensor_slices([_tagged(i, t) for i, t in stream])
    for size in (2, 3, 4, 7):
        groups = [_tags(g) for g in image_groups.group_records(records, size)]
        assert all(len(g) == size and len({image_of[t] for t in g}) == 1 for g in groups)
        seen = collections.Counter(t for g in groups for t in g)
        assert set(seen) == set(image_of)
        # Each run of n records gives ceil(n / size) groups: only the last one repeats records.
        runs = collections.Counter(int(i) for i in ids)
        assert len(groups) == sum(-(-n // size) for n in runs.values())


def test_bad_group_sizes_raise():
    with pytest.raises(ValueError, match="positive int"):
        image_groups.check_expressions_per_image(0, 8)
    with pytest.raises(ValueError, match="must divide the batch size"):
        image_groups.check_expressions_per_image(3, 8)
    assert image_groups.check_expressions_per_image(4, 8) == 4


@pytest.fixture(scope="module")
def shared_images(tmp_path_factory):
    """Two images with 3 and 2 expressions, each its own mask and words; (files, records)."""
    rng = np.random.default_rng(1)
    records = []
    for image_index, (height, width, count) in enumerate([(20, 28, 3), (30, 18, 2)]):
        image = encode(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for k in range(count):
            mask = blob(height, width, cy=0.3 + 0.2 * k, cx=0.3 + 0.15 * k, ry=0.2, rx=0.25)
            records.append(
                schema.serialize_example(
                    image_encoded=image,
                    image_format="png",
                    height=height,
                    width=width,
                    mask_png=encode(mask),
                    expression="words",
                    ids=[1 + k, 3, 10 * image_index + k + 4][: 2 + k % 2],
                    image_id=image_index,
                    ref_id=100 + image_index,
                    ann_id=200 + image_index,
                    sentence_id=10 * image_index + k,
                )
            )
    path = tmp_path_factory.mktemp("groups") / "train-00000-of-00001.tfrecord"
    return [write_records(path, records)], records


def _reference(records, augmenter=None):
    """Each record parsed alone (the ungrouped pipeline's parse), by sentence id."""
    parser = pipeline.Parser(image_size=SIZE, max_words=MAX_WORDS, augment=augmenter)
    decoder = pipeline.Decoder()
    out = {}
    for record in records:
        parsed = parser(decoder.decode(tf.constant(record)))
        out[int(schema.parse_example(record)[schema.SENTENCE_ID])] = parsed
    return out


def _one_epoch_of_pairs(files, batch_size, **kwargs):
    """One ordered epoch of training batches of 2 expressions per image, with the record ids."""
    return pipeline.make_dataset(
        files,
        image_size=SIZE,
        max_words=MAX_WORDS,
        batch_size=batch_size,
        training=True,
        deterministic=True,
        repeat=False,
        include_original=True,
        expressions_per_image=2,
        **kwargs,
    )


@pytest.mark.parametrize("buckets", [None, (2,)])
def test_grouped_batches_equal_the_records_parsed_alone(shared_images, buckets):
    files, records = shared_images
    dataset = _one_epoch_of_pairs(files, 4, drop_remainder=False, length_buckets=buckets)
    reference = _reference(records)
    seen = collections.Counter()
    for batch in dataset:
        index = batch["image_index"].numpy()
        groups = batch["image"].shape[0]
        np.testing.assert_array_equal(index, np.repeat(np.arange(groups), 2))
        assert batch["words"].shape[0] == batch["mask"].shape[0] == 2 * groups
        for b, sentence in enumerate(batch["sentence_id"].numpy()):
            want = reference[int(sentence)]
            seen[int(sentence)] += 1
            width = batch["words"].shape[1]
            np.testing.assert_array_equal(batch["words"][b], want["words"][:width])
            assert not np.any(want["words"][width:])
            np.testing.assert_array_equal(batch["mask"][b], want["mask"])
            np.testing.assert_array_equal(batch["image"][index[b]], want["image"])
            assert int(batch["pad_left"][b]) == int(want["pad_left"])
    # Image 0 (3 expressions) gives two groups, the second completed with its first; image 1 one.
    assert seen == {0: 2, 1: 1, 2: 1, 10: 1, 11: 1}


def test_a_group_flips_as_one(shared_images):
    files, records = shared_images
    tokens = ["<pad>", "left", "right"] + [f"w{i}" for i in range(3, 20)]
    flip = augment.Augmenter(tokens, ("hflip", "vflip"), probability=1.0)
    dataset = _one_epoch_of_pairs(files, 2, length_buckets=None, augment=flip)
    reference = _reference(records, flip)
    batches = 0
    for batch in dataset:
        batches += 1
        for b, sentence in enumerate(batch["sentence_id"].numpy()):
            want = reference[int(sentence)]
            np.testing.assert_array_equal(batch["image"][0], want["image"])
            np.testing.assert_array_equal(batch["mask"][b], want["mask"])
            np.testing.assert_array_equal(batch["words"][b], want["words"])  # left <-> right
            assert int(batch["pad_top"][b]) == int(want["pad_top"])
    assert batches == 3
    assert 2 in reference[0]["words"].numpy()  # word 1 ("left") became "right"


def test_grouping_is_for_training_batches(shared_images):
    files, _ = shared_images
    with pytest.raises(ValueError, match="training=True"):
        pipeline.make_dataset(files, batch_size=4, training=False, expressions_per_image=2)
    with pytest.raises(ValueError, match="must divide"):
        pipeline.make_dataset(files, batch_size=6, training=True, expressions_per_image=4)


def test_corrupt_records_stop_a_grouped_stream_or_are_skipped(tmp_path):
    """A group whose image does not decode is dropped whole under `skip_corrupt`, and a record
    that is not a `tf.train.Example` at all is skipped; without it, either raises."""
    rng = np.random.default_rng(2)
    image = encode(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))

    def record(image_id, k, image_bytes):
        return schema.serialize_example(
            image_encoded=image_bytes,
            image_format="png",
            height=20,
            width=28,
            mask_png=encode(blob(20, 28)),
            expression="words",
            ids=[1 + k],
            image_id=image_id,
            ref_id=100 + image_id,
            ann_id=200 + image_id,
            sentence_id=10 * image_id + k,
        )

    good_then_bad_image = [record(0, 0, image), record(0, 1, image)]
    good_then_bad_image += [record(1, 0, b"not an image"), record(1, 1, b"not an image")]
    files = [
        write_records(tmp_path / "a.tfrecord", good_then_bad_image + [record(2, 0, image)]),
        write_records(tmp_path / "b.tfrecord", [record(3, 0, image), b"not an example"]),
    ]
    for name, pattern in [("a", r"ref/id 101.*image/encoded is not a JPEG"), ("b", "parse")]:
        stream = _one_epoch_of_pairs([f for f in files if f.endswith(f"{name}.tfrecord")], 2)
        with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
            list(stream)
    skipped = _one_epoch_of_pairs(files, 2, skip_corrupt=True, drop_remainder=False)
    sentences = sorted(tuple(b["sentence_id"].numpy()) for b in skipped)
    # Image 1's group is gone; images 2 and 3 (one expression each) fill their groups alone.
    assert sentences == [(0, 1), (20, 20), (30, 30)]
