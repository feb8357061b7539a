"""CMSASegmenter: shapes, padding/batch invariance, serialisation, and that it learns."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.models.cmsa_segmenter import CMSASegmenter

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


def _inputs(batch=2, size=32, words=((3, 4, 5, 0, 0), (7, 8, 9, 10, 11))):
    rng = np.random.default_rng(0)
    return {
        "image": rng.normal(size=(batch, size, size, 3)).astype("float32") * 50.0,
        "words": np.asarray(words[:batch], dtype="int32"),
    }


@pytest.mark.parametrize("kwargs", [TINY, OFFICIAL], ids=["paper", "official"])
def test_output_shapes_and_attention(kwargs):
    model = CMSASegmenter(**kwargs)
    inputs = _inputs()
    logits = model(inputs)
    assert tuple(logits.shape) == (2, 32, 32, 1)
    assert logits.dtype == "float32"
    out = model(inputs, return_attention=True)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-6, atol=1e-6)
    attention = np.asarray(out["word_attention"])
    assert attention.shape == (2, 3, 5)
    # Fig. 4 rows: a distribution over the real words, nothing on padding.
    np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(attention[0, :, 3:], 0.0)
    assert tuple(out["features"].shape) == (2, 4, 4, kwargs["fusion_channels"])
    assert len(model.gammas) == 3


@pytest.mark.parametrize("output_stride", [16, 32])
def test_other_output_strides(output_stride):
    model = CMSASegmenter(**dict(TINY, output_stride=output_stride))
    out = model(_inputs(size=64), return_attention=True)
    assert tuple(out["logits"].shape) == (2, 64, 64, 1)
    # Levels are fused at res3's resolution (stride 8).
    assert tuple(out["features"].shape[1:3]) == (8, 8)


@pytest.mark.parametrize("fusion", ["gated", "single"])
def test_single_level_skips_fusion(fusion):
    model = CMSASegmenter(
        **dict(TINY, levels=("res5",), key_dims=(6,), reduce_dims=(None,), fusion=fusion)
    )
    out = model(_inputs(), return_attention=True)
    assert tuple(out["logits"].shape) == (2, 32, 32, 1)
    assert tuple(out["word_attention"].shape) == (2, 1, 5)
    assert model.gammas == []


def test_build_makes_every_layer_without_a_keras_warning():
    model = CMSASegmenter(**TINY)
    assert not model.built and model.gammas == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.build({"image": (None, None, None, 3), "words": (None, None)})
        model(_inputs())
    assert not [w for w in caught if "build()" in str(w.message)]
    assert [layer.name for layer in model.layers] == [
        "backbone",
        "word_embedding",
        "bag_of_words",
        "res5_attention",
        "res5_fusion_projection",
        "res4_attention",
        "res4_fusion_projection",
        "res3_attention",
        "res3_fusion_projection",
        "gated_fusion",
        "score",
    ]
    assert all(layer.built for layer in model.layers)


@pytest.mark.parametrize("kwargs", [TINY, OFFICIAL], ids=["paper", "official"])
def test_padding_and_batch_invariance(kwargs):
    model = CMSASegmenter(**kwargs)
    inputs = _inputs()
    logits = np.asarray(model(inputs))
    # Appending padding words changes nothing.
    padded = dict(inputs, words=np.pad(inputs["words"], ((0, 0), (0, 3))))
    np.testing.assert_allclose(model(padded), logits, rtol=1e-5, atol=1e-5)
    # A sample's output does not depend on the rest of its batch.
    alone = {k: v[:1] for k, v in inputs.items()}
    np.testing.assert_allclose(model(alone), logits[:1], rtol=1e-5, atol=1e-5)
    alone = {k: v[1:] for k, v in inputs.items()}
    np.testing.assert_allclose(model(alone), logits[1:], rtol=1e-5, atol=1e-5)
    # And it does depend on the words.
    other = dict(inputs, words=inputs["words"][::-1].copy())
    assert np.abs(np.asarray(model(other))[0] - logits[0]).max() > 1e-6


# Only the words that exist: the same expressions, padded left or right to any T, give the same
# logits and word attention as each expression alone without padding.
EXPRESSIONS = ((3, 4), (7, 8, 9, 10), (5,))
REAL_WORD_CASES = {
    "paper": TINY,
    "official": OFFICIAL,
    "official_sentence": dict(OFFICIAL, word_representation="sentence"),
    "attention_none": dict(TINY, attention_variant="none"),
    "attention_word": dict(TINY, attention_variant="word"),
    "attention_pixel": dict(TINY, attention_variant="pixel"),
    "attention_word_pixel_pair": dict(TINY, attention_variant="word_pixel_pair"),
    "sentence": dict(TINY, word_representation="sentence"),
    "fusion_single": dict(
        TINY, fusion="single", levels=("res5",), key_dims=(6,), reduce_dims=(None,)
    ),
    "fusion_convlstm": dict(TINY, fusion="convlstm"),
}


def _padded(num_words, side):
    rows = np.zeros((len(EXPRESSIONS), num_words), dtype="int32")
    for row, expression in zip(rows, EXPRESSIONS):
        if side == "right":
            row[: len(expression)] = expression
        else:
            row[num_words - len(expression) :] = expression
    return rows


@pytest.mark.parametrize("kwargs", list(REAL_WORD_CASES.values()), ids=list(REAL_WORD_CASES))
def test_padding_anywhere_computes_only_the_real_words(kwargs):
    import tensorflow as tf

    model = CMSASegmenter(**kwargs)
    image = _inputs(batch=1)["image"]
    scales = np.array([1.0, -0.5, 0.8], "float32")[:, None, None, None]
    images = np.repeat(image, len(EXPRESSIONS), axis=0) * scales  # 3 different images
    # Reference: each expression alone, without any padding.
    alone = [
        model({"image": images[i : i + 1], "words": np.array([e], "int32")}, return_attention=True)
        for i, e in enumerate(EXPRESSIONS)
    ]
    seen = []
    attention_call = model.attention_layers[0].call

    def recording_call(visual, words, *args, **kw):
        seen.append(words.shape[1])
        return attention_call(visual, words, *args, **kw)

    model.attention_layers[0].call = recording_call

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32),
            tf.TensorSpec([None, None], tf.int32),
        ]
    )
    def in_graph(image, words):
        return model({"image": image, "words": words}, return_attention=True)

    for num_words in (6, 20):
        for side in ("left", "right"):
            words = _padded(num_words, side)
            for out in (
                model({"image": images, "words": words}, return_attention=True),
                in_graph(images, words),
            ):
                for i, reference in enumerate(alone):
                    logits = np.asarray(reference["logits"])[0]
                    np.testing.assert_allclose(
                        out["logits"][i], logits, rtol=1e-5, atol=1e-5 * np.abs(logits).max()
                    )
                    expected = np.zeros((len(model.levels), num_words), "float32")
                    expected[:, words[i] != 0] = np.asarray(reference["word_attention"])[0]
                    np.testing.assert_allclose(out["word_attention"][i], expected, atol=1e-6)
    # The attention ran over the longest expression's 4 words (1 sentence word for CMSA-S).
    longest = 1 if kwargs.get("word_representation") == "sentence" else 4
    assert longest in seen and set(seen) <= {longest, None}  # None: traced with an unknown T


def test_config_round_trip_and_keras_file(tmp_path):
    model = CMSASegmenter(**OFFICIAL)
    inputs = _inputs()
    expected = np.asarray(model(inputs))
    config = model.get_config()
    clone = CMSASegmenter.from_config(config)
    assert clone.get_config() == config
    clone(inputs)
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(inputs), expected)

    path = tmp_path / "cmsa.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, CMSASegmenter)
    np.testing.assert_array_equal(loaded(inputs), expected)


def test_bad_arguments():
    with pytest.raises(ValueError, match="levels"):
        CMSASegmenter(**dict(TINY, levels=("res5", "res2", "res3")))
    with pytest.raises(ValueError, match="key_dims"):
        CMSASegmenter(**dict(TINY, key_dims=(6, 6)))
    with pytest.raises(ValueError, match="vocab_size"):
        CMSASegmenter(**dict(TINY, vocab_size=None))
    with pytest.raises(ValueError, match="'image'"):
        CMSASegmenter(**TINY)({"img": np.zeros((1, 32, 32, 3))})


@pytest.mark.slow
def test_few_steps_halve_the_loss():
    from cmsa_tf.losses import SegmentationLoss

    model = CMSASegmenter(**dict(TINY, freeze_batchnorm=True))
    inputs = _inputs(batch=1)
    mask = np.zeros((1, 32, 32, 1), "float32")
    mask[:, 8:20, 10:26] = 1.0
    loss_fn = SegmentationLoss(pixel_reduction="mean")
    optimizer = keras.optimizers.Adam(1e-2)
    import tensorflow as tf

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(mask, model(inputs, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    first = float(loss_fn(mask, model(inputs, training=True)))
    for _ in range(30):
        step()
    last = float(loss_fn(mask, model(inputs, training=True)))
    assert last < 0.5 * first, (first, last)


@pytest.mark.parametrize("kwargs", [TINY, OFFICIAL], ids=["paper", "official"])
def test_tf_checkpoint_restores_every_variable(tmp_path, kwargs):
    """Training checkpoints go through tf.train.Checkpoint: nothing may be left out of it."""
    import tensorflow as tf

    model = CMSASegmenter(**kwargs)
    inputs = _inputs()
    expected = np.asarray(model(inputs))
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    saved = {name for name, _ in tf.train.list_variables(path)}
    assert len([n for n in saved if n.endswith("VARIABLE_VALUE")]) == len(model.variables)

    keras.utils.set_random_seed(99)
    clone = CMSASegmenter(**kwargs)
    clone(inputs)
    assert np.abs(np.asarray(clone(inputs)) - expected).max() > 1e-6
    tf.train.Checkpoint(model=clone).read(path).assert_consumed()
    for a, b in zip(model.variables, clone.variables):
        assert a.path.split("/", 1)[1] == b.path.split("/", 1)[1]
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(clone(inputs), expected)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_unknown_image_size_in_a_graph(output_stride):
    import tensorflow as tf

    model = CMSASegmenter(**dict(TINY, output_stride=output_stride))
    inputs = _inputs(size=48)
    expected = np.asarray(model(inputs))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32),
            tf.TensorSpec([None, None], tf.int32),
        ]
    )
    def run(image, words):
        return model({"image": image, "words": words})

    np.testing.assert_allclose(run(inputs["image"], inputs["words"]), expected, atol=1e-5)
    other = _inputs(size=40)
    assert tuple(run(other["image"], other["words"]).shape) == (2, 40, 40, 1)


@pytest.mark.parametrize("size", [(32, 32), (40, 24)])
def test_tf1_upsampling_is_tf1_resize_bilinear(size):
    from cmsa_tf.models.cmsa_segmenter import UPSAMPLING, upsample

    assert UPSAMPLING == ("half_pixel", "tf1")
    scores = tf.random.normal([2, 4, 3, 1])
    expected = tf.compat.v1.image.resize_bilinear(scores, size)  # TF1 defaults
    np.testing.assert_array_equal(upsample(scores, size, "tf1"), expected)
    np.testing.assert_array_equal(
        upsample(scores, size), tf.image.resize(scores, size, method="bilinear")
    )
    # TF1 samples source row i * h / H: output row 0 is input row 0, exactly.
    np.testing.assert_array_equal(expected[:, 0, 0], scores[:, 0, 0])
    assert np.abs(np.asarray(upsample(scores, size)) - expected).max() > 1e-3


def test_upsampling_is_an_argument_of_the_model():
    model = CMSASegmenter(
        vocab_size=10,
        embedding_dim=8,
        backbone_depth=18,
        backbone_width=8,
        key_dims=(4, 4, 4),
        fusion_channels=4,
        upsampling="tf1",
    )
    assert model.get_config()["upsampling"] == "tf1"
    with pytest.raises(ValueError, match="upsampling must be one of"):
        CMSASegmenter(vocab_size=10, upsampling="nearest")


@pytest.mark.parametrize("kwargs", [TINY, OFFICIAL], ids=["paper", "official"])
def test_image_index_shares_the_backbone_exactly(kwargs):
    """Expressions of one image given once with `image_index` (cmsa_tf.data.image_groups) get the
    logits and gradients of the same images repeated per expression (inference BatchNorm)."""
    model = CMSASegmenter(**kwargs, trainable_stages=("conv1", "res2", "res3", "res4", "res5"))
    rng = np.random.default_rng(3)
    images = rng.normal(size=(2, 32, 32, 3)).astype("float32") * 50.0
    index = np.asarray([0, 0, 1, 1, 0], dtype="int32")
    words = np.asarray(
        [(3, 4, 5, 0), (7, 8, 0, 0), (9, 10, 11, 12), (4, 0, 0, 0), (5, 6, 7, 0)], dtype="int32"
    )
    shared = {"image": images, "words": words, "image_index": index}
    repeated = {"image": images[index], "words": words}
    target = rng.uniform(size=(5, 32, 32, 1)).astype("float32")

    def logits_and_grads(inputs):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=False)
            loss = tf.reduce_mean(tf.square(tf.sigmoid(logits) - target))
        return logits, tape.gradient(loss, model.trainable_variables)

    logits_s, grads_s = logits_and_grads(shared)
    logits_r, grads_r = logits_and_grads(repeated)
    assert logits_s.shape == (5, 32, 32, 1)
    np.testing.assert_allclose(logits_s, logits_r, rtol=1e-5, atol=1e-5)
    backbone = {id(v) for v in model.backbone.trainable_variables}
    assert sum(id(v) in backbone for v in model.trainable_variables) > 10
    assert all(g is not None for g in grads_s)
    grads_s = [tf.convert_to_tensor(g).numpy() for g in grads_s]
    grads_r = [tf.convert_to_tensor(g).numpy() for g in grads_r]
    # Relative to each variable's gradient, or to the largest one where a gradient is zero up to
    # rounding (a key bias, to which the softmax is invariant).
    largest = max(float(np.abs(g).max()) for g in grads_r)
    for variable, g_s, g_r in zip(model.trainable_variables, grads_s, grads_r):
        scale = max(float(np.abs(g_r).max()), 1e-4 * largest)
        np.testing.assert_allclose(g_s / scale, g_r / scale, atol=1e-4, err_msg=variable.path)
