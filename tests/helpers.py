"""Shared test helpers: the repository paths, config loading and the tiny ShapesRef config."""

import importlib.util
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"


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
    """`get_config(arg)` of configs/NAME.py, loaded by path as `--config` loads it."""
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
