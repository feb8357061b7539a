"""Imports the authors' released TF1 CMSA checkpoint into a `CMSASegmenter` (docs/authors_model.md).

The authors' graph (`CMSA_model.py`) scopes its head under `text_objseg/` and leaves DrSleep's
DeepLab ResNet-101 unscoped (`conv1/weights`, `bn_conv1/moving_mean`, ...; read by
`tf1_deeplab.load_tf1_checkpoint`). The 48 head variables and their counterparts in the model of
an `:official` / `:authors` config (`head_variables`; tf.layers numbers default names per
variable scope, in creation order):

    mlp_c5/DW, biases                  res5_projection kernel, bias       (1x1 conv2d, HWIO)
    embedding                          word_embedding                     [V, Cl]
    CMSA/conv3d .. conv3d_3            res5_attention query, key, value, output
    conv2d                             res5_fusion_projection
    conv3d, CMSA_C4/conv3d .. _3       res4_attention reduce; query, key, value, output
    conv2d_1                           res4_fusion_projection
    conv3d_1, CMSA_C3/conv3d .. _3     res3_attention reduce; query, key, value, output
    conv2d_2                           res3_fusion_projection
    mgate/x{1,2,3}/conv2d, Variable    fusion_layer gate_conv_{1,2,3}, gamma_{1,2,3}
    score/DW, biases                   score

The 1x1x1 conv3d kernels [1, 1, 1, Cin, Cout] become dense kernels [Cin, Cout]; the input
channels are [visual, word, spatial] on both sides. Deliberately ignored: the `fc1_voc12_*`
DeepLab classifier, Adam slots (`*/Adam`, `*/Adam_1`), `beta1_power` / `beta2_power`, and the
float global step `text_objseg/Variable` (its value becomes the imported step).
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

from cmsa_tf.models.weights import tf1_deeplab

HEAD_SCOPE = "text_objseg/"
STEP_VARIABLE = HEAD_SCOPE + "Variable"
_PROJECTIONS = ("query", "key", "value", "output")
# Checkpoint keys the import reads nothing from, with the reason shown in its report.
IGNORED_PATTERNS = (
    (re.compile(r"(^|/)fc1_voc12_c\d+(/|$)"), "DeepLab VOC classifier"),
    (re.compile(r"/Adam(_\d+)?$"), "Adam slot"),
    (re.compile(r"(^|/)beta[12]_power$"), "Adam power accumulator"),
    (re.compile("^" + re.escape(STEP_VARIABLE) + "$"), "float global step"),
)


@dataclasses.dataclass
class ImportReport:
    """What `import_authors_checkpoint` did.

    Attributes:
        checkpoint_path: the checkpoint read.
        step: the imported step (the float global step, else the number ending the prefix, else 0).
        vocab_size: rows of the checkpoint's embedding.
        loaded: checkpoint keys assigned to the model (backbone and head).
        ignored: `(key, reason)` of the keys deliberately not read.
        unexpected: other checkpoint keys no model variable reads (also not read).
    """

    checkpoint_path: str
    step: int
    vocab_size: int
    loaded: list = dataclasses.field(default_factory=list)
    ignored: list = dataclasses.field(default_factory=list)
    unexpected: list = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "checkpoint": self.checkpoint_path,
            "step": self.step,
            "vocab_size": self.vocab_size,
            "loaded": len(self.loaded),
            "ignored": [f"{key} ({reason})" for key, reason in self.ignored],
            "unexpected": list(self.unexpected),
        }


def _dense_kernel(value):  # conv3d [1, 1, 1, Cin, Cout] -> [Cin, Cout]
    return value.reshape(value.shape[-2], value.shape[-1])


def head_variables(model) -> list[tuple[str, object, object]]:
    """`(TF1 name without the scope, model variable, value transform or None)`, the 48 of them.

    Raises:
        ValueError: the model is not the authors' architecture (see `check_architecture`).
    """
    check_architecture(model)
    names = []

    def conv(tf1_scope, layer, kernel="kernel", bias="bias"):
        names.append((f"{tf1_scope}/{kernel}", layer.kernel, None))
        names.append((f"{tf1_scope}/{bias}", layer.bias, None))

    def dense(tf1_scope, attention, projection):
        names.append(
            (f"{tf1_scope}/kernel", getattr(attention, f"{projection}_kernel"), _dense_kernel)
        )
        names.append((f"{tf1_scope}/bias", getattr(attention, f"{projection}_bias"), None))

    conv("mlp_c5", model.res5_projection, "DW", "biases")
    names.append(("embedding", model.word_embedding.embeddings, None))
    # (level, CMSA scope, reduction conv3d, fusion projection conv2d), in the authors' order.
    for level, scope, reduce_name, projection_name in (
        ("res5", "CMSA", None, "conv2d"),
        ("res4", "CMSA_C4", "conv3d", "conv2d_1"),
        ("res3", "CMSA_C3", "conv3d_1", "conv2d_2"),
    ):
        attention = getattr(model, f"{level}_attention")
        if reduce_name is not None:
            dense(reduce_name, attention, "reduce")
        for index, projection in enumerate(_PROJECTIONS):
            dense(f"{scope}/conv3d" + (f"_{index}" if index else ""), attention, projection)
        conv(projection_name, getattr(model, f"{level}_fusion_projection"))
    fusion = model.fusion_layer
    for level in (1, 2, 3):
        conv(f"mgate/x{level}/conv2d", getattr(fusion, f"gate_conv_{level}"))
        names.append((f"mgate/x{level}/Variable", getattr(fusion, f"gamma_{level}"), None))
    conv("score", model.score, "DW", "biases")
    return names


def check_architecture(model) -> None:
    """Raises a ValueError naming each way `model` differs from the authors' architecture."""
    problems = []
    if tuple(model.levels) != ("res5", "res4", "res3"):
        problems.append(f"levels {model.levels} (need ('res5', 'res4', 'res3'))")
    if model.attention_form != "official" or model.attention_variant != "cmsa":
        problems.append(
            f"attention form {model.attention_form!r} / variant {model.attention_variant!r} "
            "(need the official form of the full CMSA)"
        )
    if model.reduce_dims[0] is not None or None in tuple(model.reduce_dims[1:]):
        problems.append(f"reduce_dims {model.reduce_dims} (need (None, R4, R3))")
    if not model.res5_projection_dim:
        problems.append("no res5 projection (need res5_projection_dim)")
    if model.word_representation != "words" or model.fusion != "gated":
        problems.append(
            f"word_representation {model.word_representation!r} / fusion {model.fusion!r} "
            "(need 'words' / 'gated')"
        )
    if problems:
        raise ValueError(
            "The model is not the authors' architecture: "
            + "; ".join(problems)
            + ". Use an :authors config, e.g. --config=configs/refcocog_google.py:authors."
        )


def checkpoint_vocab_size(checkpoint_path: str) -> int:
    """Rows of `text_objseg/embedding` in a checkpoint (the authors' vocabulary size)."""
    reader = _reader(checkpoint_path)
    key = HEAD_SCOPE + "embedding"
    shapes = reader.get_variable_to_shape_map()
    if key not in shapes or len(shapes[key]) != 2:
        raise ValueError(
            f"{checkpoint_path!r} has no 2-D {key!r} variable (the word embedding): it is not a "
            "checkpoint of the authors' CMSA."
        )
    return int(shapes[key][0])


def _reader(checkpoint_path):
    try:
        return tf.train.load_checkpoint(os.fspath(checkpoint_path))
    except (tf.errors.OpError, ValueError) as error:
        raise ValueError(f"{checkpoint_path!r} is not a readable TF checkpoint: {error}") from None


def _step(reader, shapes, checkpoint_path):
    if STEP_VARIABLE in shapes and not shapes[STEP_VARIABLE]:
        return int(round(float(reader.get_tensor(STEP_VARIABLE))))
    match = re.search(r"(?:-|_iter_)(\d+)(?:\.tfmodel)?$", os.fspath(checkpoint_path))
    return int(match.group(1)) if match else 0


def import_authors_checkpoint(model, checkpoint_path: str) -> ImportReport:
    """Assigns every backbone and head variable of the authors' checkpoint to `model`.

    Args:
        model: a built `CMSASegmenter` of an `:authors` (or `:official`) config whose vocabulary
            size is the checkpoint's (`checkpoint_vocab_size`).
        checkpoint_path: the TF1 checkpoint prefix.

    Returns:
        An `ImportReport`.

    Raises:
        ValueError: naming every model variable the checkpoint lacks or holds with another shape
            (nothing is assigned then).
    """
    checkpoint_path = os.fspath(checkpoint_path)
    reader = _reader(checkpoint_path)
    shapes = reader.get_variable_to_shape_map()
    problems = []
    assignments = []
    # The backbone: DrSleep's names, no scope. Its loader assigns as it goes; a failed import
    # raises below, so the caller never saves a half-assigned model.
    backbone = tf1_deeplab.load_tf1_checkpoint(model.backbone, checkpoint_path, prefix="")
    mismatched = {key for key, _, _ in backbone.shape_mismatches}
    problems += [
        f"{key}: shape {list(saved)} in the checkpoint, the model needs {list(wanted)}"
        for key, saved, wanted in backbone.shape_mismatches
    ]
    problems += [f"{name}: missing" for name in backbone.unassigned if name not in mismatched]
    for name, variable, transform in head_variables(model):
        key = HEAD_SCOPE + name
        if key not in shapes:
            problems.append(f"{key}: missing")
            continue
        saved = tuple(shapes[key])
        wanted = tuple(variable.shape)
        fits = saved == wanted or (transform is _dense_kernel and saved == (1, 1, 1, *wanted))
        if not fits:
            problems.append(
                f"{key}: shape {list(saved)} in the checkpoint, the model needs "
                f"{list(wanted)}" + (" (as [1, 1, 1, Cin, Cout])" if transform else "")
            )
            continue
        assignments.append((key, variable, transform))
    if problems:
        raise ValueError(
            f"Cannot import {checkpoint_path!r} into this model ({len(problems)} problems):\n  "
            + "\n  ".join(problems)
        )
    for key, variable, transform in assignments:
        value = np.asarray(reader.get_tensor(key))
        value = transform(value) if transform is not None else value
        variable.assign(value.reshape(variable.shape).astype(variable.dtype))
    loaded = set(backbone.loaded) | {key for key, _, _ in assignments}
    report = ImportReport(
        checkpoint_path=checkpoint_path,
        step=_step(reader, shapes, checkpoint_path),
        vocab_size=int(model.word_embedding.embeddings.shape[0]),
        loaded=sorted(loaded),
    )
    for key in sorted(shapes):
        if key in loaded:
            continue
        reason = next((why for pattern, why in IGNORED_PATTERNS if pattern.search(key)), None)
        if reason is None:
            report.unexpected.append(key)
        else:
            report.ignored.append((key, reason))
    return report


REPORT_FILE = "import_report.json"


def import_to_workdir(
    config, checkpoint_path: str, vocabulary_file: str, workdir: str, step: int | None = None
) -> ImportReport:
    """Imports the authors' checkpoint and writes `workdir` as a training directory of `config`.

    `workdir` gets `checkpoints/ckpt-<step>` (a `tf.train.Checkpoint` of the model and the step,
    the layout `models/restore.py` reads; no optimiser state, so `cmsa_tf.train` fine-tunes from
    the step with a fresh optimiser), `vocab.txt` (the vocabulary file, byte for byte) and
    `import_report.json`. `step` overrides the step read from the checkpoint.

    Raises:
        ValueError: the vocabulary does not fit the checkpoint, or `import_authors_checkpoint`
            refuses the checkpoint.
        FileExistsError: `workdir` already holds a checkpoint.
    """
    import json

    from cmsa_tf.data import tokenizer as tokenizer_lib
    from cmsa_tf.models import restore
    from cmsa_tf.models.atrous_resnet import default_stem
    from cmsa_tf.models.factory import build_model

    checkpoint_dir = restore.checkpoint_dir(workdir)
    if tf.train.latest_checkpoint(checkpoint_dir) is not None:
        raise FileExistsError(
            f"{checkpoint_dir!r} already holds a checkpoint; import into a new --workdir."
        )
    vocab_size = checkpoint_vocab_size(checkpoint_path)
    tokenizer = config.data.get("tokenizer", "default")
    vocabulary = tokenizer_lib.load_vocabulary(vocabulary_file, tokenizer)
    if len(vocabulary) != vocab_size:
        raise ValueError(
            f"The vocabulary file {vocabulary_file!r} has {len(vocabulary)} ids (read in the "
            f"{tokenizer!r} tokenizer's format) but the checkpoint's {HEAD_SCOPE}embedding has "
            f"{vocab_size} rows: give the vocabulary the checkpoint was trained with."
        )
    model_config = config.model.copy_and_resolve_references()
    backbone = model_config.backbone
    padding, epsilon = default_stem("tf1-checkpoint")  # the stem of DrSleep's DeepLab weights
    backbone.padding = backbone.get("padding") or padding
    backbone.batchnorm_epsilon = backbone.get("batchnorm_epsilon") or epsilon
    backbone.weights = None  # every weight comes from the checkpoint
    model = build_model(
        model_config,
        vocab_size=vocab_size,
        image_size=int(config.data.image_size),
        max_words=int(config.data.max_words),
    )
    report = import_authors_checkpoint(model, checkpoint_path)
    if step is not None:
        report.step = int(step)
    tf.io.gfile.makedirs(workdir)
    with open(vocabulary_file, "rb") as f:
        vocabulary_bytes = f.read()
    with tf.io.gfile.GFile(os.path.join(workdir, restore.VOCABULARY_FILE), "wb") as f:
        f.write(vocabulary_bytes)
    step = tf.Variable(report.step, dtype=tf.int64, trainable=False)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model, step=step), checkpoint_dir, max_to_keep=None
    )
    saved = manager.save(checkpoint_number=report.step)
    with tf.io.gfile.GFile(os.path.join(workdir, REPORT_FILE), "w") as f:
        json.dump({**report.to_json(), "saved": saved}, f, indent=2)
    return report
