"""Shared test setup: quiet TensorFlow, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from tests.helpers import load_config, tiny_flags, tiny_shapes_config


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


@pytest.fixture
def tiny_config():
    return tiny_shapes_config


@pytest.fixture
def tiny_cli_flags():
    return tiny_flags


@pytest.fixture
def config_loader():
    return load_config
