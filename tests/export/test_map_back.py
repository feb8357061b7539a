"""`serving_default` maps its masks back to the original size as `config.eval.protocol` says:
equal to the evaluation protocols (`ExactProtocol`, `AuthorsProtocol`) on the same logits."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import map_back, preprocess
from cmsa_tf.data.tokenizer import Vocabulary
from cmsa_tf.evaluation import protocols
from cmsa_tf.export.module import CMSAExportModule
from tests.export.common import encode, scene
from tests.helpers import centre_logits, tiny_segmenter

SIZE, WORDS = 32, 5
EXPRESSION = "the red square"
# Odd sizes, portrait and landscape, one batch of different sizes.
SIZES = [(23, 37), (41, 17), (9, 60), (33, 33)]


@pytest.fixture(scope="module")
def model_and_vocab(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_map_back")
    vocabulary = Vocabulary.build(["the red square on the left"])
    vocabulary.save(root / "vocab.txt")
    keras.utils.set_random_seed(7)
    model = tiny_segmenter(len(vocabulary))
    model({"image": np.zeros((1, SIZE, SIZE, 3), "float32"), "words": np.ones((1, WORDS), "int32")})
    # Centre the logits of the first picture at 0, so each mask has both labels and a border.
    image, _ = preprocess.preprocess_image(tf.constant(scene(*SIZES[0], seed=0)), SIZE)
    words = np.array([vocabulary.encode_padded(EXPRESSION, WORDS)[0]])
    centre_logits(model, {"image": image[None], "words": words})
    return model, vocabulary, str(root / "vocab.txt")


def _reference(model, vocabulary, picture, protocol):
    """The evaluation protocol's mask for the model's logits on `picture`."""
    image, _ = preprocess.preprocess_image(tf.constant(picture), SIZE)
    words = np.array([vocabulary.encode_padded(EXPRESSION, WORDS)[0]])
    padded_logits = model({"image": image[None], "words": words}).numpy()[0, ..., 0]
    height, width = picture.shape[:2]
    item = {
        "ground_truth": np.zeros((height, width), bool),
        "padded_logits": padded_logits,
        "probabilities": map_back.unpad_and_resize(
            tf.sigmoid(padded_logits)[..., None],
            preprocess.resize_and_pad_info(height, width, SIZE),
        ).numpy()[..., 0],
    }
    mask = protocols.get_protocol(protocol).mask(item)
    return mask, padded_logits


@pytest.mark.parametrize("map_back", ["exact", "authors"])
def test_serve_masks_equal_the_protocol_of_the_same_name(model_and_vocab, map_back):
    model, vocabulary, vocab_file = model_and_vocab
    module = CMSAExportModule(
        model, vocab_file, image_size=SIZE, max_words=WORDS, map_back=map_back
    )
    pictures = [scene(h, w, seed=i) for i, (h, w) in enumerate(SIZES)]
    out = module.serve(
        tf.constant([encode(p) for p in pictures]), tf.constant([EXPRESSION] * len(pictures))
    )
    assert module.metadata()["map_back"] == map_back
    assert module.map_back.numpy().decode() == map_back
    other = "authors" if map_back == "exact" else "exact"
    differs = 0
    for i, (height, width) in enumerate(SIZES):
        mask = out["mask"].numpy()[i]
        want, padded_logits = _reference(model, vocabulary, pictures[i], map_back)
        assert 0 < want.mean() < 1  # both labels present
        np.testing.assert_array_equal(mask[:height, :width], want.astype(np.uint8))
        assert not mask[height:].any() and not mask[:, width:].any()
        probabilities = out["probabilities"].numpy()[i, :height, :width]
        if map_back == "authors":
            sigmoid = tf.sigmoid(padded_logits).numpy().astype(np.float64)
            expected = protocols.authors_map_back(sigmoid, height, width)
        else:
            expected = _reference_probabilities(padded_logits, height, width)
        np.testing.assert_allclose(probabilities, expected, atol=1e-6)
        differs += int((want != _reference(model, vocabulary, pictures[i], other)[0]).sum())
    assert differs > 0  # the two options give other masks on these images


def _reference_probabilities(padded_logits, height, width):
    info = preprocess.resize_and_pad_info(height, width, SIZE)
    return map_back.unpad_and_resize(tf.sigmoid(padded_logits)[..., None], info).numpy()[..., 0]


def test_unknown_map_back_is_refused(model_and_vocab):
    model, _, vocab_file = model_and_vocab
    with pytest.raises(ValueError, match="map_back"):
        CMSAExportModule(model, vocab_file, image_size=SIZE, max_words=WORDS, map_back="crf")


@pytest.mark.slow
def test_a_saved_export_keeps_the_authors_map_back(model_and_vocab, tmp_path):
    from cmsa_tf.export import saving

    model, vocabulary, vocab_file = model_and_vocab
    module = CMSAExportModule(
        model, vocab_file, image_size=SIZE, max_words=WORDS, map_back="authors"
    )
    directory = saving.save_module(module, tmp_path / "1")
    loaded = tf.saved_model.load(directory)
    assert loaded.map_back.numpy().decode() == "authors"
    pictures = [scene(h, w, seed=i) for i, (h, w) in enumerate(SIZES[:2])]
    out = loaded.signatures["serving_default"](
        image_bytes=tf.constant([encode(p) for p in pictures]),
        expression=tf.constant([EXPRESSION] * len(pictures)),
    )
    for i, (height, width) in enumerate(SIZES[:2]):
        want, _ = _reference(model, vocabulary, pictures[i], "authors")
        np.testing.assert_array_equal(
            out["mask"].numpy()[i, :height, :width], want.astype(np.uint8)
        )
