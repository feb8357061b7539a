"""The model of an experiment config, with its weights restored from a training checkpoint."""

import os

import tensorflow as tf

from cmsa_tf.data import manifest
from cmsa_tf.data import tokenizer as tokenizer_lib
from cmsa_tf.models.atrous_resnet import default_stem
from cmsa_tf.models.cmsa_segmenter import CMSASegmenter
from cmsa_tf.models.factory import build_model

# Training writes its tf.train.Checkpoint files to `<workdir>/CHECKPOINT_DIR`.
CHECKPOINT_DIR = "checkpoints"
# A workdir written by `cmsa_tf.import_authors` holds its vocabulary as `<workdir>/vocab.txt`.
VOCABULARY_FILE = manifest.VOCAB_NAME


def checkpoint_dir(workdir: str) -> str:
    """The directory of a training run's checkpoints, `<workdir>/checkpoints`."""
    return os.path.join(workdir, CHECKPOINT_DIR)


def workdir_vocabulary(workdir: str | None) -> str | None:
    """`<workdir>/vocab.txt` if the workdir holds its own vocabulary (imported), else None."""
    if not workdir:
        return None
    path = os.path.join(workdir, VOCABULARY_FILE)
    return path if tf.io.gfile.exists(path) else None


def vocabulary_size(vocabulary_file: str, tokenizer: str = "default") -> int:
    """The number of ids of a vocabulary file read in the format of `tokenizer`."""
    return len(tokenizer_lib.load_vocabulary(vocabulary_file, tokenizer))


def build_and_restore(
    config,
    workdir: str | None = None,
    checkpoint: str | None = None,
    vocab_size: int | None = None,
    expect_partial: bool = True,
) -> tuple[CMSASegmenter, str, int]:
    """Builds the model of `config` and restores its weights.

    Args:
        config: the full experiment config.
        workdir: training directory; its latest checkpoint is used when `checkpoint` is None.
        checkpoint: an explicit checkpoint prefix (e.g. `DIR/checkpoints/ckpt-1000`).
        vocab_size: defaults to the size of the workdir's own vocabulary (`workdir_vocabulary`),
            else to the vocabulary size of the manifest in `config.data.tfrecord_dir`.
        expect_partial: allow the checkpoint to hold more than the model (the optimiser state).

    Returns:
        (model, checkpoint_path, step).
    """
    if vocab_size is None and workdir_vocabulary(workdir) is not None:
        tokenizer = config.data.get("tokenizer", "default")
        vocab_size = vocabulary_size(workdir_vocabulary(workdir), tokenizer)
    if vocab_size is None:
        vocab_size = manifest.vocab_size(config.data.tfrecord_dir)
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
