"""The `tf.Module` that a SavedModel export holds: the model, its tokenizer and two signatures.

Signatures (Model Garden style: a `tf.Module` holding the model, `tf.function`s with input
signatures; decoding and preprocessing run inside the graph):

`serving_default`
  inputs:  `image_bytes` string [B] (JPEG, PNG, GIF or BMP files), `expression` string [B] (UTF-8).
  In the graph: decode (`cmsa_tf.data.image_io`), resize-and-pad, normalise
  (`cmsa_tf.data.preprocess`; docs/design.md, "Preprocessing and the map back"), tokenise
  (`cmsa_tf.data.tokenizer`, the same rules as the Python tokenizer; the authors' own with
  `tokenizer="authors"`, `cmsa_tf.data.authors_tokenizer`), run the model, map the
  prediction back to each image's original size as `map_back` says (`config.eval.protocol`):
  - `"exact"`: `probabilities` is the sigmoid of the logits with the pad cropped and resized
    bilinearly to the original size (`map_back_lib.unpad_and_resize`); `mask` is 1 where it is
    >= 0.5 (`evaluation.protocols.ExactProtocol`).
  - `"authors"`: `mask` is the authors' map-back (`evaluation.protocols.AuthorsProtocol`): 1
    where the `S x S` logits are >= 1e-9, that binary map taken through their `resize_and_crop`
    (`map_back_lib.authors_map_back`: scale by max(h, w) / S with skimage's bilinear resize,
    centre crop), every non-zero pixel foreground; `probabilities` is the `S x S` sigmoid taken
    through the same `resize_and_crop` (so `mask` is not `probabilities >= 0.5` at the border).
  outputs: `probabilities` float32 [B, Hmax, Wmax] and `mask` uint8 [B, Hmax, Wmax] at the
  original size; a batch of different sizes is zero-padded to the
  largest, image `i` filling the top-left `height[i] x width[i]` corner; `height`, `width` int32
  [B]; `word_attention` float32 [B, levels, T] (Fig. 4; rows in `level_names` order); `words` int32
  [B, T] (the ids the model saw, 0 = padding) and `tokens` string [B, T] (the text tokens behind
  them, "" on padding; out-of-vocabulary tokens keep their text while `words` holds `<unk>`).
  For the Fig. 5 heat maps (`visualize.heat_map`), at the model's feature resolution h x w
  (S / 8): `fused_scores` float32 [B, h, w] is the score convolution (Eq. 6) without its bias on
  the fused map Y (the logits before the bias and the upsampling; the "weighted" heat map);
  `level_scores` float32 [B, levels, h, w] is the same convolution on each level's map entering
  Eq. 5 (rows in `level_names` order): where each level alone points. `window` int32 [B, 5] is
  (S, pad_top, pad_left, resized_height, resized_width), where each image lies in the model's
  padded S x S input (`visualize.heat_map`'s `window`); `level_names` string [B, levels] names the
  rows of `word_attention` and `level_scores` (the same for every row, for clients that only see
  the signature, e.g. through TF Serving).

`predict_preprocessed`
  inputs:  `image` float32 [B, S, S, 3] (BGR, mean subtracted, as `preprocess.preprocess_image`),
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
  e.g. "image_bytes[1] is not a JPEG, PNG, GIF or BMP file" (`image_io.checked_decode_image`).
  Other decoder failures are `InvalidArgumentError`s from the decoder.
- An expression that is not valid UTF-8 fails the request the same way.
- Expressions longer than T tokens are truncated to their first T tokens (as in training).
- Words outside the vocabulary become `<unk>` (a real word for the model); punctuation tokens are
  words too (usually `<unk>`).
- An expression without any token (empty, only whitespace, or a lone ".") gives zero real words,
  exactly as the Python tokenizer and the training pipeline would: every cross-modal
  self-attention level then outputs zeros (see `CrossModalSelfAttention`), `word_attention` is all
  zero, and the prediction no longer depends on the image. The outputs stay finite; `words` being
  all 0 tells a client this happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from cmsa_tf.data import image_io, preprocess
from cmsa_tf.data import map_back as map_back_lib
from cmsa_tf.data import tokenizer as tokenizer_lib

SERVING_SIGNATURE = "serving_default"
PREPROCESSED_SIGNATURE = "predict_preprocessed"
SERVING_OUTPUTS = (
    "probabilities",
    "mask",
    "height",
    "width",
    "word_attention",
    "words",
    "tokens",
    "fused_scores",
    "level_scores",
    "window",
    "level_names",
)
PREPROCESSED_OUTPUTS = ("logits", "probabilities", "word_attention")

if TYPE_CHECKING:
    import keras


def _assert(condition, message):
    return tf.debugging.Assert(condition, [message])


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
            by the TFRecord builder; it becomes a SavedModel asset), or a file in the authors'
            format for `tokenizer="authors"`.
        image_size: S, the model's square input side.
        max_words: T, the number of word slots.
        max_pixels: largest image (height x width, as its header declares) `serving_default`
            accepts; 0 or None for no limit.
        step: the training step of the weights (stored as metadata).
        tokenizer: `"default"` or `"authors"` (`config.data.tokenizer`; `tokenizer.TOKENIZERS`).
        preprocessing: `"default"` or `"authors"` (`config.data.preprocessing`): how
            `serving_default` resizes and pads each image, as training and evaluation do
            (`preprocess.preprocess_image`).
        map_back: `"exact"` or `"authors"` (`config.eval.protocol`; `map_back_lib.MAP_BACKS`): how
            `serving_default` brings `probabilities` and `mask` back to the original size
            (module docstring).
        name: the module's name.

    Example:
        >>> module = CMSAExportModule(model, "vocab.txt", image_size=320, max_words=20)
        >>> saving.save_module(module, "saved_models/cmsa/1000")
    """

    def __init__(
        self,
        model: keras.Model,
        vocabulary_file: str,
        image_size: int,
        max_words: int,
        max_pixels: int | None = image_io.DEFAULT_MAX_PIXELS,
        step: int = 0,
        name: str | None = None,
        tokenizer: str = "default",
        preprocessing: str = "default",
        map_back: str = "exact",
    ):
        super().__init__(name=name)
        preprocess.check_preprocessing(preprocessing)
        if map_back not in map_back_lib.MAP_BACKS:
            raise ValueError(f"map_back must be one of {map_back_lib.MAP_BACKS}, got {map_back!r}.")
        self._preprocessing = preprocessing
        self._map_back = map_back
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
        self.tokenizer = tokenizer_lib.make_tf_tokenizer(vocabulary_file, max_words, tokenizer)
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
        self.mask_threshold = _variable(preprocess.MASK_THRESHOLD, tf.float32)
        self.map_back = _variable(map_back, tf.string)
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
        # The model's weights as plain tf.Variables (Keras wraps them), for the SavedModel to save.
        self.model_variables = [_tf_variable(v) for v in model.variables]
        score = getattr(model, "score", None)
        if score is None or getattr(score, "kernel", None) is None:
            raise ValueError("model must have a built `score` convolution (Eq. 6).")
        self._score_kernel = _tf_variable(score.kernel)  # [k, k, C, 1], one of model_variables

    def signatures(self) -> dict:
        """The `signatures` argument of `tf.saved_model.save`."""
        # The tf.functions themselves (not concrete functions): saving traces them once, in its
        # own context, instead of once here and once more there.
        return {SERVING_SIGNATURE: self.serve, PREPROCESSED_SIGNATURE: self.predict_preprocessed}

    def _run_model(self, image, words):
        outputs = self._call_model({"image": image, "words": words})
        logits = outputs["logits"][..., 0]  # [B, S, S, 1] -> [B, S, S]
        return logits, tf.sigmoid(logits), outputs["word_attention"], outputs

    def _score_maps(self, outputs):
        """`fused_scores` [B, h, w] and `level_scores` [B, levels, h, w]: the score convolution
        without its bias on the fused map and on each level's map (module docstring)."""
        kernel = tf.cast(self._score_kernel, tf.float32)  # [k, k, C, 1]

        def score(features):  # [N, h, w, C] -> [N, h, w]
            return tf.nn.conv2d(tf.cast(features, tf.float32), kernel, 1, "SAME")[..., 0]

        levels = outputs["level_features"]  # [B, L, h, w, C]
        shape = tf.shape(levels)
        flat = tf.reshape(levels, tf.concat([[-1], shape[2:]], axis=0))  # [B * L, h, w, C]
        return score(outputs["features"]), tf.reshape(score(flat), shape[:4])

    def _predict_preprocessed(self, image, words):
        vocabulary_size = self.tokenizer.vocabulary_size
        in_range = tf.logical_and(words >= 0, words < vocabulary_size)
        check = _assert(
            tf.reduce_all(in_range),
            tf.strings.format(
                "words holds ids outside [0, {}), e.g. {}; use the export's vocabulary "
                "(assets/) and 0 for padding.",
                (vocabulary_size, tf.boolean_mask(words, tf.logical_not(in_range))[:1]),
            ),
        )
        with tf.control_dependencies([check]):
            words = tf.identity(words)
        logits, probabilities, word_attention, _ = self._run_model(image, words)
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
                    "expression per image.",
                    (batch, tf.size(expression)),
                ),
            ),
        ]
        # A valid UTF-8 string transcodes to itself; anything else is changed by the replacement.
        transcoded = tf.strings.unicode_transcode(
            expression, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
        )
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
        size, max_pixels, preprocessing = self._image_size, self._max_pixels, self._preprocessing

        def preprocess_one(args):
            index, encoded = args
            image = image_io.checked_decode_image(index, encoded, max_pixels)
            return preprocess.preprocess_image(image, size, preprocessing=preprocessing)

        indices = tf.range(tf.size(image_bytes), dtype=tf.int32)
        images, info = tf.map_fn(
            preprocess_one,
            (indices, image_bytes),
            fn_output_signature=(
                tf.TensorSpec([size, size, 3], tf.float32),
                {
                    key: tf.TensorSpec([], tf.float32 if key == "scale" else tf.int32)
                    for key in preprocess.INFO_KEYS
                },
            ),
        )  # [B, S, S, 3]
        words = self.tokenizer(expression)  # [B, T]
        tokens = self.tokenizer.padded_tokens(expression)  # [B, T]

        logits, probabilities, word_attention, outputs = self._run_model(images, words)
        restored, mask = self._map_to_original(logits, probabilities, info)  # [B, Hmax, Wmax]
        fused_scores, level_scores = self._score_maps(outputs)
        batch = tf.shape(words)[0]
        window = tf.stack(
            [tf.fill([batch], size)]
            + [info[key] for key in ("pad_top", "pad_left", "resized_height", "resized_width")],
            axis=1,
        )  # [B, 5]
        level_names = tf.tile(self.level_names[None], [batch, 1])  # [B, levels]
        return {
            "probabilities": restored,
            "mask": mask,
            "height": info["orig_height"],
            "width": info["orig_width"],
            "word_attention": word_attention,
            "words": words,
            "tokens": tokens,
            "fused_scores": fused_scores,
            "level_scores": level_scores,
            "window": window,
            "level_names": level_names,
        }

    def _map_to_original(self, logits, probabilities, info):
        """(probabilities float32, mask uint8), both [B, Hmax, Wmax], as `map_back` says."""
        if self._map_back == "authors":
            binary = tf.cast(logits >= map_back_lib.AUTHORS_LOGIT_THRESHOLD, tf.float32)
            stacked = tf.stack([binary, probabilities], axis=-1)  # [B, S, S, 2]
            restored = map_back_lib.authors_map_back_batch(stacked, info)  # float64 [B, H, W, 2]
            mask = tf.cast(restored[..., 0] > 0, tf.uint8)
            return tf.cast(restored[..., 1], tf.float32), mask
        restored = map_back_lib.unpad_and_resize_batch(
            probabilities[..., None], info, method="bilinear"
        )[..., 0]
        return restored, tf.cast(preprocess.binarize(restored), tf.uint8)

    def metadata(self) -> dict:
        """The module's constants as a JSON-ready dict."""
        return {
            "image_size": self._image_size,
            "max_words": self._max_words,
            "max_pixels": self._max_pixels,
            "preprocessing": self._preprocessing,
            "map_back": self._map_back,
            "level_names": [v.decode() for v in self.level_names.numpy()],
            "vocabulary_size": int(self.vocabulary_size.numpy()),
            "mask_threshold": float(self.mask_threshold.numpy()),
            "step": int(self.step.numpy()),
            "signatures": {
                SERVING_SIGNATURE: list(SERVING_OUTPUTS),
                PREPROCESSED_SIGNATURE: list(PREPROCESSED_OUTPUTS),
            },
        }
