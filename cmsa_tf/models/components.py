"""The choices of `CMSASegmenter`, one factory each: attention, word encoder, fusion.

Each factory validates its own choice (with an error naming the allowed values) and makes the
layer; the `check_*` functions are the same validation without a layer, for the constructor. The
ablation variants are in docs/design.md, "Ablation variants".
"""

from cmsa_tf.layers.ablations import (
    AblatedCrossModalAttention,
    ConvLSTMFusion,
    DeconvFusion,
    PyramidPoolingFusion,
    SelfGatedFusion,
    SentenceEncoder,
    SingleLevel,
)
from cmsa_tf.layers.bag_of_words import BagOfWords
from cmsa_tf.layers.contextual_words import WORD_CONTEXTS, ContextualWords
from cmsa_tf.layers.cross_modal_self_attention import CrossModalSelfAttention
from cmsa_tf.layers.gated_multilevel_fusion import GatedMultiLevelFusion
from cmsa_tf.layers.official_kernels import DEFAULT_ATTENTION_MEMORY_BYTES

LEVEL_NAMES = ("res5", "res4", "res3")
# The ablations of Tables 2 and 3 (docs/ablations.md); each tuple starts with the paper's choice.
ATTENTION_VARIANTS = ("cmsa", "none", "word", "pixel", "word_pixel_pair")
WORD_REPRESENTATIONS = ("words", "sentence")
FUSIONS = ("gated", "single", "ppm", "deconv", "convlstm", "self_gated")
# Multi-level fusion layers over three levels, by `fusion` name.
_FUSION_LAYERS = {
    "gated": GatedMultiLevelFusion,
    "ppm": PyramidPoolingFusion,
    "deconv": DeconvFusion,
    "convlstm": ConvLSTMFusion,
    "self_gated": SelfGatedFusion,
}


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")


def check_levels(levels, key_dims, reduce_dims):
    """Checks the levels (1 or 3 distinct names of `LEVEL_NAMES`) and one dimension per level.

    Returns `(levels, key_dims, reduce_dims)` as tuples.
    """
    levels, key_dims, reduce_dims = tuple(levels), tuple(key_dims), tuple(reduce_dims)
    unknown = [name for name in levels if name not in LEVEL_NAMES]
    if unknown or not levels or len(set(levels)) != len(levels):
        raise ValueError(f"levels must be distinct names from {LEVEL_NAMES}, got {levels!r}.")
    if len(levels) not in (1, 3):
        raise ValueError(
            "Gated multi-level fusion needs exactly three levels (or one level, which skips "
            f"the fusion); got {levels!r}."
        )
    for name, value in (("key_dims", key_dims), ("reduce_dims", reduce_dims)):
        if len(value) != len(levels):
            raise ValueError(f"{name} needs one entry per level {levels!r}, got {value!r}.")
    return levels, key_dims, reduce_dims


def check_attention(variant, form):
    """Checks `attention_variant` (Table 2) against `ATTENTION_VARIANTS` and the form."""
    _check_choice("attention_variant", variant, ATTENTION_VARIANTS)
    if variant != "cmsa" and form != "paper":
        raise ValueError(
            f"attention_variant={variant!r} is an ablation of the paper form; it does not exist "
            f"for attention_form={form!r}. Use attention_form='paper' (or "
            "attention_variant='cmsa')."
        )


def build_attention(
    variant: str,
    *,
    form: str = "paper",
    implementation: str | None = None,
    key_dim: int = 512,
    reduce_dim: int | None = None,
    query_chunk_size: int = 256,
    attention_memory_bytes: int = DEFAULT_ATTENTION_MEMORY_BYTES,
    name: str | None = None,
):
    """One level's Eq. 2-4 layer: `CrossModalSelfAttention` for "cmsa", else its ablation.

    An ablation (`AblatedCrossModalAttention`, paper form only) takes `key_dim`; the form's
    other arguments (`implementation`, `reduce_dim`, `query_chunk_size`,
    `attention_memory_bytes`) are the full layer's.
    """
    check_attention(variant, form)
    if variant == "cmsa":
        return CrossModalSelfAttention(
            form=form,
            implementation=implementation,
            key_dim=key_dim,
            reduce_dim=reduce_dim,
            query_chunk_size=query_chunk_size,
            attention_memory_bytes=attention_memory_bytes,
            name=name,
        )
    return AblatedCrossModalAttention(variant=variant, key_dim=key_dim, name=name)


def check_word_representation(word_representation):
    """Checks `word_representation` (Table 3, top) against `WORD_REPRESENTATIONS`."""
    _check_choice("word_representation", word_representation, WORD_REPRESENTATIONS)


def check_word_context(word_context, word_representation="words"):
    """Checks `word_context` against `WORD_CONTEXTS` (beyond the paper: "none" is the paper's bag
    of words); a context needs `word_representation="words"` (the sentence LSTM has order)."""
    _check_choice("word_context", word_context, WORD_CONTEXTS)
    if word_context != "none" and word_representation != "words":
        raise ValueError(
            f"word_context={word_context!r} gives the words of word_representation='words' their "
            f"context; it does not apply to word_representation={word_representation!r}. Use "
            "word_context='none'."
        )


def build_word_encoder(word_representation: str, embedding_dim: int, word_context: str = "none"):
    """The word encoder: `BagOfWords` for "words" (CMSA-W), `SentenceEncoder` for "sentence";
    with a `word_context` ("bilstm" or "positions", beyond the paper) `ContextualWords`.

    All map `(embeddings [B, T, Cl], word_mask [B, T])` to `(level_words, level_mask,
    word_share)` (docs/design.md, "Word representations" and "Word context").
    """
    check_word_representation(word_representation)
    check_word_context(word_context, word_representation)
    if word_representation == "sentence":
        return SentenceEncoder(embedding_dim, name="sentence_encoder")
    if word_context != "none":
        return ContextualWords(word_context, embedding_dim, name="contextual_words")
    return BagOfWords(name="bag_of_words")


def check_fusion(fusion, num_levels):
    """Checks `fusion` (Table 3, bottom) against `FUSIONS` and the number of levels.

    "single" needs one level; "gated" takes three, or one (which skips the fusion); the other
    fusions take three.
    """
    _check_choice("fusion", fusion, FUSIONS)
    if fusion == "single" and num_levels != 1:
        raise ValueError(
            f"fusion='single' uses one level, got {num_levels} levels. Pass levels=('res5',) "
            "(build_model passes the first of config.model.levels for fusion='single')."
        )
    if num_levels == 1 and fusion not in ("gated", "single"):
        raise ValueError(
            f"fusion={fusion!r} fuses three levels; got a single level. Use fusion='single' "
            "for one level."
        )


def build_fusion(fusion: str, channels: int, num_levels: int):
    """The Eq. 5 layer (or its ablation) over `num_levels` maps of `channels` channels.

    One level gets `SingleLevel` (no fusion); three levels get `GatedMultiLevelFusion` for
    "gated", or `PyramidPoolingFusion` / `DeconvFusion` / `ConvLSTMFusion` / `SelfGatedFusion`.
    """
    check_fusion(fusion, num_levels)
    if num_levels == 1:
        return SingleLevel(channels=channels, name="single_level")
    return _FUSION_LAYERS[fusion](channels=channels, name=f"{fusion}_fusion")
