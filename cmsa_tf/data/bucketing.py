"""Length bucketing: training batches grouped by expression length (`tf.data` `group_by_window`).

Every example leaves the `Parser` with `T` word slots (`pipeline.pad_words`: real words first,
0-padded at the end). With bucketing, each example goes to the smallest bucket bound that holds
its words, batches are formed within one bucket, and their `words` are cut to that bucket's
bound. A batch is then not padded to one long sentence, and a `tf.function` (or XLA) sees only
as many word shapes as there are buckets.

`make_dataset(..., length_buckets=...)` (`cmsa_tf.data.pipeline`, `config.data.length_buckets`)
applies it after parsing; nothing else changes in an element, and no example is lost (a bucket's
last partial batch is dropped only where `drop_remainder` drops it).

Example:
>>> bounds = check_length_buckets((4, 8, 12, 16), max_words=20)  # (4, 8, 12, 16, 20)
>>> dataset = bucket_by_length(parsed, bounds, batch_size=8, drop_remainder=True)
"""

from collections.abc import Sequence

import tensorflow as tf


def check_length_buckets(length_buckets: Sequence[int], max_words: int) -> tuple[int, ...]:
    """The bucket bounds: those of `length_buckets` below `max_words`, then `max_words`.

    Raises:
        ValueError: a bound that is not a positive int, or bounds that do not increase.
    """
    bounds = tuple(length_buckets)
    if not bounds or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in bounds):
        raise ValueError(f"length_buckets must be positive ints, got {length_buckets!r}.")
    if any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise ValueError(f"length_buckets must increase, got {length_buckets!r}.")
    return tuple(b for b in bounds if b < max_words) + (max_words,)


def bucket_by_length(
    dataset: tf.data.Dataset, bounds: Sequence[int], batch_size: int, drop_remainder: bool
) -> tf.data.Dataset:
    """Unbatched parsed examples -> batches of one bucket each, `words` cut to its bound.

    Args:
        dataset: elements with `words` int32 [T], real words first (`pipeline.pad_words`), or
            image groups (`cmsa_tf.data.image_groups`) with `words` [k, T], bucketed by their
            longest expression.
        bounds: increasing word-slot bounds ending with `T` (`check_length_buckets`).
        batch_size: elements (examples or groups) per batch.
        drop_remainder: drop the last partial batch of each bucket.

    Returns:
        A dataset of batched dicts; `words` is int32 [B, bound] with bound one of `bounds`.
    """
    bounds_t = tf.constant(bounds, tf.int32)

    def bucket_of(element):  # words [T], or [k, T] for an image group: its longest row
        lengths = tf.reduce_sum(tf.cast(element["words"] != 0, tf.int32), axis=-1)
        length = tf.reduce_max(lengths)
        return tf.cast(tf.argmax(tf.cast(bounds_t >= length, tf.int32)), tf.int64)

    def cut(element):  # real words sit first (pad_words pads at the end)
        bound = bounds_t[bucket_of(element)]
        words = element["words"]
        tf.debugging.assert_equal(
            tf.reduce_sum(tf.cast(words[..., bound:] != 0, tf.int32)),
            0,
            message="length bucketing: a word lies beyond its bucket's bound",
        )
        return {**element, "words": words[..., :bound]}

    def batch(key, window):
        return window.batch(batch_size, drop_remainder=drop_remainder)

    return dataset.map(cut, num_parallel_calls=tf.data.AUTOTUNE).group_by_window(
        key_func=bucket_of, reduce_func=batch, window_size=batch_size
    )
