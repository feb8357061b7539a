"""`serving_default` resizes and pads images with the configured preprocessing, as training does."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import map_back, preprocess
from cmsa_tf.data.tokenizer import Vocabulary
from cmsa_tf.export.module import CMSAExportModule
from tests.export.common import encode, scene
from tests.helpers import tiny_segmenter

SIZE, WORDS = 32, 5


@pytest.fixture(scope="module")
def model_and_vocab(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_preprocessing")
    vocabulary = Vocabulary.build(["the red square on the left"])
    vocabulary.save(root / "vocab.txt")
    keras.utils.set_random_seed(5)
    model = tiny_segmenter(len(vocabulary))
    model({"image": np.zeros((1, SIZE, SIZE, 3), "float32"), "words": np.ones((1, WORDS), "int32")})
    return model, vocabulary, str(root / "vocab.txt")


@pytest.mark.parametrize("preprocessing", ["default", "authors"])
def test_serving_default_uses_the_configured_preprocessing(model_and_vocab, preprocessing):
    model, vocabulary, vocab_file = model_and_vocab
    module = CMSAExportModule(
        model, vocab_file, image_size=SIZE, max_words=WORDS, preprocessing=preprocessing
    )
    picture = scene(23, 37, seed=4)
    out = module.serve(tf.constant([encode(picture)]), tf.constant(["the red square"]))

    words = np.array([vocabulary.encode_padded("the red square", WORDS)[0]])

    def keras_probabilities(option):
        image, info = preprocess.preprocess_image(tf.constant(picture), SIZE, preprocessing=option)
        logits = model({"image": image[None], "words": words})
        return map_back.unpad_and_resize(tf.sigmoid(logits[0]), info)[..., 0].numpy()

    served = out["probabilities"].numpy()[0]
    np.testing.assert_allclose(served, keras_probabilities(preprocessing), atol=1e-6)
    other = "authors" if preprocessing == "default" else "default"
    assert np.abs(served - keras_probabilities(other)).max() > 1e-5
    assert module.metadata()["preprocessing"] == preprocessing


def test_the_two_preprocessings_give_other_model_inputs():
    # So the equality above tells the two apart: "authors" rounds the resized image to uint8.
    picture = tf.constant(scene(23, 37, seed=4))
    default, _ = preprocess.preprocess_image(picture, SIZE, preprocessing="default")
    authors, _ = preprocess.preprocess_image(picture, SIZE, preprocessing="authors")
    difference = np.abs(default.numpy() - authors.numpy())
    assert difference.max() <= 0.5 + 1e-4 and (difference > 0.1).mean() > 0.05


def test_unknown_preprocessing_is_refused(model_and_vocab):
    model, _, vocab_file = model_and_vocab
    with pytest.raises(ValueError, match="preprocessing"):
        CMSAExportModule(model, vocab_file, image_size=SIZE, max_words=WORDS, preprocessing="x")
