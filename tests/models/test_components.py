"""The factories of CMSASegmenter's choices: the layer each choice makes, and clear errors."""

import pytest

from cmsa_tf.layers import (
    AblatedCrossModalAttention,
    BagOfWords,
    ConvLSTMFusion,
    CrossModalSelfAttention,
    DeconvFusion,
    GatedMultiLevelFusion,
    PyramidPoolingFusion,
    SelfGatedFusion,
    SentenceEncoder,
    SingleLevel,
    official_kernels,
)
from cmsa_tf.models import components


def test_build_attention_makes_the_full_layer_or_its_ablation():
    layer = components.build_attention(
        "cmsa", form="official", key_dim=8, reduce_dim=4, query_chunk_size=5, name="res4_attention"
    )
    assert type(layer) is CrossModalSelfAttention and layer.name == "res4_attention"
    assert (layer.form, layer.implementation, layer.key_dim) == ("official", "chunked", 8)
    assert (layer.reduce_dim, layer.query_chunk_size) == (4, 5)
    assert layer.attention_memory_bytes == official_kernels.DEFAULT_ATTENTION_MEMORY_BYTES
    layer = components.build_attention("cmsa", key_dim=8, attention_memory_bytes=99)
    assert (layer.form, layer.attention_memory_bytes) == ("paper", 99)
    for variant in ("none", "word", "pixel", "word_pixel_pair"):
        layer = components.build_attention(variant, key_dim=8)
        assert type(layer) is AblatedCrossModalAttention
        assert (layer.variant, layer.key_dim) == (variant, 8)


def test_build_attention_errors_name_the_allowed_values():
    with pytest.raises(ValueError, match=r"attention_variant must be one of \('cmsa', 'none'"):
        components.build_attention("words")
    with pytest.raises(ValueError, match="ablation of the paper form"):
        components.build_attention("pixel", form="official")


def test_build_word_encoder():
    encoder = components.build_word_encoder("sentence", 12)
    assert type(encoder) is SentenceEncoder and encoder.units == 12
    assert type(components.build_word_encoder("words", 12)) is BagOfWords
    with pytest.raises(ValueError, match=r"word_representation must be one of \('words', "):
        components.build_word_encoder("lstm", 12)


@pytest.mark.parametrize(
    "fusion,cls",
    [
        ("gated", GatedMultiLevelFusion),
        ("ppm", PyramidPoolingFusion),
        ("deconv", DeconvFusion),
        ("convlstm", ConvLSTMFusion),
        ("self_gated", SelfGatedFusion),
    ],
)
def test_build_fusion_over_three_levels(fusion, cls):
    layer = components.build_fusion(fusion, 8, 3)
    assert type(layer) is cls and layer.channels == 8 and layer.name == f"{fusion}_fusion"


@pytest.mark.parametrize("fusion", ["single", "gated"])
def test_one_level_is_not_fused(fusion):
    layer = components.build_fusion(fusion, 8, 1)
    assert type(layer) is SingleLevel and layer.channels == 8


def test_build_fusion_errors():
    with pytest.raises(ValueError, match=r"fusion must be one of \('gated', 'single'"):
        components.build_fusion("aspp", 8, 3)
    with pytest.raises(ValueError, match="fusion='single' uses one level, got 3 levels"):
        components.build_fusion("single", 8, 3)
    with pytest.raises(ValueError, match="fusion='deconv' fuses three levels"):
        components.build_fusion("deconv", 8, 1)


def test_check_levels():
    assert components.check_levels(["res5"], [6], [None]) == (("res5",), (6,), (None,))
    with pytest.raises(ValueError, match="distinct names"):
        components.check_levels(("res5", "res5", "res3"), (1, 1, 1), (None,) * 3)
    with pytest.raises(ValueError, match="exactly three levels"):
        components.check_levels(("res5", "res4"), (1, 1), (None, None))
    with pytest.raises(ValueError, match="reduce_dims needs one entry per level"):
        components.check_levels(("res5",), (1,), (None, None))
