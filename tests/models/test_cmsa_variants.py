"""The ablation variants of CMSASegmenter (Tables 2 and 3): build, run, train, serialise, restore.

And the default model is the paper's: CMSA attention over the word embeddings, gated fusion.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.layers import (
    BagOfWords,
    CrossModalSelfAttention,
    GatedMultiLevelFusion,
)
from cmsa_tf.layers.official_kernels import DEFAULT_ATTENTION_MEMORY_BYTES
from cmsa_tf.losses import SegmentationLoss
from cmsa_tf.models.cmsa_segmenter import CMSASegmenter
from cmsa_tf.models.factory import build_model

TINY = dict(
    vocab_size=30,
    embedding_dim=12,
    backbone_depth=18,
    output_stride=8,
    backbone_width=4,
    key_dims=(6, 6, 6),
    fusion_channels=8,
)
OFFICIAL = dict(
    TINY,
    attention_form="official",
    key_dims=(6, 4, 4),
    reduce_dims=(None, 8, 8),
    res5_projection_dim=10,
    query_chunk_size=7,
)
VARIANTS = {
    "attention_none": dict(attention_variant="none"),
    "attention_word": dict(attention_variant="word"),
    "attention_pixel": dict(attention_variant="pixel"),
    "attention_word_pixel_pair": dict(attention_variant="word_pixel_pair"),
    "sentence": dict(word_representation="sentence"),
    "fusion_single": dict(fusion="single", levels=("res5",), key_dims=(6,), reduce_dims=(None,)),
    "fusion_ppm": dict(fusion="ppm"),
    "fusion_deconv": dict(fusion="deconv"),
    "fusion_convlstm": dict(fusion="convlstm"),
    "fusion_self_gated": dict(fusion="self_gated"),
    "context_bilstm": dict(word_context="bilstm"),
    "context_positions": dict(word_context="positions"),
}


def _inputs(words=((3, 4, 5, 0, 0), (7, 8, 9, 10, 11))):
    rng = np.random.default_rng(0)
    return {
        "image": rng.normal(size=(len(words), 32, 32, 3)).astype("float32") * 50.0,
        "words": np.asarray(words, dtype="int32"),
    }


def _checkpoint_keys(path):
    return sorted(n for n, _ in tf.train.list_variables(path) if n.endswith("VARIABLE_VALUE"))


@pytest.mark.parametrize("form", ["paper", "official"])
def test_default_model_is_the_paper_model(form):
    kwargs = TINY if form == "paper" else OFFICIAL
    model = CMSASegmenter(**kwargs)
    model(_inputs())
    config = model.get_config()
    assert (config["attention_variant"], config["word_representation"], config["fusion"]) == (
        "cmsa",
        "words",
        "gated",
    )
    assert model.levels == ("res5", "res4", "res3")
    for layer in model.attention_layers:
        assert type(layer) is CrossModalSelfAttention and layer.form == form
    assert isinstance(model.word_encoder, BagOfWords)
    assert isinstance(model.fusion_layer, GatedMultiLevelFusion) and len(model.gammas) == 3
    # The authors' word lookup table: uniform in [-0.08, 0.08].
    embeddings = model.word_embedding.embeddings.numpy()
    assert embeddings.min() >= -0.08 and embeddings.max() <= 0.08 and embeddings.std() > 0.03
    assert (model.res5_projection is None) == (form == "paper")


@pytest.mark.parametrize("form", ["paper", "official"])
def test_attention_memory_budget_reaches_every_attention_layer(form, tiny_config):
    config = tiny_config("unused", form)
    assert config.model.attention.attention_memory_bytes == DEFAULT_ATTENTION_MEMORY_BYTES
    config.model.attention.attention_memory_bytes = 12345
    model = build_model(config.model, vocab_size=20, image_size=32, max_words=6)
    assert len(model.attention_layers) == 3
    for layer in model.attention_layers:
        assert type(layer) is CrossModalSelfAttention and layer.form == form
        assert layer.attention_memory_bytes == 12345
    assert model.get_config()["attention_memory_bytes"] == 12345
    clone = CMSASegmenter.from_config(model.get_config())
    clone.build({"image": (1, 32, 32, 3), "words": (1, 6)})
    assert [layer.attention_memory_bytes for layer in clone.attention_layers] == [12345] * 3
    # A config written before the field existed gets the layers' default.
    del config.model.attention["attention_memory_bytes"]
    model = build_model(config.model, vocab_size=20, image_size=32, max_words=6)
    assert model.attention_memory_bytes == DEFAULT_ATTENTION_MEMORY_BYTES


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_runs_trains_and_round_trips(name, tmp_path):
    kwargs = dict(TINY, **VARIANTS[name])
    model = CMSASegmenter(**kwargs)
    inputs = _inputs()
    out = model(inputs, return_attention=True)
    logits = np.asarray(out["logits"])
    num_levels = 1 if name == "fusion_single" else 3
    assert logits.shape == (2, 32, 32, 1) and np.isfinite(logits).all()
    attention = np.asarray(out["word_attention"])
    assert attention.shape == (2, num_levels, 5)
    np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(attention[0, :, 3:], 0.0)
    feature_size = 8 if name == "fusion_deconv" else 4  # the deconv fuses at twice the size
    assert tuple(out["features"].shape) == (2, feature_size, feature_size, 8)

    # One call: the two samples with 3 more padding words (padding changes nothing, a sample
    # does not depend on its batch), an empty sentence (not a NaN), and the first image with the
    # second sentence (the words matter).
    batch = {
        "image": np.concatenate([inputs["image"], inputs["image"][:1], inputs["image"][:1]]),
        "words": np.pad(
            np.concatenate([inputs["words"], np.zeros((1, 5), "int32"), inputs["words"][1:]]),
            ((0, 0), (0, 3)),
        ),
    }
    batch_logits = np.asarray(model(batch))
    np.testing.assert_allclose(batch_logits[:2], logits, rtol=1e-5, atol=1e-5)
    assert np.isfinite(batch_logits[2]).all()
    assert np.abs(batch_logits[3] - logits[0]).max() > 1e-6

    # One optimiser step: finite loss, and the variant's own layers learn.
    own = [model.fusion_layer, model.word_encoder] + model.attention_layers
    own = [layer for layer in own if layer is not None and layer.trainable_variables]
    if name == "attention_none":
        assert not model.attention_layers[0].trainable_variables
    else:
        assert own
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    mask = np.zeros((2, 32, 32, 1), "float32")
    mask[:, 8:20, 10:26] = 1.0
    optimizer = keras.optimizers.Adam(1e-2)
    with tf.GradientTape() as tape:
        loss = SegmentationLoss(pixel_reduction="mean")(mask, model(inputs, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(float(loss))
    assert all(g is not None for g in grads)
    gradient_is_zero = {
        v.path: not np.any(np.asarray(g)) for v, g in zip(model.trainable_variables, grads)
    }
    optimizer.apply(grads, model.trainable_variables)
    changed = {v.path: np.any(v.numpy() != before[v.path]) for v in model.trainable_variables}
    # Every weight with a gradient moves (a tiny net may hold a dead ReLU branch: no gradient).
    assert all(changed[path] for path, zero in gradient_is_zero.items() if not zero)
    for layer in own + model.level_projections:
        assert any(changed[v.path] for v in layer.trainable_variables), layer.name
    trained = np.asarray(model(inputs))

    # Config and .keras round trips.
    config = model.get_config()
    assert CMSASegmenter.from_config(config).get_config() == config
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, CMSASegmenter) and loaded.get_config() == config
    np.testing.assert_array_equal(loaded(inputs), trained)

    # tf.train.Checkpoint (what training writes) holds every variable: spoil every variable of
    # the loaded copy, then restore it from the checkpoint.
    checkpoint = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    assert len(_checkpoint_keys(checkpoint)) == len(model.variables)
    for variable in loaded.variables:
        variable.assign(variable + tf.ones_like(variable))
    assert np.abs(np.asarray(loaded(inputs)) - trained).max() > 1e-6
    tf.train.Checkpoint(model=loaded).read(checkpoint).assert_consumed()
    for a, b in zip(model.variables, loaded.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(loaded(inputs), trained)


def test_sentence_encoder_reads_only_the_real_words():
    model = CMSASegmenter(**dict(TINY, word_representation="sentence"))
    inputs = _inputs()
    model(inputs)
    embeddings = model.word_embedding(inputs["words"])
    lstm = model.word_encoder.lstm
    expected = lstm(embeddings[:1, :3])  # the first sentence without padding
    got = lstm(embeddings[:1], mask=inputs["words"][:1] != 0)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # Every level attends over one "word", the sentence: each real word shows 1/N of it.
    attention = np.asarray(model(inputs, return_attention=True)["word_attention"])
    np.testing.assert_allclose(attention[0], np.tile([1 / 3] * 3 + [0, 0], (3, 1)), rtol=1e-6)
    np.testing.assert_allclose(attention[1], np.full((3, 5), 1 / 5), rtol=1e-6)


@pytest.mark.parametrize("context", ["bilstm", "positions"])
def test_word_context_makes_order_matter_and_ignores_padding(context):
    words = ((3, 4, 5, 6, 0, 0), (6, 5, 4, 3, 0, 0))  # the same bag, reversed
    inputs = _inputs(words)
    inputs["image"] = np.repeat(inputs["image"][:1], 2, axis=0)  # one image, two expressions
    bag = CMSASegmenter(**TINY)
    logits = np.asarray(bag(inputs))
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-5, atol=1e-5)  # order-blind
    model = CMSASegmenter(**dict(TINY, word_context=context))
    logits = np.asarray(model(inputs))
    assert np.abs(logits[0] - logits[1]).max() > 1e-4  # order matters
    # Padding: more of it, or padding between the words, changes nothing.
    padded = dict(inputs, words=np.pad(inputs["words"], [[0, 0], [0, 5]]))
    np.testing.assert_allclose(model(padded), logits, rtol=1e-5, atol=1e-5)
    interleaved = dict(inputs, words=np.array([[3, 0, 4, 5, 0, 6], [6, 5, 0, 0, 4, 3]], "int32"))
    np.testing.assert_allclose(model(interleaved), logits, rtol=1e-5, atol=1e-5)


def test_bad_variant_arguments():
    with pytest.raises(ValueError, match="attention_variant must be one of"):
        CMSASegmenter(**dict(TINY, attention_variant="words"))
    with pytest.raises(ValueError, match="word_representation must be one of"):
        CMSASegmenter(**dict(TINY, word_representation="lstm"))
    with pytest.raises(ValueError, match="fusion must be one of"):
        CMSASegmenter(**dict(TINY, fusion="aspp"))
    with pytest.raises(ValueError, match="word_context must be one of"):
        CMSASegmenter(**dict(TINY, word_context="transformer"))
    with pytest.raises(ValueError, match="does not apply to word_representation='sentence'"):
        CMSASegmenter(**dict(TINY, word_context="bilstm", word_representation="sentence"))
    with pytest.raises(ValueError, match="ablation of the paper form"):
        CMSASegmenter(**dict(OFFICIAL, attention_variant="pixel"))
    with pytest.raises(ValueError, match="fusion='ppm' fuses three levels"):
        CMSASegmenter(
            **dict(TINY, levels=("res5",), key_dims=(6,), reduce_dims=(None,), fusion="ppm")
        )
    # "single" no longer cuts the levels: it needs exactly one.
    with pytest.raises(ValueError, match="fusion='single' uses one level, got 3 levels"):
        CMSASegmenter(**dict(TINY, fusion="single"))
