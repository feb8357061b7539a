"""The paper's word representation: every word embedding is a word of Eq. 1."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cmsa_tf")
class BagOfWords(keras.layers.Layer):
    """The words of Eq. 1 are the word embeddings themselves (CMSA-W, the paper's choice).

    A word encoder of `CMSASegmenter` turns the embedded expression into the words each level
    attends over (docs/design.md, "Word representations"). This one passes them through:
    `call(embeddings, word_mask)` returns `(level_words, level_mask, word_share)` =
    `(embeddings [B, T, Cl], word_mask [B, T], ones [B, T])`. `word_share` maps the attention
    on the level's words to the expression's words (`word_attention * word_share`): here each
    word is its own level word, so the share is 1. No weights.

    Args:
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    embeddings = keras.random.normal((2, 20, 1000))
    word_mask = np.array([[1.0] * 6 + [0.0] * 14, [1.0] * 20])
    words, mask, share = BagOfWords()(embeddings, word_mask)  # [2, 20, 1000], [2, 20], [2, 20]
    ```

    Reference:
        Ye et al., "Cross-Modal Self-Attention Network for Referring Image Segmentation",
        CVPR 2019, Sec. 3.1 and Table 3 (top, "CMSA-W").
    """

    # No RNG state outside tracked attributes (see `SentenceEncoder.seed_state`).
    seed_state = None

    def build(self, embeddings_shape, word_mask_shape):
        del embeddings_shape, word_mask_shape  # no weights

    def call(self, embeddings, word_mask):
        word_mask = ops.cast(word_mask, self.compute_dtype)
        return embeddings, word_mask, ops.ones_like(word_mask)

    def compute_output_shape(self, embeddings_shape, word_mask_shape):
        return tuple(embeddings_shape), tuple(word_mask_shape), tuple(word_mask_shape)
