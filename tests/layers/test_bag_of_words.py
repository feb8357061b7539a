"""The paper's word encoder: the embeddings are the words, each word its own share."""

import numpy as np

from cmsa_tf.layers.bag_of_words import BagOfWords
from tests.helpers import run_layer_test

EMBEDDINGS = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "float32")


def test_passes_the_embeddings_and_mask_through_with_unit_shares():
    words, mask, share = BagOfWords()(EMBEDDINGS, MASK)
    np.testing.assert_array_equal(words, EMBEDDINGS)
    np.testing.assert_array_equal(mask, MASK)
    np.testing.assert_array_equal(share, np.ones_like(MASK))
    assert BagOfWords().seed_state is None


def test_passes_the_layer_checks():
    run_layer_test(
        BagOfWords,
        {},
        (EMBEDDINGS, MASK),
        expected_output_shape=((2, 5, 4), (2, 5), (2, 5)),
        expected_num_trainable_weights=0,
    )
