r"""Exports a trained CMSA model as a SavedModel for TF Serving.

  python -m cmsa_tf.export --config=configs/refcoco_unc.py --workdir=workdir/refcoco_unc \
      --export_dir=saved_models/refcoco_unc [--version=N] [--checkpoint=PREFIX] [--overwrite]

Writes `<export_dir>/<version>/` (the integer version directories TF Serving expects). The default
version is the training step of the restored checkpoint, so exports of a longer run get higher
numbers and TF Serving moves to them on its own. An existing version directory is never replaced
unless `--overwrite` is given. The directory is written under a temporary name and renamed when
complete, so a server polling `export_dir` never sees half a model.

The export is self-contained: the weights, the vocabulary (a SavedModel asset, used by an in-graph
lookup table) and a few constants (`image_size`, `max_words`, `level_names`, `step`, ...) stored as
variables of the root object; `assets.extra/cmsa_export.json` repeats them with the config.

Signatures (Model Garden style: a `tf.Module` holding the model, `tf.function`s with input
signatures; decoding and preprocessing run inside the graph):

`serving_default`
  inputs:  `image_bytes` string [B] (JPEG, PNG, GIF or BMP files), `expression` string [B] (UTF-8).
  In the graph: decode, resize-and-pad, normalise (`cmsa_tf.data.pipeline`), tokenise
  (`cmsa_tf.data.tokenizer`, the same rules as the Python tokenizer), run the model, map the
  probabilities back to each image's original size.
  outputs: `probabilities` float32 [B, Hmax, Wmax] and `mask` uint8 [B, Hmax, Wmax] (1 where
  probability >= 0.5) at the original size; a batch of different sizes is zero-padded to the
  largest, image `i` filling the top-left `height[i] x width[i]` corner; `height`, `width` int32 [B];
  `word_attention` float32 [B, levels, T] (Fig. 4; rows in `level_names` order); `words` int32
  [B, T] (the ids the model saw, 0 = padding) and `tokens` string [B, T] (the text tokens behind
  them, "" on padding; out-of-vocabulary tokens keep their text while `words` holds `<unk>`).

`predict_preprocessed`
  inputs:  `image` float32 [B, S, S, 3] (BGR, mean subtracted, as `pipeline.preprocess_image`),
  `words` int32 [B, T].
  outputs: `logits` and `probabilities` float32 [B, S, S], `word_attention` float32 [B, levels, T].

Defined results for odd inputs:
- Grayscale and RGBA images become RGB (alpha dropped), 16-bit PNGs are scaled to 8 bits, a GIF
  gives its first frame, a 1x1 image is upscaled like any other.
- An image whose header declares more than `max_pixels` pixels (default 8192 x 8192 = 67,108,864;
  `--max_pixels`, 0 = no limit) is refused before decoding, so a small file claiming a huge size
  cannot exhaust the server's memory. An 8000 x 8000 image is accepted (over 1 GB of transient
  memory).
- Bytes that are empty, not an image, a truncated JPEG / PNG / BMP, or over the pixel limit fail
  the request with an `InvalidArgumentError` whose message names the input and the problem,
  e.g. "image_bytes[1] is not a JPEG, PNG, GIF or BMP file". Other decoder failures are
  `InvalidArgumentError`s from the decoder.
- An expression that is not valid UTF-8 fails the request the same way.
- Expressions longer than T tokens are truncated to their first T tokens (as in training).
- Words outside the vocabulary become `<unk>` (a real word for the model); punctuation tokens are
  words too (usually `<unk>`).
- An expression without any token (empty, only whitespace, or a lone ".") gives zero real words,
  exactly as the Python tokenizer and the training pipeline would: every cross-modal
  self-attention level then outputs zeros (see `CrossModalSelfAttention`), `word_attention` is all
  zero, and the prediction no longer depends on the image. The outputs stay finite; `words` being
  all 0 tells a client this happened.

The export never imports evaluation code.
"""

import json
import os
import re
import sys
import time

import tensorflow as tf

from cmsa_tf.data import pipeline
from cmsa_tf.data import tokenizer as tokenizer_lib

SERVING_SIGNATURE = "serving_default"
PREPROCESSED_SIGNATURE = "predict_preprocessed"
SERVING_OUTPUTS = (
    "probabilities", "mask", "height", "width", "word_attention", "words", "tokens",
)
PREPROCESSED_OUTPUTS = ("logits", "probabilities", "word_attention")
DEFAULT_MAX_PIXELS = 8192 * 8192
METADATA_FILE = "cmsa_export.json"
_VERSION_RE = re.compile(r"^[0-9]+$")

# Magic numbers of the formats `pipeline.decode_image` reads; the order is the branch index below.
_JPEG, _PNG, _GIF, _BMP = 0, 1, 2, 3
_HEADER_BYTES = 32


def _format_index(encoded):
    """int32 scalar: which format the bytes start like (`_JPEG`...), or -1."""
    head = tf.strings.substr(encoded, 0, 8)
    index = tf.constant(-1)
    # Plain selects, no control flow: checked in reverse so the first match wins.
    for value, matches in reversed((
        (_JPEG, tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff")),
        (_PNG, tf.equal(head, b"\x89PNG\r\n\x1a\n")),
        (_GIF, tf.equal(tf.strings.substr(head, 0, 4), b"GIF8")),
        (_BMP, tf.equal(tf.strings.substr(head, 0, 2), b"BM")),
    )):
        index = tf.where(matches, value, index)
    return index


def _contains(encoded, pattern):
    """Scalar bool: do the bytes contain `pattern` (a byte string) anywhere."""
    pieces = tf.strings.split(tf.reshape(encoded, [1]), sep=pattern)  # [1, (pieces)]
    return pieces.row_lengths()[0] > 1


def _header(encoded):
    """The first `_HEADER_BYTES` bytes as int64 [32], zero-filled past the end of short input."""
    head = tf.strings.join([tf.strings.substr(encoded, 0, _HEADER_BYTES), b"\x00" * _HEADER_BYTES])
    head = tf.strings.substr(head, 0, _HEADER_BYTES)
    return tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)  # [32]


def _big_endian(header, start, length):
    value = tf.constant(0, tf.int64)
    for i in range(length):
        value = value * 256 + header[start + i]
    return value


def _little_endian(header, start, length):
    value = tf.constant(0, tf.int64)
    for i in reversed(range(length)):
        value = value * 256 + header[start + i]
    return value


def _declared_size(encoded, branch):
    """(height, width) int64 as the file's header declares them, read without decoding.

    `branch` is the format index (`_JPEG`...), or 4 for bytes not to be parsed (they give 0 x 0).
    """
    header = _header(encoded)

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)  # [H, W, C]
        return shape[0], shape[1]

    def png():  # IHDR: width, height as big-endian uint32 at bytes 16 and 20.
        return _big_endian(header, 20, 4), _big_endian(header, 16, 4)

    def gif():  # logical screen: width, height as little-endian uint16 at bytes 6 and 8.
        return _little_endian(header, 8, 2), _little_endian(header, 6, 2)

    def bmp():  # BITMAPINFOHEADER: width, height as little-endian int32 at 18 and 22.
        def signed(value):
            return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

        return signed(_little_endian(header, 22, 4)), signed(_little_endian(header, 18, 4))

    def unknown():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    return tf.switch_case(branch, [jpeg, png, gif, bmp, unknown])


def _assert(condition, message):
    return tf.debugging.Assert(condition, [message])


def checked_decode_image(index, encoded, max_pixels=DEFAULT_MAX_PIXELS):
    """`pipeline.decode_image` after checks that name the problem of a bad input.

    Args:
        index: int32 scalar, the position of the image in the request (for the messages).
        encoded: string scalar, the file's bytes.
        max_pixels: refuse images whose header declares more pixels (0 or None: no limit).

    Returns:
        uint8 RGB [H, W, 3].

    Raises (when run):
        tf.errors.InvalidArgumentError: with a message "image_bytes[i] ..." naming the problem.
    """
    def message(text, *values):
        return tf.strings.format("image_bytes[{}] " + text, (index, *values))

    # The conditions exclude each other, so whichever assertion runs first names the problem;
    # the decoder runs only after all of them.
    length = tf.strings.length(encoded)
    format_index = _format_index(encoded)
    known = format_index >= 0
    is_jpeg = tf.equal(format_index, _JPEG)
    is_png = tf.equal(format_index, _PNG)
    is_bmp = tf.equal(format_index, _BMP)
    jpeg_complete = _contains(encoded, b"\xff\xd9")
    png_complete = _contains(encoded, b"IEND")
    bmp_complete = tf.cast(length, tf.int64) >= _little_endian(_header(encoded), 2, 4)
    checks = [
        _assert(length > 0, message("is empty (0 bytes); send an encoded image.")),
        _assert(
            tf.logical_or(tf.equal(length, 0), known),
            message("is not a JPEG, PNG, GIF or BMP file ({} bytes with an unknown signature).",
                    length),
        ),
        _assert(
            tf.logical_or(tf.logical_not(is_jpeg), jpeg_complete),
            message("is a truncated JPEG (no end-of-image marker)."),
        ),
        _assert(
            tf.logical_or(tf.logical_not(is_png), png_complete),
            message("is a truncated PNG (no IEND chunk)."),
        ),
        _assert(
            tf.logical_or(tf.logical_not(is_bmp), bmp_complete),
            message("is a truncated BMP (shorter than its header says)."),
        ),
    ]
    if max_pixels:
        complete = tf.reduce_all(tf.stack([
            known,
            tf.logical_or(tf.logical_not(is_jpeg), jpeg_complete),
            tf.logical_or(tf.logical_not(is_png), png_complete),
            tf.logical_or(tf.logical_not(is_bmp), bmp_complete),
        ]))
        # Only complete files are measured: the JPEG header parser fails on truncated data
        # itself, and a truncated file that declares a huge size must fail as truncated only
        # (graph ops run in no fixed order, so two failing assertions could report either).
        height, width = _declared_size(encoded, tf.where(complete, format_index, 4))
        checks.append(
            _assert(
                height * width <= max_pixels,
                message(
                    "is {}x{} = {} pixels, more than the {} pixels this export accepts "
                    "(max_pixels); downscale it before sending.",
                    height, width, height * width, max_pixels,
                ),
            )
        )
    with tf.control_dependencies(checks):
        return pipeline.decode_image(encoded)  # [H, W, 3]


def _tf_variable(variable):
    """The `tf.Variable` behind a Keras variable (itself if it already is one)."""
    value = variable if isinstance(variable, tf.Variable) else getattr(variable, "value", None)
    if not isinstance(value, tf.Variable):
        raise ValueError(
            f"Cannot export model variable {getattr(variable, 'path', variable)!r}: it is not "
            "backed by a tf.Variable (the export needs Keras' TensorFlow backend)."
        )
    return value


def _variable(value, dtype):
    return tf.Variable(value, dtype=dtype, trainable=False)


class CMSAExportModule(tf.Module):
    """A trained `CMSASegmenter` with its tokenizer, ready for `tf.saved_model.save`.

    Only the model's variables are tracked (as Keras' own `ExportArchive` does), not the Keras
    objects, so saving is fast and loading needs no Python code of this project.

    Args:
        model: a built `CMSASegmenter` (weights restored).
        vocabulary_file: the vocabulary the model was trained with (canonical form, as written
            by the TFRecord builder); it becomes a SavedModel asset.
        image_size: S, the model's square input side.
        max_words: T, the number of word slots.
        max_pixels: largest image (height x width, as its header declares) `serving_default`
            accepts; 0 or None for no limit.
        step: the training step of the weights (stored as metadata).

    Example:
        >>> module = CMSAExportModule(model, "vocab.txt", image_size=320, max_words=20)
        >>> save_module(module, "saved_models/cmsa/1000")
    """

    def __init__(self, model, vocabulary_file, image_size, max_words,
                 max_pixels=DEFAULT_MAX_PIXELS, step=0, name=None):
        super().__init__(name=name)
        for arg, value in (("image_size", image_size), ("max_words", max_words)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}.")
        if max_pixels is not None and (
            isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0
        ):
            raise ValueError(f"max_pixels must be a non-negative int or None, got {max_pixels!r}.")
        if not getattr(model, "built", False):
            raise ValueError("model must be built (call it once, or use build_model with sizes).")
        self._image_size = image_size
        self._max_words = max_words
        self._max_pixels = int(max_pixels or 0)
        # Not tracked: the Keras model is reached through this closure; the variables its graph
        # reads are tracked instead (below), which is all the SavedModel needs.
        self._call_model = lambda inputs: model(inputs, training=False, return_attention=True)
        self.tokenizer = tokenizer_lib.TFTokenizer(vocabulary_file, max_length=max_words)
        model_vocab = getattr(model, "vocab_size", None)
        if model_vocab is not None and model_vocab != self.tokenizer.vocabulary_size:
            raise ValueError(
                f"The model has {model_vocab} word ids but {vocabulary_file!r} holds "
                f"{self.tokenizer.vocabulary_size} tokens: export with the vocabulary the model "
                "was trained with."
            )
        level_names = [str(level) for level in getattr(model, "levels", ())]
        # Metadata for clients (cmsa-predict) that only have the SavedModel.
        self.image_size = _variable(image_size, tf.int32)
        self.max_words = _variable(max_words, tf.int32)
        self.max_pixels = _variable(self._max_pixels, tf.int64)
        self.level_names = _variable(level_names, tf.string)
        self.vocabulary_size = _variable(self.tokenizer.vocabulary_size, tf.int32)
        self.mask_threshold = _variable(pipeline.MASK_THRESHOLD, tf.float32)
        self.step = _variable(int(step), tf.int64)

        size, words = image_size, max_words
        self.serve = tf.function(
            self._serve,
            input_signature=[
                tf.TensorSpec([None], tf.string, name="image_bytes"),
                tf.TensorSpec([None], tf.string, name="expression"),
            ],
        )
        self.predict_preprocessed = tf.function(
            self._predict_preprocessed,
            input_signature=[
                tf.TensorSpec([None, size, size, 3], tf.float32, name="image"),
                tf.TensorSpec([None, words], tf.int32, name="words"),
            ],
        )
        # The model's weights as plain tf.Variables (Keras wraps them), so the SavedModel saves them.
        self.model_variables = [_tf_variable(v) for v in model.variables]

    def signatures(self):
        """The `signatures` argument of `tf.saved_model.save`."""
        # The tf.functions themselves (not concrete functions): saving traces them once, in its
        # own context, instead of once here and once more there.
        return {SERVING_SIGNATURE: self.serve, PREPROCESSED_SIGNATURE: self.predict_preprocessed}

    def _run_model(self, image, words):
        outputs = self._call_model({"image": image, "words": words})
        logits = outputs["logits"][..., 0]  # [B, S, S, 1] -> [B, S, S]
        return logits, tf.sigmoid(logits), outputs["word_attention"]

    def _predict_preprocessed(self, image, words):
        vocabulary_size = self.tokenizer.vocabulary_size
        in_range = tf.logical_and(words >= 0, words < vocabulary_size)
        check = _assert(
            tf.reduce_all(in_range),
            tf.strings.format(
                "words holds ids outside [0, {}), e.g. {}; use the export's vocabulary "
                "(assets/) and 0 for padding.",
                (vocabulary_size, tf.boolean_mask(words, tf.logical_not(in_range))[:1])),
        )
        with tf.control_dependencies([check]):
            words = tf.identity(words)
        logits, probabilities, word_attention = self._run_model(image, words)
        return {
            "logits": logits,
            "probabilities": probabilities,
            "word_attention": word_attention,
        }

    def _check_batch(self, image_bytes, expression):
        batch = tf.size(image_bytes)
        checks = [
            _assert(
                batch > 0,
                "image_bytes is an empty batch; send at least one image and expression.",
            ),
            _assert(
                tf.equal(batch, tf.size(expression)),
                tf.strings.format(
                    "image_bytes has {} images but expression has {} expressions; send one "
                    "expression per image.", (batch, tf.size(expression))),
            ),
        ]
        # A valid UTF-8 string transcodes to itself; anything else is changed by the replacement.
        transcoded = tf.strings.unicode_transcode(
            expression, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        valid = tf.equal(transcoded, expression)  # [B]
        # A trailing 0 keeps argmin defined for an empty batch: graph ops run in no fixed order,
        # so this must not fail before the empty-batch check above can report the real problem.
        first_bad = tf.argmin(tf.concat([tf.cast(valid, tf.int32), [0]], axis=0))
        checks.append(
            _assert(
                tf.reduce_all(valid),
                tf.strings.format("expression[{}] is not valid UTF-8 text.", first_bad),
            )
        )
        return checks

    def _serve(self, image_bytes, expression):
        with tf.control_dependencies(self._check_batch(image_bytes, expression)):
            image_bytes = tf.identity(image_bytes)
            expression = tf.identity(expression)
        size, max_pixels = self._image_size, self._max_pixels

        def preprocess(args):
            index, encoded = args
            image = checked_decode_image(index, encoded, max_pixels)
            return pipeline.preprocess_image(image, size)

        indices = tf.range(tf.size(image_bytes), dtype=tf.int32)
        images, info = tf.map_fn(
            preprocess,
            (indices, image_bytes),
            fn_output_signature=(
                tf.TensorSpec([size, size, 3], tf.float32),
                {key: tf.TensorSpec([], tf.float32 if key == "scale" else tf.int32)
                 for key in pipeline.INFO_KEYS},
            ),
        )  # [B, S, S, 3]
        words = self.tokenizer(expression)  # [B, T]
        tokens = tokenizer_lib.tf_tokenize(expression)[:, : self._max_words]
        tokens = tokens.to_tensor(default_value="", shape=[None, self._max_words])  # [B, T]

        _, probabilities, word_attention = self._run_model(images, words)
        restored = pipeline.unpad_and_resize_batch(
            probabilities[..., None], info, method="bilinear"
        )[..., 0]  # [B, Hmax, Wmax]
        mask = tf.cast(pipeline.binarize(restored), tf.uint8)  # [B, Hmax, Wmax]
        return {
            "probabilities": restored,
            "mask": mask,
            "height": info["orig_height"],
            "width": info["orig_width"],
            "word_attention": word_attention,
            "words": words,
            "tokens": tokens,
        }

    def metadata(self):
        """The module's constants as a JSON-ready dict."""
        return {
            "image_size": self._image_size,
            "max_words": self._max_words,
            "max_pixels": self._max_pixels,
            "level_names": [v.decode() for v in self.level_names.numpy()],
            "vocabulary_size": int(self.vocabulary_size.numpy()),
            "mask_threshold": float(self.mask_threshold.numpy()),
            "step": int(self.step.numpy()),
            "signatures": {
                SERVING_SIGNATURE: list(SERVING_OUTPUTS),
                PREPROCESSED_SIGNATURE: list(PREPROCESSED_OUTPUTS),
            },
        }


def save_module(module, directory, extra_metadata=None):
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


def list_versions(export_dir):
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


def untracked_variables(model):
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


def export_model(config, workdir, export_dir, version=None, checkpoint=None, *,
                 overwrite=False, max_pixels=DEFAULT_MAX_PIXELS):
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
    from cmsa_tf.utils import experiment  # only the training-side helpers, never evaluation

    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or version < 0):
        raise ValueError(f"version must be a non-negative int, got {version!r}.")
    manifest = experiment.read_manifest(config.data.tfrecord_dir)
    if checkpoint is None:
        if workdir is None:
            raise ValueError("Give a workdir or a checkpoint to export.")
        checkpoint = tf.train.latest_checkpoint(experiment.checkpoint_dir(workdir))
        if checkpoint is None:
            raise FileNotFoundError(
                f"No checkpoint in {experiment.checkpoint_dir(workdir)!r}: train first "
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
    model, checkpoint_path, step = experiment.build_and_restore(
        config, checkpoint=checkpoint, vocab_size=manifest["vocab_size"]
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
        manifest["vocab_file"],
        image_size=int(config.data.image_size),
        max_words=int(config.data.max_words),
        max_pixels=max_pixels,
        step=step,
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


def main(argv):
    from absl import app, flags, logging

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    values = flags.FLAGS
    if values.config is None or not values.export_dir:
        raise app.UsageError("--config and --export_dir are required.")
    if not values.workdir and not values.checkpoint:
        raise app.UsageError("Give --workdir (its latest checkpoint) or --checkpoint.")
    try:
        path = export_model(
            values.config,
            values.workdir,
            values.export_dir,
            version=values.version,
            checkpoint=values.checkpoint,
            overwrite=values.overwrite,
            max_pixels=values.max_pixels,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        logging.error("%s", error)
        raise SystemExit(f"error: {error}") from None
    logging.info("Exported %s (signatures %s, %s).", path, SERVING_SIGNATURE,
                 PREPROCESSED_SIGNATURE)
    print(path)


def define_flags():
    """Defines the command-line flags; only when run as a script, so that importing this module
    never touches absl's global flags (other mains define `--config` too)."""
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
    flags.DEFINE_string("workdir", None, "Training directory; its latest checkpoint is exported.")
    flags.DEFINE_string("checkpoint", None, "Checkpoint prefix to export instead of the latest.")
    flags.DEFINE_string("export_dir", None, "Model base directory, e.g. saved_models/NAME.")
    flags.DEFINE_integer("version", None, "Version directory; default: the training step.",
                         lower_bound=0)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing version directory.")
    flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS,
                         "Refuse images with more pixels than this (0: no limit).", lower_bound=0)


if __name__ == "__main__":
    from absl import app as _app

    define_flags()
    _app.run(main, argv=sys.argv)
