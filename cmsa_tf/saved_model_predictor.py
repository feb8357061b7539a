"""A loaded CMSA export, run in this process: the reading of its `serving_default` answer.

`SavedModelPredictor` loads a SavedModel written by `cmsa_tf.export` and runs its `serving_default`
signature; `split_outputs` turns a signature's (or TF Serving's) answer into one dict per example;
`find_version_dir` picks the version directory of TF Serving's NAME/VERSION/ layout;
`refusal_message` turns the export's refusal of a request into a sentence. `cmsa-predict`
(`cmsa_tf.predict`) and the web demo (`cmsa_tf.demo.client`) are built on these. TensorFlow is
imported only when a model is loaded.
"""

import os
import re
from collections.abc import Mapping, Sequence

import numpy as np

_ASSERT_RE = re.compile(r"assertion failed: \[(.*?)\]\s*(?:\n|$)", re.DOTALL)
_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[{{node")


class UsageError(Exception):
    """A problem with the command line or the model directory (exit status 2)."""


class ItemError(Exception):
    """A problem with one item; reported, and the other items go on."""


def _is_saved_model(path):
    return any(
        os.path.isfile(os.path.join(path, name)) for name in ("saved_model.pb", "saved_model.pbtxt")
    )


def find_version_dir(model: str | os.PathLike, version: int | None = None) -> str:
    """The SavedModel directory to load.

    Args:
        model: a version directory (holding `saved_model.pb`) or a base directory of integer
            version directories (TF Serving's layout).
        version: int; default: the highest version whose directory holds a SavedModel.

    Returns:
        the path of the version directory.

    Raises:
        UsageError: nothing loadable there.
    """
    model = os.fspath(model)
    if not os.path.isdir(model):
        raise UsageError(f"--model {model!r} is not a directory.")
    if version is None and _is_saved_model(model):
        return model
    from cmsa_tf.export import saving  # imports TensorFlow: only once it is needed

    versions = [
        v for v in saving.list_versions(model) if _is_saved_model(os.path.join(model, str(v)))
    ]
    if version is not None:
        if version not in versions:
            raise UsageError(
                f"--model {model!r} has no version {version} (versions with a SavedModel: "
                f"{versions or 'none'})."
            )
        return os.path.join(model, str(version))
    if not versions:
        raise UsageError(
            f"--model {model!r} holds no SavedModel: expected saved_model.pb in it or in an "
            "integer version directory (python -m cmsa_tf.export writes NAME/VERSION/)."
        )
    return os.path.join(model, str(versions[-1]))


def error_message(error: BaseException | str) -> str:
    """The useful line(s) of a TensorFlow runtime error (the assertion text when there is one)."""
    text = getattr(error, "message", None) or str(error)
    match = _ASSERT_RE.search(text)
    if match:
        return match.group(1).strip()
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(_NOISE)]
    return " ".join(lines) or type(error).__name__


def refusal_message(error: BaseException | str) -> str:
    """The export's refusal of a request (a TF error, or TF Serving's `"error"` text) as a
    sentence about "the image" and "the expression" (all examples of a request share them here)."""
    message = error_message(error)
    message = re.sub(r"image_bytes\[\d+\] ", "the image ", message)
    return re.sub(r"expression\[\d+\] ", "the expression ", message)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def split_outputs(outputs: Mapping) -> list[dict]:
    """One dict per example of a `serving_default` answer, cropped to each image's own size.

    The one reading of the signature's outputs (docs/serving.md, "Response"), shared by
    `SavedModelPredictor` and the web demo's TF Serving client.

    Args:
        outputs: the signature's outputs as arrays with the batch axis first (string outputs as
            bytes or str).

    Returns:
        a list of dicts with `probabilities` float32 [H, W], `mask` uint8 [H, W] (0 / 1),
        `word_attention` [levels, T], `words` int32 [T], `tokens` (list of str, the real words);
        from exports that have them also `fused_scores` [h, w], `level_scores` [levels, h, w],
        `window` (5 ints) and `level_names` (list of str).
    """
    arrays = {key: np.asarray(value) for key, value in outputs.items()}
    items = []
    for i in range(len(arrays["height"])):
        height, width = int(arrays["height"][i]), int(arrays["width"][i])
        words = arrays["words"][i].astype(np.int32)
        tokens = [_text(token) for token in arrays["tokens"][i]]
        item = {
            "probabilities": arrays["probabilities"][i, :height, :width].astype(np.float32),
            "mask": arrays["mask"][i, :height, :width].astype(np.uint8),
            "word_attention": arrays["word_attention"][i].astype(np.float32),
            "words": words,
            "tokens": [token for token, word in zip(tokens, words) if word != 0],
        }
        for key in ("fused_scores", "level_scores"):
            if key in arrays:
                item[key] = arrays[key][i].astype(np.float32)
        if "window" in arrays:
            item["window"] = tuple(int(v) for v in arrays["window"][i])
        if "level_names" in arrays:
            item["level_names"] = [_text(name) for name in arrays["level_names"][i]]
        items.append(item)
    return items


class SavedModelPredictor:
    """A loaded export's `serving_default`, run one item (or one image's expressions) at a time.

    Args:
        version_dir: a SavedModel directory written by `cmsa_tf.export`.
    """

    def __init__(self, version_dir: str):
        import tensorflow as tf
        from absl import logging as absl_logging

        self._tf = tf
        self.version_dir = version_dir
        # Exports of the official attention form carry inference-only functions whose custom
        # gradients are not saved; loading them warns once per function, which is noise here.
        verbosity = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.ERROR)
        try:
            self.loaded = tf.saved_model.load(version_dir)
        finally:
            absl_logging.set_verbosity(verbosity)
        if "serving_default" not in self.loaded.signatures:
            raise UsageError(f"{version_dir!r} has no serving_default signature.")
        self.serve = self.loaded.signatures["serving_default"]
        names = getattr(self.loaded, "level_names", None)
        self.level_names = (
            [name.decode("utf-8") for name in names.numpy()] if names is not None else None
        )

    def predict(self, image_bytes: bytes, expression: bytes | str) -> dict:
        """Runs the export on one item.

        Returns:
            the dict of `split_outputs` for the item.

        Raises:
            ItemError: the export refused the input.
        """
        return self.predict_batch([image_bytes], [expression])[0]

    def predict_batch(
        self, image_bytes: Sequence[bytes], expressions: Sequence[bytes | str]
    ) -> list[dict]:
        """Runs the export on a batch in one call (e.g. one image with several expressions).

        Returns:
            the dicts of `split_outputs`, one per example.

        Raises:
            ItemError: the export refused the request.
        """
        tf = self._tf
        try:
            outputs = self.serve(
                image_bytes=tf.constant(list(image_bytes), tf.string),
                expression=tf.constant(list(expressions), tf.string),
            )
        except tf.errors.InvalidArgumentError as error:
            raise ItemError(refusal_message(error)) from None
        return split_outputs({key: value.numpy() for key, value in outputs.items()})
