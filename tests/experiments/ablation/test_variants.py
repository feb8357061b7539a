"""Ablation variants: resolving names and groups, and each variant's config."""

import pytest

from cmsa_tf.experiments import ablation


def test_resolve_variants():
    names, groups = ablation.resolve_variants("all")
    assert names == [
        "no_attention",
        "word_attention",
        "pixel_attention",
        "word_pixel_pair_attention",
        "cmsa_w",
        "cmsa_s",
        "ppm",
        "deconv",
        "convlstm",
        "self_gated",
        "gated_fusion",
    ]
    assert list(groups) == ["attention", "representation", "fusion"]
    assert set(names) == set(ablation.VARIANTS)
    names, groups = ablation.resolve_variants("fusion|representation")
    assert names == ["cmsa_s", "cmsa_w", "ppm", "deconv", "convlstm", "self_gated", "gated_fusion"]
    names, groups = ablation.resolve_variants(["ppm,cmsa_s", "ppm"])
    assert names == ["ppm", "cmsa_s"] and groups == {"selected": ("ppm", "cmsa_s")}
    with pytest.raises(ValueError, match="Unknown variant 'psp'"):
        ablation.resolve_variants("attention,psp")
    with pytest.raises(ValueError, match="No variants"):
        ablation.resolve_variants(" , ")


def test_variant_config_overrides_three_fields_and_the_budget(config_loader):
    base = config_loader("shapes")
    original = base.to_dict()
    config = ablation.variant_config(base, "word_pixel_pair_attention", seed=3, steps=7)
    assert config.model.attention.variant == "word_pixel_pair"
    assert (config.model.word_representation, config.model.fusion) == ("words", "single")
    assert (config.train.seed, config.train.steps) == (3, 7)
    # The base config is untouched, and everything else is the same.
    assert base.to_dict() == original
    assert (base.model.attention.variant, base.model.fusion) == ("cmsa", "gated")
    assert config.train.learning_rate == base.train.learning_rate
    assert config.data.to_dict() == base.data.to_dict()
    for name, variant in ablation.VARIANTS.items():
        config = ablation.variant_config(base, name, seed=0)
        assert (
            config.model.attention.variant,
            config.model.word_representation,
            config.model.fusion,
        ) == (variant.attention, variant.word_representation, variant.fusion)
    # The attention ablations need the paper form.
    official = config_loader("shapes", "official")
    with pytest.raises(ValueError, match="paper form only"):
        ablation.run_ablation(official, "attention", "/nonexistent/never_written")
