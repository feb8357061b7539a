"""The demo's pictures: heat maps equal visualize's on the Keras model, colours, masks."""

import os

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf import visualize
from cmsa_tf.data import preprocess
from cmsa_tf.data.tokenizer import Vocabulary
from cmsa_tf.demo import client as client_lib
from cmsa_tf.demo import render
from tests.demo.conftest import SIZE, WORDS, encode, picture


@pytest.fixture(scope="module")
def local(tiny_export):
    return client_lib.LocalClient(tiny_export["base"])


def test_heat_maps_equal_visualize_on_the_keras_models_features(tiny_export, local):
    """The fused map through the export equals `visualize.heat_map` of the model's own features
    and score weights (the paper's Fig. 5); the level maps are the score convolution on each
    level's map."""
    image = picture(40, 56)
    expression = "the red square"
    item = local.predict(encode(image), [expression])[0]
    model = tiny_export["model"]
    vocabulary = Vocabulary.from_file(os.path.join(tiny_export["version_dir"], "assets/vocab.txt"))
    pixels, _ = preprocess.preprocess_encoded_images(tf.constant([encode(image)]), SIZE)
    words = np.array([vocabulary.encode_padded(expression, WORDS)[0]])
    outputs = model({"image": pixels, "words": words}, return_attention=True)
    kernel, bias = visualize.score_weights(model)

    maps = dict(render.heat_maps(item, 40, 56))
    assert list(maps) == [render.FUSED_NAME, "res5", "res4", "res3"]
    window = (SIZE, 4, 0, 23, 32)
    assert item["window"] == window
    want = visualize.heat_map(
        outputs["features"][0].numpy(),
        (40, 56),
        score_kernel=kernel,
        score_bias=bias,
        window=window,
    )
    np.testing.assert_allclose(maps[render.FUSED_NAME], want, atol=1e-4)
    for level, name in enumerate(model.levels):
        features = outputs["level_features"][0, level].numpy()
        want = visualize.heat_map(features, (40, 56), score_kernel=kernel, window=window)
        np.testing.assert_allclose(maps[name], want, atol=1e-4)
    for heat in maps.values():
        assert heat.shape == (40, 56) and heat.min() == 0.0 and heat.max() == pytest.approx(1.0)
    # The fused scores are the logits before their bias: bias added and upsampled, the logits.
    np.testing.assert_allclose(
        item["fused_scores"] + bias[0],
        visualize.score_contributions(outputs["features"][0].numpy(), kernel).sum(-1) + bias[0],
        atol=1e-4,
    )
    panels = render.heat_map_images(item, image, expression)
    assert [caption for _, caption in panels] == [f"{n}: {expression}" for n in maps]
    assert all(p.ndim == 3 and p.shape[-1] == 3 and p.dtype == np.uint8 for p, _ in panels)


def test_heat_maps_need_the_score_outputs():
    item = {"word_attention": np.zeros((3, 6)), "tokens": ["red"]}
    assert render.heat_maps(item, 10, 10) == []


def test_overlay_tints_each_expression_in_its_own_colour():
    image = np.full((20, 30, 3), 100, np.uint8)
    first = np.zeros((20, 30), bool)
    first[2:8, 2:10] = True
    second = np.zeros((20, 30), bool)
    second[10:18, 15:28] = True
    out = render.overlay(image, [first, second], alpha=0.5)
    # Inside each mask (away from its outline) the pixel moved halfway to the mask's colour.
    for mask, colour in ((first, render.COLOURS[0]), (second, render.COLOURS[1])):
        rows, cols = np.nonzero(mask)
        centre = out[int(rows.mean()), int(cols.mean())]
        np.testing.assert_allclose(centre, np.rint((100 + np.array(colour)) / 2), atol=1)
    outside = ~(first | second)
    np.testing.assert_array_equal(out[outside], image[outside])
    with pytest.raises(ValueError, match="index must be in"):
        render.colour(len(render.COLOURS))


def test_binary_mask_uses_the_exports_mask_at_its_threshold():
    probabilities = np.array([[0.2, 0.5], [0.7, 0.9]], np.float32)
    item = {"probabilities": probabilities, "mask": np.array([[0, 0], [1, 1]], np.uint8)}
    # At 0.5 the export's own mask (here deliberately not probabilities >= 0.5).
    np.testing.assert_array_equal(render.binary_mask(item, 0.5, 0.5), [[False, False], [1, 1]])
    np.testing.assert_array_equal(render.binary_mask(item, 0.8, 0.5), [[0, 0], [0, 1]])
    np.testing.assert_array_equal(render.binary_mask(item, 0.1, 0.5), [[1, 1], [1, 1]])
    with pytest.raises(ValueError, match="threshold must be in"):
        render.binary_mask(item, 1.5, 0.5)
    np.testing.assert_array_equal(render.mask_image([[True, False]]), [[255, 0]])


def test_attention_image_has_one_column_per_word_read():
    item = {
        "word_attention": np.array([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]]),
        "tokens": ["red", "square"],
        "level_names": ["res5", "res4"],
    }
    picture_ = render.attention_image(item, "red square")
    assert picture_.ndim == 3 and picture_.dtype == np.uint8
    assert render.level_names({"word_attention": np.zeros((3, 4))}) == [
        "level 0",
        "level 1",
        "level 2",
    ]


def test_stack_puts_pictures_one_below_the_other():
    a = np.zeros((2, 3, 3), np.uint8)
    b = np.full((1, 5, 3), 7, np.uint8)
    out = render.stack([a, b], gap=1)
    assert out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out[:2, :3], a)
    np.testing.assert_array_equal(out[3], b[0])
    assert (out[:2, 3:] == 255).all() and (out[2] == 255).all()
