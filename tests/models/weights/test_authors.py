"""The import of the authors' TF1 checkpoint: every variable placed, the authors' function kept."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.models import restore
from cmsa_tf.models.factory import build_model
from cmsa_tf.models.weights import authors
from tests.helpers import load_config
from tests.models.weights import authors_graph

IMAGE_SIZE = 32
MAX_WORDS = 5
# Their format: empty lines are unused ids, "man" on two lines maps to the last one (11).
VOCAB_LINES = ["<pad>", "<go>", "<eos>", "<unk>", "the", "man", "", "left", ".", "red", "", "man"]
DIMS = authors_graph.HeadDims(vocab_size=len(VOCAB_LINES))


def tiny_authors_config():
    """`configs/refcocog_google.py:authors` at the dims of `DIMS` (ResNet-18, width 8)."""
    config = load_config("refcocog_google", "authors")
    config.data.image_size = IMAGE_SIZE
    config.data.max_words = MAX_WORDS
    model = config.model
    model.embedding_dim = DIMS.embedding_dim
    model.backbone.depth = 18
    model.backbone.width = 8
    model.backbone.weights = None
    model.res5_projection_dim = DIMS.res5_projection
    model.attention.key_dims = DIMS.key_dims
    model.attention.reduce_dims = (None, *DIMS.reduce_dims)
    model.fusion_channels = DIMS.fusion_channels
    return config


def write_vocab(path):
    path.write_text("\n".join(VOCAB_LINES) + "\n")
    return str(path)


def _model(config, vocab_size=DIMS.vocab_size):
    model_config = config.model.copy_and_resolve_references()
    return build_model(model_config, vocab_size, IMAGE_SIZE, MAX_WORDS)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(config, checkpoint prefix, values) of an authors' checkpoint at the tiny dims."""
    config = tiny_authors_config()
    directory = tmp_path_factory.mktemp("authors_ckpt")
    prefix, values = authors_graph.write_checkpoint(
        directory / "model.ckpt-800000",
        DIMS,
        _model(config).backbone,
        IMAGE_SIZE,
        MAX_WORDS,
    )
    return config, prefix, values


def test_every_head_variable_has_a_name_and_all_48_are_distinct(written):
    config, _, values = written
    head = authors.head_variables(_model(config))
    names = [name for name, _, _ in head]
    assert len(names) == 48 == len(set(names))
    in_checkpoint = {k[len("text_objseg/") :] for k in values if k.startswith("text_objseg/")}
    assert set(names) <= in_checkpoint
    assert len({id(variable) for _, variable, _ in head}) == 48


def test_import_places_every_value_and_lists_what_it_ignores(written):
    config, prefix, values = written
    model = _model(config)
    report = authors.import_authors_checkpoint(model, prefix)
    assert report.step == 800000 and report.vocab_size == DIMS.vocab_size
    for name, variable, _ in authors.head_variables(model):
        expected = values["text_objseg/" + name]
        np.testing.assert_array_equal(variable.numpy(), expected.reshape(variable.shape))
    conv1 = model.backbone.get_layer("conv1").kernel.numpy()
    np.testing.assert_array_equal(conv1, values["conv1/weights"])
    assert {key for key, _ in report.ignored} == {
        "fc1_voc12_c0/weights",
        "fc1_voc12_c0/biases",
        "text_objseg/mlp_c5/biases/Adam",
        "text_objseg/mlp_c5/biases/Adam_1",
        "text_objseg/beta1_power",
        "text_objseg/beta2_power",
        "text_objseg/Variable",
    }
    assert report.unexpected == []
    assert len(report.loaded) == len(values) - len(report.ignored)


def test_the_imported_model_computes_the_authors_graph(written):
    """Logits at the input size equal their graph's `up` on the same backbone features."""
    config, prefix, values = written
    model = _model(config)
    authors.import_authors_checkpoint(model, prefix)
    rng = np.random.default_rng(3)
    images = rng.normal(scale=50.0, size=(1, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    # Left-padded, as their tokenizer writes them; and a sentence of one word.
    for words in ([[0, 4, 11, 3, 7]], [[0, 0, 0, 0, 9]], [[4, 5, 7, 9, 11]]):
        words = np.array(words, np.int32)
        logits = model({"image": images, "words": words}).numpy()
        features = model.backbone(images)
        pred, up = authors_graph.run_head(
            values,
            DIMS,
            features["res5"].numpy(),
            features["res4"].numpy(),
            features["res3"].numpy(),
            words,
            IMAGE_SIZE,
        )
        scale = np.abs(up).max()
        assert scale > 1e-3
        np.testing.assert_allclose(logits, up, rtol=0, atol=1e-5 * scale)
        # The half-pixel upsampling of the default configs gives another function.
        assert np.abs(tf.image.resize(pred, [IMAGE_SIZE] * 2) - up).max() > 1e-3 * scale


def test_missing_and_misshapen_variables_are_named(written, tmp_path):
    config, _, _ = written
    drop = (
        "text_objseg/CMSA_C4/conv3d_2/kernel",
        "text_objseg/mgate/x2/Variable",
        "res2a_branch2a/weights",
    )
    prefix, _ = authors_graph.write_checkpoint(
        tmp_path / "broken.ckpt",
        DIMS,
        _model(config).backbone,
        IMAGE_SIZE,
        MAX_WORDS,
        drop=drop,
        reshape=("text_objseg/conv2d_1/bias", "bn_conv1/gamma"),
    )
    model = _model(config)
    with pytest.raises(ValueError) as error:
        authors.import_authors_checkpoint(model, prefix)
    message = str(error.value)
    assert "(5 problems)" in message
    for name in drop:
        assert f"{name}: missing" in message
    assert "text_objseg/conv2d_1/bias: shape [7]" in message
    assert "bn_conv1/gamma: shape [9]" in message


def test_extra_variables_are_reported_not_read(written, tmp_path):
    config, prefix, values = written
    extra = dict(values, **{"text_objseg/lstm/kernel": np.zeros([2, 2], np.float32)})
    graph = tf.Graph()
    with graph.as_default():
        variables = {k: tf.compat.v1.Variable(v, name=k) for k, v in extra.items()}
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            path = saver.save(session, str(tmp_path / "extra.ckpt"), write_meta_graph=False)
    report = authors.import_authors_checkpoint(_model(config), path)
    assert report.unexpected == ["text_objseg/lstm/kernel"]


def test_another_architecture_is_refused(written):
    config, prefix, _ = written
    config = config.copy_and_resolve_references()
    config.model.fusion = "ppm"
    with pytest.raises(ValueError, match="fusion 'ppm'"):
        authors.import_authors_checkpoint(_model(config), prefix)


def test_import_to_workdir_restores_and_checks_the_vocabulary(written, tmp_path):
    config, prefix, values = written
    workdir = str(tmp_path / "workdir")
    vocab = write_vocab(tmp_path / "vocabulary.txt")
    report = authors.import_to_workdir(config, prefix, vocab, workdir)
    assert report.step == 800000
    assert tf.train.latest_checkpoint(restore.checkpoint_dir(workdir)).endswith("ckpt-800000")
    with open(os.path.join(workdir, "vocab.txt"), "rb") as f:
        assert f.read() == open(vocab, "rb").read()
    with open(os.path.join(workdir, authors.REPORT_FILE)) as f:
        assert "text_objseg/Variable (float global step)" in json.load(f)["ignored"]
    # No TFRecord manifest is needed: the workdir's vocabulary gives the size.
    config.data.tfrecord_dir = str(tmp_path / "no_records")
    model, _, step = restore.build_and_restore(config, workdir=workdir)
    assert step == 800000
    np.testing.assert_array_equal(model.score.kernel.numpy(), values["text_objseg/score/DW"])
    with pytest.raises(FileExistsError, match="already holds a checkpoint"):
        authors.import_to_workdir(config, prefix, vocab, workdir)
    short = tmp_path / "short.txt"
    short.write_text("\n".join(VOCAB_LINES[:-1]) + "\n")
    with pytest.raises(ValueError, match="has 11 ids .* 12 rows"):
        authors.import_to_workdir(config, prefix, str(short), str(tmp_path / "other"))
