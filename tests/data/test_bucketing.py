"""Tests of cmsa_tf/data/bucketing.py: bucket bounds, batches grouped by expression length."""

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import bucketing, pipeline

SIZE = 32
MAX_WORDS = 6


@pytest.mark.parametrize("training", [False, True])
def test_length_buckets_pad_each_batch_to_a_bound_and_lose_nothing(records, training):
    _, files, examples = records  # expressions of 1, 2, 3, 4, 1, 2, 3, 4 words
    common = dict(image_size=SIZE, max_words=MAX_WORDS, batch_size=2, training=training)
    if training:
        common.update(repeat=1, deterministic=True, drop_remainder=False)
    plain = {
        int(element["words"][0]): element
        for batch in pipeline.make_dataset(files, **common)
        for element in [{k: v[i] for k, v in batch.items()} for i in range(len(batch["words"]))]
    }
    bucketed = list(pipeline.make_dataset(files, length_buckets=(2, 4), **common))
    seen = []
    for batch in bucketed:
        words = batch["words"].numpy()
        lengths = (words != 0).sum(1)
        # The smallest bound of (2, 4, 6) that holds every expression of the batch, the same
        # bucket for all of them.
        bound = words.shape[1]
        assert bound in (2, 4)
        assert all(bound == (2 if n <= 2 else 4) for n in lengths)
        for i, row in enumerate(words):
            first = int(row[0])
            seen.append(first)
            np.testing.assert_array_equal(row, plain[first]["words"].numpy()[:bound])
            np.testing.assert_array_equal(batch["image"][i], plain[first]["image"])
            np.testing.assert_array_equal(batch["mask"][i], plain[first]["mask"])
    assert sorted(seen) == sorted(plain) == [ids[0] for _, _, ids in examples]


def test_length_buckets_bad_bounds_raise(records):
    _, files, _ = records
    for buckets, message in (
        ((4, 2), "increase"),
        ((0, 4), "positive"),
    ):
        with pytest.raises(ValueError, match=message):
            pipeline.make_dataset(
                files, max_words=MAX_WORDS, batch_size=2, training=True, length_buckets=buckets
            )
    assert pipeline.check_length_buckets((2, 4), 6) == (2, 4, 6)
    assert pipeline.check_length_buckets([3, 6, 9], 6) == (3, 6)
    assert pipeline.check_length_buckets is bucketing.check_length_buckets
    for buckets in ((), (2, 2), (True, 4), (2.0, 4)):
        with pytest.raises(ValueError, match="length_buckets"):
            bucketing.check_length_buckets(buckets, 6)


def test_bucket_by_length_groups_and_cuts_words():
    words = [[1, 2, 3, 0, 0, 0], [4, 0, 0, 0, 0, 0], [5, 6, 7, 8, 9, 0], [10, 11, 0, 0, 0, 0]]
    dataset = tf.data.Dataset.from_tensor_slices({"words": tf.constant(words, tf.int32)})
    batches = list(bucketing.bucket_by_length(dataset, (2, 4, 6), 2, drop_remainder=False))
    got = sorted(batch["words"].numpy().tolist() for batch in batches)
    # Lengths 3, 1, 5, 2 -> buckets 4, 2, 6, 2: one full batch of two, two partial ones.
    assert got == [[[1, 2, 3, 0]], [[4, 0], [10, 11]], [[5, 6, 7, 8, 9, 0]]]
    dropped = list(bucketing.bucket_by_length(dataset, (2, 4, 6), 2, drop_remainder=True))
    assert [batch["words"].numpy().tolist() for batch in dropped] == [[[4, 0], [10, 11]]]


def test_bucket_by_length_rejects_a_word_after_padding():
    # Two real words, but the second one sits beyond the bound (2) of their bucket.
    dataset = tf.data.Dataset.from_tensor_slices({"words": tf.constant([[1, 0, 0, 5]], tf.int32)})
    with pytest.raises(tf.errors.InvalidArgumentError, match="a word lies beyond its bucket"):
        list(bucketing.bucket_by_length(dataset, (2, 4), 1, drop_remainder=False))
