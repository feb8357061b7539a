"""Beyond the paper: words that know their context (word order) before Eq. 1."""

import keras
import tensorflow as tf
from keras import ops

from cmsa_tf.layers.common import positive_int

# `word_context` choices of `CMSASegmenter` ("none": the paper's `BagOfWords`).
WORD_CONTEXTS = ("none", "bilstm", "positions")


@keras.saving.register_keras_serializable(package="cmsa_tf")
class ContextualWords(keras.layers.Layer):
    """Each word of Eq. 1 carries its context: a BiLSTM over the words, or its position.

    CMSA's words are a bag: "the square left of the blue star" and "the blue star left of the
    square" give the same input to Eq. 1-4. This word encoder (docs/design.md, "Word context")
    adds word order to each word's embedding and changes nothing after it:

        "bilstm":    words = e + LSTM_fwd(e)_t + LSTM_bwd(e)_t     (masked, `units` = Cl each)
        "positions": words = e + P[t]                               (P: learned [max_positions, Cl])

    `t` counts real words only: the model moves each expression's real words first (stable,
    `real_words.pack_real_words`), the LSTMs skip masked steps, and padded slots come out as
    zeros, so the output of a real word does not depend on how much padding follows it.
    `call(embeddings, word_mask)` returns `(level_words, level_mask, word_share)` like
    `BagOfWords`: `(words [B, T, Cl], word_mask [B, T], ones [B, T])`.

    Args:
        context: "bilstm" or "positions".
        units: the embedding size `Cl` (the output size).
        max_positions: position slots of "positions" (at least the longest expression; longer
            ones fail with an error naming this argument).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    embeddings = keras.random.normal((2, 20, 64))
    word_mask = np.array([[1.0] * 6 + [0.0] * 14, [1.0] * 20])
    words, mask, share = ContextualWords("bilstm", 64)(embeddings, word_mask)  # [2, 20, 64]
    ```

    Reference:
        Hochreiter and Schmidhuber, "Long Short-Term Memory", 1997 (the bidirectional reading:
        Schuster and Paliwal, 1997); learned position embeddings as in Gehring et al.,
        "Convolutional Sequence to Sequence Learning", ICML 2017.
    """

    def __init__(
        self, context: str = "bilstm", units: int = 1000, max_positions: int = 64, **kwargs
    ):
        super().__init__(**kwargs)
        if context not in WORD_CONTEXTS[1:]:
            raise ValueError(f"context must be one of {WORD_CONTEXTS[1:]}, got {context!r}.")
        self.context = context
        self.units = positive_int(units, "units")
        self.max_positions = positive_int(max_positions, "max_positions")

    def build(self, embeddings_shape, word_mask_shape):
        del word_mask_shape
        if embeddings_shape[-1] != self.units:
            raise ValueError(
                f"embeddings have {embeddings_shape[-1]} channels but units={self.units}."
            )
        if self.context == "positions":
            self.position_embedding = self.add_weight(
                shape=(self.max_positions, self.units),
                initializer=keras.initializers.RandomUniform(-0.08, 0.08),
                name="position_embedding",
            )
            return
        self.forward_lstm = keras.layers.LSTM(
            self.units, return_sequences=True, dtype=self.dtype_policy, name="forward_lstm"
        )
        self.backward_lstm = keras.layers.LSTM(
            self.units,
            return_sequences=True,
            go_backwards=True,
            dtype=self.dtype_policy,
            name="backward_lstm",
        )
        self.forward_lstm.build(tuple(embeddings_shape))
        self.backward_lstm.build(tuple(embeddings_shape))
        # The cells' (unused) dropout RNG states sit in lists tf.train.Checkpoint does not see;
        # named attributes make them checkpoint variables of this layer.
        self.forward_seed_state = self.forward_lstm.cell.seed_generator.state
        self.backward_seed_state = self.backward_lstm.cell.seed_generator.state

    # Nothing for the owner to track (see `SentenceEncoder.seed_state`): this layer tracks its own.
    seed_state = None

    def call(self, embeddings, word_mask):
        word_mask = ops.cast(word_mask, self.compute_dtype)  # [B, T]
        valid = word_mask[:, :, None]  # [B, T, 1]
        if self.context == "positions":
            # A real word's position is its index among the real words (they come first).
            positions = ops.cumsum(ops.cast(word_mask > 0, "int32"), axis=1) - 1  # [B, T]
            positions = ops.maximum(positions, 0)
            with tf.control_dependencies([self._check_positions(word_mask)]):
                positions = tf.identity(positions)
            context = ops.take(self.position_embedding, positions, axis=0)  # [B, T, Cl]
        else:
            mask = ops.not_equal(word_mask, 0)  # [B, T]
            forward = self.forward_lstm(embeddings, mask=mask)  # [B, T, Cl]
            # go_backwards returns the steps in reverse order: flip them back.
            backward = ops.flip(self.backward_lstm(embeddings, mask=mask), axis=1)  # [B, T, Cl]
            context = forward + backward
        words = (embeddings + ops.cast(context, embeddings.dtype)) * valid  # [B, T, Cl]
        return words, word_mask, ops.ones_like(word_mask)

    def _check_positions(self, word_mask):
        longest = tf.reduce_max(tf.reduce_sum(tf.cast(word_mask > 0, tf.int32), axis=1))
        return tf.debugging.assert_less_equal(
            longest,
            self.max_positions,
            message=f"An expression is longer than max_positions={self.max_positions} words.",
        )

    def compute_output_shape(self, embeddings_shape, word_mask_shape):
        return tuple(embeddings_shape), tuple(word_mask_shape), tuple(word_mask_shape)

    def get_config(self):
        config = super().get_config()
        config.update(context=self.context, units=self.units, max_positions=self.max_positions)
        return config
