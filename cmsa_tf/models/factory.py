"""`config.model` -> `CMSASegmenter`: the one place a model config becomes keyword arguments.

Layers and the model take plain keyword arguments; only `build_model` (and the absl mains) read
configs (`cmsa_tf/configs.py` for the fields). Fields added after a config was written get the
model's defaults, so older `config.json` files of a workdir still build.

Example:
>>> model = build_model(config.model, vocab_size=100, image_size=320, max_words=20)
"""

from keras import ops

from cmsa_tf.layers.official_kernels import DEFAULT_ATTENTION_MEMORY_BYTES
from cmsa_tf.models.cmsa_segmenter import CMSASegmenter


def build_model(
    model_config,
    vocab_size: int | None = None,
    image_size: int | None = None,
    max_words: int | None = None,
) -> CMSASegmenter:
    """Builds a `CMSASegmenter` from `config.model` (see `cmsa_tf/configs.py`).

    `config.model.levels`, `attention.key_dims` and `attention.reduce_dims` list all three levels;
    for `fusion="single"` only their first entries (res5 by default) reach the model.

    Args:
        model_config: the `config.model` ConfigDict.
        vocab_size: overrides `model_config.vocab_size` (e.g. from a TFRecord manifest).
        image_size, max_words: if both are given, the model is built by calling it once on zeros
            of that size, so its weights exist (and can be restored) straight away.
    """
    vocab_size = vocab_size if vocab_size is not None else model_config.get("vocab_size")
    if vocab_size is None:
        raise ValueError(
            "The vocabulary size is unknown: set config.model.vocab_size or pass vocab_size "
            "(training reads it from the TFRecord manifest)."
        )
    backbone = model_config.backbone
    attention = model_config.attention
    fusion = model_config.get("fusion", "gated")
    levels = tuple(model_config.levels)
    key_dims = tuple(attention.key_dims)
    reduce_dims = tuple(attention.reduce_dims)
    if fusion == "single":  # one level, no fusion (Table 3's reference)
        levels, key_dims, reduce_dims = levels[:1], key_dims[:1], reduce_dims[:1]
    model = CMSASegmenter(
        vocab_size=vocab_size,
        embedding_dim=model_config.embedding_dim,
        backbone_depth=backbone.depth,
        output_stride=backbone.output_stride,
        backbone_width=backbone.width,
        backbone_weights=backbone.weights,
        backbone_padding=backbone.get("padding"),
        backbone_batchnorm_epsilon=backbone.get("batchnorm_epsilon"),
        freeze_batchnorm=backbone.freeze_batchnorm,
        trainable_stages=tuple(backbone.trainable_stages),
        levels=levels,
        attention_form=attention.form,
        attention_implementation=attention.implementation,
        key_dims=key_dims,
        reduce_dims=reduce_dims,
        res5_projection_dim=model_config.get("res5_projection_dim"),
        fusion_channels=model_config.fusion_channels,
        query_chunk_size=attention.query_chunk_size,
        attention_memory_bytes=attention.get(
            "attention_memory_bytes", DEFAULT_ATTENTION_MEMORY_BYTES
        ),
        attention_variant=attention.get("variant", "cmsa"),
        word_representation=model_config.get("word_representation", "words"),
        fusion=fusion,
        upsampling=model_config.get("upsampling", "half_pixel"),
        word_context=model_config.get("word_context", "none"),
        name="cmsa",
    )
    if image_size is not None and max_words is not None:
        model(
            {
                "image": ops.zeros((1, image_size, image_size, 3)),
                "words": ops.ones((1, max_words), dtype="int32"),
            }
        )
    return model
