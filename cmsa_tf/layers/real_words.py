"""Real words first: the stable sort that moves each expression's words before its padding.

Padding words contribute exactly nothing to Eq. 1-4 (docs/design.md, "Eq. 2-4: cross-modal
self-attention"), so a model may drop them. `pack_real_words` moves each row's real words to the
front, in order (a stable sort by the mask), and keeps only the batch's longest expression;
`unpack_words` puts per-word values computed on the packed words back at the input's slots and
positions (zeros on padding). The official attention form also sorts with `real_words_first`,
because its 2x word pooling must see the real words side by side.

Example:
```python
mask = tf.constant([[False, False, True, True], [True, False, False, False]])
order, length = pack_real_words(mask)  # order [[2, 3, 0, 1], [0, 1, 2, 3]], length 2
packed = gather_words(words, order, length)  # [B, 2, ...]: the real words, then padding
back = unpack_words(per_word_values, order, num_words=4)  # [B, 4] at the input's positions
```
"""

import tensorflow as tf


def real_words_first(word_mask: tf.Tensor) -> tf.Tensor:
    """The order [B, T] (int32) that puts each row's real words first, in order (stable).

    Args:
        word_mask: [B, T], non-zero / True for real words.
    """
    padding = tf.cast(tf.equal(tf.cast(word_mask, tf.int32), 0), tf.int32)  # [B, T]
    return tf.argsort(padding, axis=1, stable=True)


def pack_real_words(word_mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`(order, length)`: `real_words_first(word_mask)` and the batch's longest expression.

    `length` is a scalar int32 tensor, at least 1 (a batch of empty expressions keeps one
    padding slot, so every shape stays non-empty). Computed in the graph, so it works with an
    unknown T inside `tf.function` and in a SavedModel.
    """
    order = real_words_first(word_mask)
    counts = tf.reduce_sum(tf.cast(tf.not_equal(tf.cast(word_mask, tf.int32), 0), tf.int32), 1)
    length = tf.maximum(tf.reduce_max(counts), 1)
    return order, length


def gather_words(values: tf.Tensor, order: tf.Tensor, length: tf.Tensor | None = None):
    """`values` [B, T, ...] in `order` along the word axis, cut to `length` slots if given."""
    values = tf.gather(values, order, batch_dims=1)  # [B, T, ...]
    return values if length is None else values[:, :length]


def unpack_words(values: tf.Tensor, order: tf.Tensor, num_words) -> tf.Tensor:
    """Per-word `values` [B, L] of sorted words back at the input's T slots and positions.

    The inverse of `gather_words(x, order, L)` for the real words: slots beyond `L` (padding
    only) get zeros.

    Args:
        values: [B, L], one value per sorted word slot (L <= T).
        order: [B, T], from `real_words_first` / `pack_real_words`.
        num_words: T, a Python int or scalar tensor.
    """
    values = tf.pad(values, [[0, 0], [0, num_words - tf.shape(values)[1]]])  # [B, T]
    return tf.gather(values, tf.argsort(order, axis=1), batch_dims=1)  # [B, T]
