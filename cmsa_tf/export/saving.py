"""Versioned saving: `<export_dir>/<version>/` directories as TF Serving expects them.

The default version is the training step of the restored checkpoint, so exports of a longer run
get higher numbers and TF Serving moves to them on its own. An existing version directory is never
replaced unless `overwrite=True`. The directory is written under a temporary name and renamed when
complete, so a server polling `export_dir` never sees half a model.

The export is self-contained: the weights, the vocabulary (a SavedModel asset, used by an in-graph
lookup table) and a few constants (`image_size`, `max_words`, `level_names`, `step`, ...) stored as
variables of the root object; `assets.extra/cmsa_export.json` repeats them with the config.

`list_versions` is the one place version directories are listed (`cmsa-predict` uses it too).
The export never imports evaluation code.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import TYPE_CHECKING

import tensorflow as tf

from cmsa_tf.data import image_io
from cmsa_tf.data import manifest as manifest_lib
from cmsa_tf.export.module import CMSAExportModule

if TYPE_CHECKING:
    import keras
    import ml_collections

METADATA_FILE = "cmsa_export.json"
_VERSION_RE = re.compile(r"^[0-9]+$")


def save_module(
    module: CMSAExportModule, directory: str | os.PathLike, extra_metadata: dict | None = None
) -> str:
    """Saves `module` to `directory` with its signatures and `assets.extra/cmsa_export.json`.

    The SavedModel is written to a temporary sibling first and renamed into place when complete.
    `directory` must not exist.

    Returns:
        `directory`.
    """
    directory = os.fspath(directory)
    if tf.io.gfile.exists(directory):
        raise FileExistsError(f"{directory!r} already exists.")
    parent = os.path.dirname(os.path.abspath(directory))
    tf.io.gfile.makedirs(parent)
    temporary = os.path.join(parent, f".tmp-{os.path.basename(directory)}-{os.getpid()}")
    if tf.io.gfile.exists(temporary):
        tf.io.gfile.rmtree(temporary)
    try:
        tf.saved_model.save(module, temporary, signatures=module.signatures())
        metadata = dict(module.metadata())
        metadata.update(extra_metadata or {})
        metadata["tensorflow_version"] = tf.__version__
        metadata["exported_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        extra = os.path.join(temporary, "assets.extra")
        tf.io.gfile.makedirs(extra)
        with tf.io.gfile.GFile(os.path.join(extra, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2, sort_keys=True)
        tf.io.gfile.rename(temporary, directory)
    except BaseException:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.rmtree(temporary)
        raise
    return directory


def list_versions(export_dir: str | os.PathLike) -> list[int]:
    """The integer version directories under `export_dir`, ascending (empty if none)."""
    export_dir = os.fspath(export_dir)
    if not tf.io.gfile.isdir(export_dir):
        return []
    versions = []
    for entry in tf.io.gfile.listdir(export_dir):
        entry = entry.rstrip("/")
        if _VERSION_RE.match(entry) and tf.io.gfile.isdir(os.path.join(export_dir, entry)):
            versions.append(int(entry))
    return sorted(versions)


def untracked_variables(model: keras.Model) -> list[str]:
    """Paths of the model's variables that `tf.train.Checkpoint(model=model)` cannot reach.

    Such variables are never saved by training, so restoring a checkpoint leaves them at their
    initial values without any error; the export refuses to ship them.
    """
    root = tf.train.Checkpoint(model=model)
    reachable = {id(obj) for obj in tf.train.TrackableView(root).descendants()}
    return [
        variable.path
        for variable in model.variables
        if id(variable) not in reachable and id(getattr(variable, "value", None)) not in reachable
    ]


def _checkpoint_step(checkpoint):
    """The `step` saved in a training checkpoint, read without building the model (or None)."""
    try:
        return int(tf.train.load_variable(checkpoint, "step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError, KeyError):
        return None


def export_model(
    config: ml_collections.ConfigDict,
    workdir: str | None,
    export_dir: str | os.PathLike,
    version: int | None = None,
    checkpoint: str | None = None,
    *,
    overwrite: bool = False,
    max_pixels: int | None = image_io.DEFAULT_MAX_PIXELS,
) -> str:
    """Restores the model of `config` and writes `<export_dir>/<version>/`.

    Args:
        config: the experiment config (as given to training).
        workdir: the training directory; its latest checkpoint is exported unless `checkpoint`.
        export_dir: the model's base directory (TF Serving's `model_base_path`).
        version: positive int; default: the checkpoint's training step.
        checkpoint: an explicit checkpoint prefix (e.g. `WORKDIR/checkpoints/ckpt-3000`).
        overwrite: replace an existing version directory.
        max_pixels: largest image (height x width) the export accepts; 0 or None: no limit.

    Returns:
        The path of the version directory.
    """
    # Here, not at the top: cmsa-predict imports this module for `list_versions` and needs no
    # model code. (Only the training-side restore, never evaluation.)
    from cmsa_tf.models import restore

    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 0
    ):
        raise ValueError(f"version must be a non-negative int, got {version!r}.")
    tokenizer = config.data.get("tokenizer", "default")
    # An imported model's workdir holds its vocabulary; otherwise the TFRecord manifest names it.
    vocab_file = restore.workdir_vocabulary(workdir)
    if vocab_file is None:
        manifest_lib.check_tokenizer(config.data.tfrecord_dir, tokenizer)
        vocab_file = manifest_lib.vocab_path(config.data.tfrecord_dir)
    vocab_size = restore.vocabulary_size(vocab_file, tokenizer)
    if checkpoint is None:
        if workdir is None:
            raise ValueError("Give a workdir or a checkpoint to export.")
        checkpoint = tf.train.latest_checkpoint(restore.checkpoint_dir(workdir))
        if checkpoint is None:
            raise FileNotFoundError(
                f"No checkpoint in {restore.checkpoint_dir(workdir)!r}: train first "
                "(python -m cmsa_tf.train ...) or pass --checkpoint."
            )

    def target(version):
        directory = os.path.join(os.fspath(export_dir), str(version))
        if tf.io.gfile.exists(directory) and not overwrite:
            raise FileExistsError(
                f"{directory!r} already exists (existing versions: {list_versions(export_dir)}); "
                "pass another --version or --overwrite."
            )
        return directory

    if version is None:
        saved_step = _checkpoint_step(checkpoint)
        if saved_step is not None:
            target(saved_step)  # fail before the (slow) model build
    else:
        target(version)
    model, checkpoint_path, step = restore.build_and_restore(
        config, checkpoint=checkpoint, vocab_size=vocab_size
    )
    missing = untracked_variables(model)
    if missing:
        raise ValueError(
            f"{len(missing)} of the model's {len(model.variables)} variables are not tracked by "
            "tf.train.Checkpoint, so no checkpoint holds them and they would be exported with "
            f"their random initial values: {missing[:6]}{' ...' if len(missing) > 6 else ''}. "
            "(Keras layers kept only in Python lists are not checkpoint dependencies; the model "
            "must also hold them as attributes.)"
        )
    directory = target(step if version is None else version)
    module = CMSAExportModule(
        model,
        vocab_file,
        image_size=int(config.data.image_size),
        max_words=int(config.data.max_words),
        max_pixels=max_pixels,
        step=step,
        tokenizer=tokenizer,
        preprocessing=config.data.get("preprocessing", "default"),
        map_back=config.eval.get("protocol", "exact"),
    )
    extra = {
        "checkpoint": checkpoint_path,
        "config": json.loads(config.to_json_best_effort()),
    }
    if overwrite and tf.io.gfile.exists(directory):
        # Write the new version next to the old one first, then swap.
        staged = save_module(module, directory + f".new-{os.getpid()}", extra)
        tf.io.gfile.rmtree(directory)
        tf.io.gfile.rename(staged, directory)
    else:
        save_module(module, directory, extra)
    return directory
