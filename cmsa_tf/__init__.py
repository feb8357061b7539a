"""cmsa_tf: Cross-Modal Self-Attention Network for referring image segmentation, TF2 / Keras 3."""

__version__ = "0.1.0"


def build_model(
    model_config,
    vocab_size: int | None = None,
    image_size: int | None = None,
    max_words: int | None = None,
):
    """Builds the CMSA model from `config.model`; see `cmsa_tf.models.factory.build_model`.

    Imported on first use, so `import cmsa_tf` does not load TensorFlow.
    """
    from cmsa_tf.models.factory import build_model as _build_model

    return _build_model(
        model_config, vocab_size=vocab_size, image_size=image_size, max_words=max_words
    )
