"""The word-context encoder (beyond the paper): order matters, padding does not."""

import numpy as np
import pytest

from cmsa_tf.layers.contextual_words import ContextualWords
from tests.helpers import run_layer_test

RNG = np.random.default_rng(0)
EMBEDDINGS = RNG.normal(size=(2, 5, 4)).astype("float32")
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "float32")


@pytest.mark.parametrize(
    "context, num_weights", [("bilstm", 6), ("positions", 1)]
)  # 2 LSTMs x (kernel, recurrent, bias) | the position table
def test_passes_the_layer_checks(context, num_weights):
    run_layer_test(
        ContextualWords,
        dict(context=context, units=4, max_positions=8),
        (EMBEDDINGS, MASK),
        expected_output_shape=((2, 5, 4), (2, 5), (2, 5)),
        expected_num_trainable_weights=num_weights,
        expected_num_non_trainable_weights=None,
    )


@pytest.mark.parametrize("context", ["bilstm", "positions"])
def test_padding_contributes_nothing_and_order_matters(context):
    layer = ContextualWords(context, units=4, max_positions=8)
    words, mask, share = layer(EMBEDDINGS, MASK)
    words = np.asarray(words)
    np.testing.assert_array_equal(mask, MASK)
    np.testing.assert_array_equal(share, np.ones_like(MASK))
    np.testing.assert_array_equal(words[0, 3:], 0.0)  # padded slots are zeros
    # More padding, with any values in it: the real words' outputs are unchanged.
    junk = RNG.normal(size=(2, 3, 4)).astype("float32")
    longer, _, _ = layer(np.concatenate([EMBEDDINGS, junk], 1), np.pad(MASK, [[0, 0], [0, 3]]))
    np.testing.assert_allclose(np.asarray(longer)[:, :5], words, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(longer)[:, 5:], 0.0)
    other = EMBEDDINGS.copy()
    other[0, 3:] = junk[0, :2]
    np.testing.assert_allclose(layer(other, MASK)[0], words, rtol=1e-5, atol=1e-6)
    # Each word's context depends on the others' order: swap the first two real words.
    swapped = EMBEDDINGS[:, [1, 0, 2, 3, 4]]
    out, _, _ = layer(swapped, MASK)
    out = np.asarray(out)
    assert np.abs(out[0, 0] - words[0, 1]).max() > 1e-4
    if context == "bilstm":  # the third word reads both of them, in order
        assert np.abs(out[0, 2] - words[0, 2]).max() > 1e-4


def test_positions_are_the_embedding_plus_the_position_row():
    layer = ContextualWords("positions", units=4, max_positions=8)
    words, _, _ = layer(EMBEDDINGS, MASK)
    table = layer.position_embedding.numpy()
    np.testing.assert_allclose(words[1], EMBEDDINGS[1] + table[:5], rtol=1e-6)
    np.testing.assert_allclose(words[0, :3], EMBEDDINGS[0, :3] + table[:3], rtol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="context must be one of"):
        ContextualWords("none", units=4)
    with pytest.raises(ValueError, match="units"):
        ContextualWords("bilstm", units=0)
    with pytest.raises(ValueError, match="channels but units=3"):
        ContextualWords("bilstm", units=3)(EMBEDDINGS, MASK)
    with pytest.raises(Exception, match="max_positions=2"):
        ContextualWords("positions", units=4, max_positions=2)(EMBEDDINGS, MASK)
