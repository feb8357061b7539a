"""The Fig. 4 word-attention matrix."""

import matplotlib.figure
import numpy as np
import pytest

from cmsa_tf import visualize


def test_word_attention_figure_labels_and_values():
    tokens = ["man", "in", "red"]
    attention = np.zeros((3, 20))
    attention[:, :3] = [[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]]
    attention[:, 3:] = 9.0  # padding columns: must not be drawn
    fig = visualize.word_attention_figure(tokens, attention, title="man in red")
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert [t.get_text() for t in ax.get_yticklabels()] == ["res5", "res4", "res3"]
    np.testing.assert_array_equal(ax.images[0].get_array(), attention[:, :3])
    cell_texts = sorted(t.get_text() for t in ax.texts)
    expected = sorted(f"{v:.2f}" for v in attention[:, :3].ravel())
    assert cell_texts == expected
    assert len(fig.axes) == 2  # the matrix and its colour bar
    assert ax.get_title() == "man in red"

    image = visualize.word_attention_image(tokens, attention[:2], level_names=("a", "b"), dpi=40)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3


def test_word_attention_figure_rejects_bad_inputs():
    with pytest.raises(ValueError, match="2 word columns but there are 3 tokens"):
        visualize.word_attention_figure(["a", "b", "c"], np.ones((3, 2)))
    with pytest.raises(ValueError, match="level_names has 3 names but attention has 2 rows"):
        visualize.word_attention_figure(["a"], np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"shape \[levels, words\]"):
        visualize.word_attention_figure(["a"], np.ones((3,)))
    with pytest.raises(ValueError, match="at least one word"):
        visualize.word_attention_figure([], np.ones((3, 4)))
