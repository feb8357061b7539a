"""Every config file loads, overrides work, and builds its model."""

import pytest

import cmsa_tf
from cmsa_tf import configs
from cmsa_tf.layers import official_kernels

PAPER_CONFIGS = ["refcoco_unc", "refcoco+_unc", "refcocog_umd", "refcocog_google", "referit"]


@pytest.fixture
def load(config_loader):
    return config_loader


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_settings(name, load):
    config = load(name)
    assert config.data.image_size == 320 and config.data.max_words == 20
    assert config.model.backbone.depth == 101 and config.model.backbone.output_stride == 8
    assert config.model.embedding_dim == 1000 and config.model.fusion_channels == 500
    assert config.model.attention.form == "paper"
    assert config.model.attention.implementation == "factorized"
    train = config.train
    assert (train.optimizer, train.learning_rate, train.end_learning_rate) == ("adam", 2.5e-4, 1e-5)
    assert (train.decay_power, train.weight_decay, train.batch_size, train.steps) == (
        0.9,
        5e-4,
        1,
        800_000,
    )
    official = load(name, "official")
    assert official.model.attention.form == "official"
    assert tuple(official.model.attention.key_dims) == (512, 128, 64)
    assert tuple(official.model.attention.reduce_dims) == (None, 256, 128)
    assert official.model.res5_projection_dim == 1000
    for form_config in (config, official):
        memory = form_config.model.attention.attention_memory_bytes
        assert memory == official_kernels.DEFAULT_ATTENTION_MEMORY_BYTES == 1 << 30


def test_unknown_argument(load):
    with pytest.raises(ValueError, match="official"):
        load("refcoco_unc", "offical")


def test_parse_config_arg():
    assert [configs.parse_config_arg(a) for a in (None, "", " paper ", "official")] == [
        "paper",
        "paper",
        "paper",
        "official",
    ]
    with pytest.raises(ValueError, match=r"expected one of \('paper', 'official', 'authors'\)"):
        configs.parse_config_arg("both")


@pytest.mark.parametrize("arg", [None, "official"])
def test_the_form_lives_in_the_model_config_only(arg, load):
    config = load("shapes", arg)
    assert "form" not in config
    assert config.model.attention.form == (arg or "paper")
    expected = 64 if arg == "official" else None
    assert config.model.res5_projection_dim == expected
    config.model.res5_projection_dim = 8  # an int field in both forms
    config.model.res5_projection_dim = None


def test_build_model_needs_vocab_size(load):
    config = load("shapes")
    with pytest.raises(ValueError, match="vocab_size"):
        cmsa_tf.build_model(config.model)


@pytest.mark.parametrize("arg", [None, "official"])
def test_shapes_config_builds_and_runs(arg, load):
    config = load("shapes", arg)
    size = config.data.image_size
    model = cmsa_tf.build_model(config.model, vocab_size=50, image_size=size, max_words=4)
    assert model.count_params() > 0
    assert model.attention_layers[0].form == config.model.attention.form


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_share_one_model(name, load):
    """The datasets' configs differ in their data only: the model built below is each one's."""
    for arg in (None, "official"):
        assert load(name, arg).model.to_dict() == load("refcoco_unc", arg).model.to_dict()


@pytest.mark.slow
@pytest.mark.parametrize("arg", [None, "official"])
def test_paper_configs_build(arg, load):
    config = load("refcoco_unc", arg)
    config.model.backbone.weights = None
    config.model.vocab_size = 12112
    # Full paper model (ResNet-101, embedding 1000, fusion 500) on a small input.
    model = cmsa_tf.build_model(config.model, image_size=32, max_words=3)
    assert model.backbone.feature_channels == {"res3": 512, "res4": 1024, "res5": 2048}
    assert model.vocab_size == 12112 and model.fusion_channels == 500
    assert model.attention_layers[0].key_dim == config.model.attention.key_dims[0]


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_authors_argument_is_the_official_form_plus_the_authors_model(name, load):
    authors, official, paper = load(name, "authors"), load(name, "official"), load(name)
    assert authors.model.attention.to_dict() == official.model.attention.to_dict()
    assert authors.model.res5_projection_dim == official.model.res5_projection_dim
    assert (authors.model.backbone.padding, authors.model.backbone.batchnorm_epsilon) == (
        "same",
        1e-3,
    )
    assert (authors.model.upsampling, authors.data.tokenizer) == ("tf1", "authors")
    assert (authors.eval.protocol, authors.data.preprocessing, authors.train.recipe) == (
        "authors",
        "authors",
        "authors",
    )
    for config in (paper, official):
        assert (config.model.upsampling, config.data.tokenizer) == ("half_pixel", "default")
        assert config.model.backbone.padding is None
    assert configs.attention_form("authors") == "official"
    assert configs.parse_config_arg(" authors ") == "authors"


def test_shapes_long_schedule_and_arguments(load):
    demo, long = load("shapes"), load("shapes", "long")
    assert demo.model.to_dict() == long.model.to_dict()  # the same model, the paper form
    assert (long.data.image_size, long.train.steps) == (160, 16000)
    assert long.data.augment == ("hflip", "vflip") and demo.data.augment == ()
    assert demo.train.region_loss == long.train.region_loss == "dice"
    assert demo.train.eval_every > 0  # the demo prints its learning curve
    # 4 images x 4 expressions a batch; the paper configs train expressions one by one.
    assert demo.data.expressions_per_image == long.data.expressions_per_image == 4
    assert demo.train.batch_size % demo.data.expressions_per_image == 0
    assert load("refcoco_unc").data.expressions_per_image == 1
    assert load("shapes", "official").model.attention.form == "official"
    with pytest.raises(ValueError, match=r"configs/shapes.py; expected one of .*'long'"):
        load("shapes", "longer")
