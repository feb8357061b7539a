"""Table 3's CMSA-S word representation: an LSTM encodes the expression into one sentence vector."""

import keras
from keras import ops

from cmsa_tf.layers.common import positive_int


@keras.saving.register_keras_serializable(package="cmsa_tf")
class SentenceEncoder(keras.layers.Layer):
    """The expression as one word: the last hidden state of an LSTM over the real words (CMSA-S).

    A word encoder of `CMSASegmenter` (docs/design.md, "Word representations"; the paper's
    choice is `BagOfWords`). A masked LSTM of `units` units reads the embeddings of the real
    words; its last hidden state is the only word of Eq. 1 (T = 1).
    `call(embeddings, word_mask)` returns `(level_words, level_mask, word_share)`:

        level_words = LSTM(embeddings, mask=word_mask)[:, None, :]      [B, 1, units]
        level_mask  = max_n word_mask[:, n]                              [B, 1] (0: no word)
        word_share  = word_mask / max(sum_n word_mask[:, n], 1)          [B, T]

    `word_share` spreads the attention on the sentence equally over the N real words
    (`word_attention * word_share`, 1/N each, 0 on padding).

    Args:
        units: int, the LSTM's units (the word embedding size `Cl` in `CMSASegmenter`).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    embeddings = keras.random.normal((2, 20, 1000))
    word_mask = np.array([[1.0] * 6 + [0.0] * 14, [1.0] * 20])
    words, mask, share = SentenceEncoder(1000)(embeddings, word_mask)  # [2, 1, 1000], [2, 1]
    ```

    Reference:
        Ye et al., "Cross-Modal Self-Attention Network for Referring Image Segmentation",
        CVPR 2019, Sec. 4.3 and Table 3 (top, "CMSA-S").
    """

    def __init__(self, units: int = 1000, **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int(units, "units")

    def build(self, embeddings_shape, word_mask_shape):
        del word_mask_shape  # the mask only selects time steps
        self.lstm = keras.layers.LSTM(self.units, dtype=self.dtype_policy, name="lstm")
        self.lstm.build(tuple(embeddings_shape))

    @property
    def seed_state(self):
        """The LSTM cell's (unused) dropout RNG state, or None before `build`.

        It sits in a list that tf.train.Checkpoint does not see; the layer's owner keeps it in a
        named attribute so training checkpoints hold it with the other variables (CMSASegmenter
        does).
        """
        lstm = getattr(self, "lstm", None)
        seed_generator = getattr(getattr(lstm, "cell", None), "seed_generator", None)
        return None if seed_generator is None else seed_generator.state

    def call(self, embeddings, word_mask):
        word_mask = ops.cast(word_mask, self.compute_dtype)  # [B, T]
        sentence = self.lstm(embeddings, mask=ops.not_equal(word_mask, 0))  # [B, units]
        level_words = sentence[:, None, :]  # [B, 1, units]: the sentence is the only word
        level_mask = ops.max(word_mask, axis=1, keepdims=True)  # [B, 1]: 0 if no word
        # Each real word's share of the sentence's attention: 1/N.
        word_share = word_mask / ops.maximum(ops.sum(word_mask, axis=1, keepdims=True), 1.0)
        return level_words, level_mask, word_share

    def compute_output_shape(self, embeddings_shape, word_mask_shape):
        batch = embeddings_shape[0]
        return (batch, 1, self.units), (batch, 1), tuple(word_mask_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config
