"""The demo tests' tiny export (made once per session) and ShapesRef-like pictures."""

import io

import keras
import numpy as np
import pytest
from PIL import Image, ImageDraw

from cmsa_tf.data import preprocess
from cmsa_tf.data.tokenizer import Vocabulary
from cmsa_tf.export import module as export_module
from cmsa_tf.export import saving
from tests.helpers import centre_logits, tiny_segmenter

SIZE, WORDS = 32, 6
EXPRESSIONS = ["the red square on the left", "a green circle at the top"]


@pytest.fixture(autouse=True)
def _seed():
    """NumPy only: seeding TensorFlow clears its kernel caches (slow first SavedModel calls)."""
    np.random.seed(1234)
    yield


def picture(height=40, width=56, seed=0):
    """uint8 RGB: a red square on the left, a green circle at the top, on noise."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 60, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle([2, height // 4, width // 2, 3 * height // 4], fill=(220, 30, 30))
    draw.ellipse([width // 2, 2, width - 3, height // 2], fill=(30, 200, 40))
    return np.asarray(image)


def encode(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A tiny random export of a ShapesRef config: `{"base", "version_dir", "model"}`."""
    root = tmp_path_factory.mktemp("demo_export")
    vocabulary = Vocabulary.build(EXPRESSIONS)
    vocabulary.save(root / "vocab.txt")
    keras.utils.set_random_seed(5)
    model = tiny_segmenter(len(vocabulary), name="cmsa")
    image, _ = preprocess.preprocess_image(picture(), SIZE)
    words = np.array([vocabulary.encode_padded(EXPRESSIONS[0], WORDS)[0]])
    centre_logits(model, {"image": image[None], "words": words})  # a mask over half the picture
    base = root / "saved_models" / "shapes"
    module = export_module.CMSAExportModule(model, str(root / "vocab.txt"), SIZE, WORDS, step=2)
    # What cmsa_tf.export writes for a ShapesRef config (the demo reads config.data.dataset).
    saving.save_module(module, base / "2", {"config": {"data": {"dataset": "shapes"}}})
    return {"base": str(base), "version_dir": str(base / "2"), "model": model}
