"""End to end: import the authors' checkpoint -> export -> the SavedModel -> cmsa-predict."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.data.test_authors_tokenizer import their_indices, their_vocab_dict
from tests.helpers import REPO
from tests.models.weights import authors_graph
from tests.models.weights.test_authors import (
    DIMS,
    IMAGE_SIZE,
    MAX_WORDS,
    VOCAB_LINES,
    _model,
    tiny_authors_config,
    write_vocab,
)

CONFIG = "configs/refcocog_google.py:authors"
OVERRIDES = [
    f"--config.data.image_size={IMAGE_SIZE}",
    f"--config.data.max_words={MAX_WORDS}",
    f"--config.model.embedding_dim={DIMS.embedding_dim}",
    "--config.model.backbone.depth=18",
    "--config.model.backbone.width=8",
    "--config.model.backbone.weights=None",
    f"--config.model.res5_projection_dim={DIMS.res5_projection}",
    f"--config.model.attention.key_dims={DIMS.key_dims}",
    f"--config.model.attention.reduce_dims=(None, {DIMS.reduce_dims[0]}, {DIMS.reduce_dims[1]})",
    f"--config.model.fusion_channels={DIMS.fusion_channels}",
    "--config.data.tfrecord_dir=/nonexistent",  # no TFRecords needed
]


def _run(module, *args):
    process = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return process


@pytest.mark.slow
def test_import_export_predict(tmp_path):
    config = tiny_authors_config()
    prefix, values = authors_graph.write_checkpoint(
        tmp_path / "model.ckpt-800000", DIMS, _model(config).backbone, IMAGE_SIZE, MAX_WORDS
    )
    vocab = write_vocab(tmp_path / "vocabulary_Gref.txt")
    workdir, exports = str(tmp_path / "workdir"), str(tmp_path / "saved_models")
    imported = _run(
        "cmsa_tf.import_authors",
        f"--checkpoint={prefix}",
        f"--vocab={vocab}",
        f"--workdir={workdir}",
        f"--config={CONFIG}",
        *OVERRIDES,
    )
    assert "at step 800000" in imported.stdout and "fc1_voc12_c0/weights" in imported.stdout
    exported = _run(
        "cmsa_tf.export",
        f"--config={CONFIG}",
        *OVERRIDES,
        f"--workdir={workdir}",
        f"--export_dir={exports}",
    )
    version_dir = exported.stdout.strip().splitlines()[-1]
    assert version_dir.endswith(os.path.join("saved_models", "800000"))

    loaded = tf.saved_model.load(version_dir)
    # The logits equal the authors' graph on the same preprocessed input.
    rng = np.random.default_rng(5)
    image = rng.normal(scale=50.0, size=(1, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    words = np.array([[0, 0, 4, 11, 7]], np.int32)
    logits = loaded.signatures["predict_preprocessed"](image=image, words=words)["logits"]
    model = _model(config)
    from cmsa_tf.models.weights import authors

    authors.import_authors_checkpoint(model, prefix)
    features = model.backbone(image)
    _, up = authors_graph.run_head(
        values,
        DIMS,
        *(features[level].numpy() for level in ("res5", "res4", "res3")),
        words,
        IMAGE_SIZE,
    )
    np.testing.assert_allclose(logits.numpy(), up[..., 0], atol=1e-5 * np.abs(up).max())

    # The word ids equal the authors' tokenisation with their vocabulary file.
    picture = rng.integers(0, 255, size=(24, 40, 3), dtype=np.uint8)
    image_path = tmp_path / "photo.png"
    Image.fromarray(picture).save(image_path)
    sentences = ["The man, on the left.", "left man man the red .", "2nd . man", "caf\u00e9 man!"]
    served = loaded.signatures["serving_default"](
        image_bytes=tf.constant([image_path.read_bytes()] * len(sentences)),
        expression=tf.constant(sentences),
    )
    vocab_dict = their_vocab_dict(VOCAB_LINES)
    expected = [their_indices(s, vocab_dict, MAX_WORDS) for s in sentences]
    np.testing.assert_array_equal(served["words"].numpy(), expected)
    assert served["tokens"].numpy()[0].tolist() == [b"the", b"man", b", ", b"on", b"the"]

    out = tmp_path / "out" / "photo.png"
    _run(
        "cmsa_tf.predict",
        f"--model={exports}",
        f"--image={image_path}",
        f"--expression={sentences[0]}",
        f"--output={out}",
    )
    mask = np.asarray(Image.open(tmp_path / "out" / "photo_mask.png"))
    np.testing.assert_array_equal(mask > 0, served["mask"].numpy()[0][:24, :40] > 0)
