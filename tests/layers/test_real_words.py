"""real_words: the stable real-words-first sort, the cut to the longest expression, the way back."""

import numpy as np
import tensorflow as tf

from cmsa_tf.layers.real_words import (
    gather_words,
    pack_real_words,
    real_words_first,
    unpack_words,
)

WORDS = np.array([[0, 0, 5, 6, 0], [7, 0, 8, 0, 9], [1, 2, 0, 0, 0]], dtype="int32")


def test_real_words_first_is_a_stable_sort_by_the_mask():
    order = np.asarray(real_words_first(WORDS != 0))
    np.testing.assert_array_equal(order, [[2, 3, 0, 1, 4], [0, 2, 4, 1, 3], [0, 1, 2, 3, 4]])


def test_pack_cuts_to_the_longest_expression_and_unpack_inverts_it():
    order, length = pack_real_words(WORDS)
    assert int(length) == 3
    packed = np.asarray(gather_words(WORDS, order, length))
    np.testing.assert_array_equal(packed, [[5, 6, 0], [7, 8, 9], [1, 2, 0]])
    # Per-word values at the packed slots come back at the input's positions, 0 on padding.
    values = np.where(packed != 0, packed * 10.0, 0.0).astype("float32")
    back = np.asarray(unpack_words(values, order, WORDS.shape[1]))
    np.testing.assert_array_equal(back, np.where(WORDS != 0, WORDS * 10.0, 0.0))
    # Extra feature axes travel with their word.
    features = np.stack([WORDS, -WORDS], axis=-1)
    np.testing.assert_array_equal(
        gather_words(features, order, length), np.stack([packed, -packed], axis=-1)
    )


def test_no_real_word_keeps_one_slot():
    order, length = pack_real_words(np.zeros((2, 4), dtype="int32"))
    assert int(length) == 1
    assert tuple(gather_words(np.zeros((2, 4, 3)), order, length).shape) == (2, 1, 3)
    back = unpack_words(np.zeros((2, 1), dtype="float32"), order, 4)
    np.testing.assert_array_equal(back, np.zeros((2, 4)))


def test_unknown_shapes_in_a_graph():
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def round_trip(words):
        order, length = pack_real_words(words)
        packed = gather_words(words, order, length)
        return packed, unpack_words(tf.cast(packed, tf.float32), order, tf.shape(words)[1])

    packed, back = round_trip(WORDS)
    assert tuple(packed.shape) == (3, 3)
    np.testing.assert_array_equal(back, WORDS.astype("float32"))
