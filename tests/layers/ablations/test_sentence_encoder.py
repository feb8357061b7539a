"""CMSA-S's word encoder: a masked LSTM's last state is the only word; 1/N shares."""

import keras
import numpy as np
import pytest

from cmsa_tf.layers.ablations.sentence_encoder import SentenceEncoder
from tests.helpers import run_layer_test

EMBEDDINGS = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], "float32")


def test_the_sentence_is_the_last_state_over_the_real_words():
    encoder = SentenceEncoder(6)
    words, mask, share = encoder(EMBEDDINGS, MASK)
    assert tuple(words.shape) == (3, 1, 6)
    alone = encoder.lstm(EMBEDDINGS[:1, :3])  # the first sentence without its padding
    np.testing.assert_allclose(words[0], alone, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(mask, [[1.0], [1.0], [0.0]])
    np.testing.assert_allclose(share[0], [1 / 3] * 3 + [0, 0], rtol=1e-6)
    np.testing.assert_allclose(share[1], [1 / 5] * 5, rtol=1e-6)
    np.testing.assert_array_equal(share[2], 0.0)  # no word: no share, not NaN


def test_seed_state_is_the_lstm_dropout_state():
    encoder = SentenceEncoder(6)
    assert encoder.seed_state is None  # before build
    encoder(EMBEDDINGS, MASK)
    assert encoder.seed_state is encoder.lstm.cell.seed_generator.state


def test_bad_units():
    with pytest.raises(ValueError, match="units"):
        SentenceEncoder(0)


def test_passes_the_layer_checks():
    keras.utils.set_random_seed(3)
    run_layer_test(
        SentenceEncoder,
        {"units": 6},
        (EMBEDDINGS, MASK),
        expected_output_shape=((3, 1, 6), (3, 1), (3, 5)),
        expected_num_trainable_weights=3,
    )
