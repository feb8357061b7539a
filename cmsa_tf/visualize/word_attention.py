"""The paper's Fig. 4 (2nd column): the L x T matrix of each level's attention to each word."""

import numpy as np

from cmsa_tf.visualize.images import figure_to_array, new_figure

DEFAULT_LEVEL_NAMES = ("res5", "res4", "res3")


def word_attention_figure(tokens, attention, level_names=DEFAULT_LEVEL_NAMES, title=None, dpi=100):
    """The paper's Fig. 4 (2nd column): how much each feature level attends to each word.

    Row l, column n holds the attention of level l to word n (the attention scores of Eq. 3 averaged
    over everything but the word). The words label the columns, the levels the rows; each cell is
    annotated with its value, and a colour bar shows the scale.

    Args:
        tokens: the expression's words, list of str (only these columns are drawn).
        attention: [L, T] with T >= len(tokens); columns past len(tokens) (padding) are ignored.
        level_names: L row labels, top to bottom.
        title: optional figure title (e.g. the expression).
        dpi: rendering resolution.

    Returns:
        a `matplotlib.figure.Figure`; its first Axes is the matrix, the second the colour bar.

    Example:
        >>> fig = word_attention_figure(["man", "on", "left"], np.full((3, 20), 0.05))
        >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
        ['man', 'on', 'left']
    """
    tokens = list(tokens)
    if not tokens:
        raise ValueError("tokens must hold at least one word.")
    if not all(isinstance(token, str) for token in tokens):
        raise ValueError(f"tokens must be strings, got {tokens!r}.")
    level_names = [str(name) for name in level_names]
    attention = np.asarray(attention)
    if attention.ndim != 2:
        raise ValueError(f"attention must have shape [levels, words], got shape {attention.shape}.")
    if not np.issubdtype(attention.dtype, np.number) or not np.all(np.isfinite(attention)):
        raise ValueError("attention must hold finite numbers.")
    num_levels, num_columns = attention.shape
    if num_columns < len(tokens):
        raise ValueError(
            f"attention has {num_columns} word columns but there are {len(tokens)} tokens; "
            "it needs at least one column per token."
        )
    if len(level_names) != num_levels:
        raise ValueError(
            f"level_names has {len(level_names)} names but attention has {num_levels} rows "
            "(levels)."
        )
    values = attention[:, : len(tokens)].astype(np.float64)  # [L, T] -> [L, n]

    fig = new_figure((max(4.0, 0.7 * len(tokens) + 2.0), 0.55 * num_levels + 1.6), dpi)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(values, cmap="viridis", aspect="auto", interpolation="nearest")
    ax.set_xticks(
        np.arange(len(tokens)), labels=tokens, rotation=40, ha="right", rotation_mode="anchor"
    )
    ax.set_yticks(np.arange(num_levels), labels=level_names)
    fig.colorbar(image, ax=ax)
    low, high = float(values.min()), float(values.max())
    for row in range(num_levels):
        for column in range(len(tokens)):
            value = values[row, column]
            bright = (
                high > low and (value - low) / (high - low) > 0.6
            )  # viridis is light at the top
            ax.text(
                column,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="black" if bright else "white",
            )
    if title:
        ax.set_title(str(title), fontsize=10)
    return fig


def word_attention_image(tokens, attention, level_names=DEFAULT_LEVEL_NAMES, title=None, dpi=100):
    """`word_attention_figure` rendered to a uint8 RGB array [h, w, 3] (see that function)."""
    return figure_to_array(word_attention_figure(tokens, attention, level_names, title, dpi))
