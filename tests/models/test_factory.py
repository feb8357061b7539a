"""Tests of cmsa_tf/models/factory.py: `build_model(config.model)`."""

import pytest

from cmsa_tf import models
from cmsa_tf.layers import (
    AblatedCrossModalAttention,
    SelfGatedFusion,
    SentenceEncoder,
    SingleLevel,
)
from cmsa_tf.models import cmsa_segmenter
from cmsa_tf.models.factory import build_model


def test_config_fields_reach_the_model(config_loader):
    config = config_loader("shapes")
    model_config = config.model
    assert model_config.attention.variant == "cmsa"
    assert (model_config.word_representation, model_config.fusion) == ("words", "gated")
    model_config.attention.variant = "pixel"
    model_config.word_representation = "sentence"
    model_config.fusion = "self_gated"
    model = build_model(model_config, vocab_size=20, image_size=32, max_words=4)
    assert (model.attention_variant, model.word_representation, model.fusion) == (
        "pixel",
        "sentence",
        "self_gated",
    )
    assert all(isinstance(layer, AblatedCrossModalAttention) for layer in model.attention_layers)
    assert isinstance(model.word_encoder, SentenceEncoder)
    assert isinstance(model.fusion_layer, SelfGatedFusion)
    # fusion="single": build_model passes the first level and its dimensions.
    model_config.fusion = "single"
    model = build_model(model_config, vocab_size=20, image_size=32, max_words=4)
    assert model.levels == ("res5",) and isinstance(model.fusion_layer, SingleLevel)
    assert model.key_dims == (model_config.attention.key_dims[0],)
    assert model.reduce_dims == (model_config.attention.reduce_dims[0],)
    assert model.gammas == []


def test_build_model_still_importable_from_cmsa_segmenter():
    from cmsa_tf.models.cmsa_segmenter import build_model as old_path

    assert old_path is build_model
    assert models.build_model is build_model
    with pytest.raises(AttributeError, match="no attribute 'build_models'"):
        cmsa_segmenter.build_models  # noqa: B018
