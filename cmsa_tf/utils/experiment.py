"""What the absl mains share: the TFRecord manifest, the model from a config, checkpoints."""

import os

import tensorflow as tf

from cmsa_tf.data import pipeline

CHECKPOINT_DIR = "checkpoints"


def read_manifest(tfrecord_dir):
    """Reads `<tfrecord_dir>/manifest.json` written by `cmsa_tf.data.build`.

    Returns the manifest dict with `vocab_file` made absolute and `vocab_size` filled in.
    """
    manifest, directory = pipeline.load_manifest(tfrecord_dir)
    vocabulary = manifest.get("vocabulary") or {}
    vocab_file = vocabulary.get("file")
    if not vocab_file:
        raise ValueError(f"The manifest in {directory!r} names no vocabulary file.")
    if not os.path.isabs(vocab_file):
        vocab_file = os.path.join(directory, vocab_file)
    manifest["vocab_file"] = vocab_file
    manifest["vocab_size"] = vocabulary.get("size")
    if not manifest["vocab_size"]:
        with tf.io.gfile.GFile(vocab_file) as f:
            manifest["vocab_size"] = sum(1 for _ in f)
    return manifest


def split_files(tfrecord_dir, split):
    """The TFRecord files of one split, as paths."""
    return pipeline.manifest_files(tfrecord_dir, split)


def checkpoint_dir(workdir):
    return os.path.join(workdir, CHECKPOINT_DIR)


def build_and_restore(config, workdir=None, checkpoint=None, vocab_size=None, expect_partial=True):
    """Builds the model of `config` and restores its weights.

    Args:
        config: the full experiment config.
        workdir: training directory; its latest checkpoint is used when `checkpoint` is None.
        checkpoint: an explicit checkpoint prefix (e.g. `DIR/checkpoints/ckpt-1000`).
        vocab_size: defaults to the manifest's vocabulary size.

    Returns:
        (model, checkpoint_path, step).
    """
    from cmsa_tf.models.atrous_resnet import default_stem
    from cmsa_tf.models.cmsa_segmenter import build_model

    if vocab_size is None:
        vocab_size = read_manifest(config.data.tfrecord_dir)["vocab_size"]
    if checkpoint is None:
        if workdir is None:
            raise ValueError("Give a workdir or a checkpoint to restore the model from.")
        checkpoint = tf.train.latest_checkpoint(checkpoint_dir(workdir))
        if checkpoint is None:
            raise FileNotFoundError(
                f"No checkpoint in {checkpoint_dir(workdir)!r}: train first "
                "(python -m cmsa_tf.train ...) or pass --checkpoint."
            )
    model_config = config.model.copy_and_resolve_references()
    # The checkpoint holds every weight: do not load ImageNet / DeepLab weights first, but keep
    # the stem (padding, BatchNorm epsilon) those weights were trained with.
    backbone = model_config.backbone
    padding, epsilon = default_stem(backbone.weights)
    backbone.padding = backbone.get("padding") or padding
    backbone.batchnorm_epsilon = backbone.get("batchnorm_epsilon") or epsilon
    backbone.weights = None
    model = build_model(
        model_config,
        vocab_size=vocab_size,
        image_size=config.data.image_size,
        max_words=config.data.max_words,
    )
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    status = tf.train.Checkpoint(model=model, step=step).restore(checkpoint)
    if expect_partial:
        status.expect_partial()
    status.assert_existing_objects_matched()
    return model, checkpoint, int(step.numpy())
