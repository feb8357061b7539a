"""Shared test setup: quiet TensorFlow, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield


@pytest.fixture(scope="session")
def tiny_shapes_tfrecords(tmp_path_factory):
    """A tiny ShapesRef, generated and built into TFRecords through the real tools.

    Returns the TFRecord directory (with manifest.json and vocab.txt).
    """
    from cmsa_tf.data.build import build_tfrecords
    from cmsa_tf.data.shapes import generate_shapes_ref

    root = tmp_path_factory.mktemp("shapes_ref")
    generate_shapes_ref(
        str(root),
        num_train_images=24,
        num_val_images=6,
        num_test_images=6,
        image_size=48,
        seed=0,
        num_workers=1,
        progress=False,
    )
    out = root / "tfrecords"
    build_tfrecords(
        str(root),
        "shapes",
        "shapes",
        str(root / "images"),
        str(out),
        num_shards=2,
        num_workers=1,
        progress=False,
    )
    return str(out)


# configs/shapes.py scaled down to a few seconds of CPU (same keys work as --config.KEY=VALUE flags).
TINY_OVERRIDES = {
    "data.image_size": 32,
    "data.max_words": 6,
    "data.shuffle_buffer": 8,
    "model.embedding_dim": 8,
    "model.backbone.width": 4,
    "model.attention.key_dims": (4, 4, 4),
    "model.fusion_channels": 8,
    "train.batch_size": 4,
    "train.steps": 4,
    "train.checkpoint_every": 2,
    "train.log_every": 1,
    "train.eval_every": 0,
    "eval.batch_size": 4,
}


def load_config(name, arg=None):
    import importlib.util

    path = CONFIG_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def tiny_shapes_config(tfrecord_dir, arg=None):
    config = load_config("shapes", arg)
    config.data.tfrecord_dir = tfrecord_dir
    config.update_from_flattened_dict(TINY_OVERRIDES)
    if config.model.attention.form == "official":
        config.model.attention.reduce_dims = (None, 8, 8)
        config.model.res5_projection_dim = 8
    return config


def tiny_flags(tfrecord_dir):
    """The same tiny config as command-line overrides of configs/shapes.py."""
    flags = [f"--config={CONFIG_DIR}/shapes.py", f"--config.data.tfrecord_dir={tfrecord_dir}"]
    for key, value in TINY_OVERRIDES.items():
        flags.append(f"--config.{key}={value}".replace(" ", ""))
    return flags


@pytest.fixture
def tiny_config():
    return tiny_shapes_config


@pytest.fixture
def tiny_cli_flags():
    return tiny_flags


@pytest.fixture
def config_loader():
    return load_config
