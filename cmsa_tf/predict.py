r"""cmsa-predict: segment what an expression refers to, with an exported SavedModel alone.

  cmsa-predict --model saved_models/NAME [--version N] \
      --image photo.jpg --expression "man on the left" --output out.png [--crf]
  cmsa-predict --model saved_models/NAME --image a.jpg --expression "left dog" --output a_out.png \
      --image b.png --expression "the red car" --output b_out.png
  cmsa-predict --model saved_models/NAME --jsonl requests.jsonl [--output_dir DIR]

`--model` is the export's base directory (the latest integer version directory is used unless
`--version` is given) or a version directory itself. No config or checkpoint is needed: the
SavedModel carries the weights, the vocabulary and the preprocessing.

Items: `--image`/`--expression` pairs (repeat both flags, in the same order; `--output` once per
pair, or not at all) and/or `--jsonl FILE` with one JSON object a line,
`{"image": PATH, "expression": TEXT, "output": PATH}` ("output" optional; relative paths are
taken relative to the JSONL file's directory).

For an item with output `out.png`, three PNGs are written next to each other:
- `out.png`: the image with the predicted region tinted and outlined (`visualize.overlay_mask`);
- `out_mask.png`: the binary mask at the image's size, 255 = referred region, 0 = background;
- `out_attention.png`: the per-level word-attention matrix of the paper's Fig. 4.
The names come from the output path without its extension. An item without an output is written
to `--output_dir` (default `cmsa_predictions`) as `<item number>_<image name>.png` and its
siblings. With `--crf` the mask and overlay are the DenseCRF-refined ones (the authors' settings).

Each item is run on its own, so a bad item (missing or unreadable file, bytes that are not an
image, a truncated file, an image over the export's pixel limit, an expression that is not UTF-8,
or an expression without any word, whose prediction would not depend on the image) is reported
on stderr and the others are still processed. The exit status is 0 when every item succeeded,
1 when any failed, 2 for a usage error (bad flags, no model).
"""

import argparse
import json
import os
import pathlib
import re
import sys

DEFAULT_OUTPUT_DIR = "cmsa_predictions"
MASK_SUFFIX = "_mask"
ATTENTION_SUFFIX = "_attention"
_VERSION_RE = re.compile(r"^[0-9]+$")
_ASSERT_RE = re.compile(r"assertion failed: \[(.*?)\]\s*(?:\n|$)", re.DOTALL)
_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[{{node")


class UsageError(Exception):
    """A problem with the command line or the model directory (exit status 2)."""


class ItemError(Exception):
    """A problem with one item; reported, and the other items go on."""


def output_paths(output):
    """The (overlay, mask, attention) paths written for `--output output`.

    Example:
        >>> output_paths("runs/out.png")
        (PosixPath('runs/out.png'), PosixPath('runs/out_mask.png'), PosixPath('runs/out_attention.png'))
    """
    path = pathlib.Path(output)
    stem = path.with_suffix("") if path.suffix else path
    overlay = path if path.suffix else path.with_name(path.name + ".png")
    return (
        overlay,
        stem.with_name(stem.name + MASK_SUFFIX + ".png"),
        stem.with_name(stem.name + ATTENTION_SUFFIX + ".png"),
    )


def find_version_dir(model, version=None):
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

    def is_saved_model(path):
        return any(
            os.path.isfile(os.path.join(path, name)) for name in ("saved_model.pb", "saved_model.pbtxt")
        )

    if version is None and is_saved_model(model):
        return model
    versions = sorted(
        int(entry)
        for entry in os.listdir(model)
        if _VERSION_RE.match(entry) and is_saved_model(os.path.join(model, entry))
    )
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


def error_message(error):
    """The useful line(s) of a TensorFlow runtime error (the assertion text when there is one)."""
    text = getattr(error, "message", None) or str(error)
    match = _ASSERT_RE.search(text)
    if match:
        return match.group(1).strip()
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(_NOISE)]
    return " ".join(lines) or type(error).__name__


def _parser():
    parser = argparse.ArgumentParser(
        prog="cmsa-predict",
        description="Referring image segmentation with an exported CMSA SavedModel.",
        epilog="Writes OUT.png (overlay), OUT_mask.png and OUT_attention.png (Fig. 4) per item.",
    )
    parser.add_argument("--model", required=True,
                        help="SavedModel base directory (saved_models/NAME) or a version directory.")
    parser.add_argument("--version", type=int, default=None,
                        help="Version to load; default: the latest.")
    parser.add_argument("--image", action="append", default=[], help="Image file (repeatable).")
    parser.add_argument("--expression", action="append", default=[],
                        help="Referring expression for the --image at the same position.")
    parser.add_argument("--output", action="append", default=[],
                        help="Overlay PNG for the pair at the same position (repeatable).")
    parser.add_argument("--jsonl", default=None,
                        help='File of {"image": ..., "expression": ..., "output": ...} lines.')
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR,
                        help="Where items without an output go (default: %(default)s).")
    parser.add_argument("--crf", action="store_true", help="Refine the mask with DenseCRF.")
    parser.add_argument("--alpha", type=float, default=0.5, help="Overlay opacity in [0, 1].")
    return parser


def _read_jsonl(path):
    """Items (dicts) or ItemErrors, one per non-empty line of a JSONL file."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--jsonl {path!r} cannot be read: {error}") from None
    base = os.path.dirname(os.path.abspath(path))
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            items.append({"source": where, "error": f"not valid JSON ({error.msg})"})
            continue
        if not isinstance(record, dict):
            items.append({"source": where, "error": "each line must be a JSON object"})
            continue
        problems = [key for key in ("image", "expression") if not isinstance(record.get(key), str)]
        output = record.get("output")
        if output is not None and not isinstance(output, str):
            problems.append("output")
        if problems:
            items.append({
                "source": where,
                "error": f"needs string fields 'image' and 'expression' ('output' optional); "
                         f"bad or missing: {problems}",
            })
            continue
        image = record["image"]
        if not os.path.isabs(image):
            image = os.path.join(base, image)
        if output and not os.path.isabs(output):
            output = os.path.join(base, output)
        items.append({"source": where, "image": image, "expression": record["expression"],
                      "output": output})
    return items


def _collect_items(args):
    if len(args.image) != len(args.expression):
        raise UsageError(
            f"Give one --expression per --image: got {len(args.image)} images and "
            f"{len(args.expression)} expressions."
        )
    if args.output and len(args.output) != len(args.image):
        raise UsageError(
            f"Give one --output per --image pair, or none (then --output_dir is used): got "
            f"{len(args.output)} outputs for {len(args.image)} pairs."
        )
    items = []
    for index, (image, expression) in enumerate(zip(args.image, args.expression)):
        output = args.output[index] if args.output else None
        items.append({"source": f"--image #{index + 1}", "image": image,
                      "expression": expression, "output": output})
    if args.jsonl:
        items.extend(_read_jsonl(args.jsonl))
    if not items:
        raise UsageError("Nothing to do: give --image/--expression pairs or --jsonl.")
    for number, item in enumerate(items):
        if "error" not in item and not item["output"]:
            name = pathlib.Path(item["image"]).stem or "image"
            item["output"] = os.path.join(args.output_dir, f"{number:03d}_{name}.png")
    return items


class Predictor:
    """A loaded export's `serving_default`, one item at a time, plus the pictures.

    Args:
        version_dir: a SavedModel directory written by `cmsa_tf.export`.
    """

    def __init__(self, version_dir):
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

    def predict(self, image_bytes, expression):
        """Runs the export on one item.

        Returns:
            dict with `probabilities` float32 [H, W], `mask` uint8 [H, W] (0 / 1),
            `word_attention` [levels, T], `words` int32 [T], `tokens` list of str (real words).

        Raises:
            ItemError: the export refused the input.
        """
        tf = self._tf
        try:
            outputs = self.serve(
                image_bytes=tf.constant([image_bytes], tf.string),
                expression=tf.constant([expression], tf.string),
            )
        except tf.errors.InvalidArgumentError as error:
            message = error_message(error).replace("image_bytes[0] ", "the image ")
            raise ItemError(message.replace("expression[0] ", "the expression ")) from None
        height = int(outputs["height"][0])
        width = int(outputs["width"][0])
        words = outputs["words"].numpy()[0]
        tokens = [t.decode("utf-8", "replace") for t in outputs["tokens"].numpy()[0]]
        return {
            "probabilities": outputs["probabilities"].numpy()[0, :height, :width],
            "mask": outputs["mask"].numpy()[0, :height, :width],
            "word_attention": outputs["word_attention"].numpy()[0],
            "words": words,
            "tokens": [token for token, word in zip(tokens, words) if word != 0],
        }

    def decode_rgb(self, image_bytes):
        """The image as the export decoded it: uint8 RGB [H, W, 3]."""
        from cmsa_tf.data import pipeline

        return pipeline.decode_image(image_bytes).numpy()


def _process(predictor, item, crf, alpha):
    """Runs one item and writes its PNGs; returns a one-line summary."""
    import numpy as np

    from cmsa_tf import visualize

    path = item["image"]
    try:
        with open(path, "rb") as f:
            image_bytes = f.read()
    except OSError as error:
        raise ItemError(f"cannot read the image: {error.strerror or error}") from None
    expression = item["expression"]
    try:
        # Undecodable command-line bytes come back as they were given (and the export refuses them).
        encoded = expression.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ItemError("the expression is not valid UTF-8 text.") from None
    result = predictor.predict(image_bytes, encoded)
    if not result["tokens"]:
        raise ItemError(
            f"the expression {expression!r} has no words after tokenisation; the prediction "
            "would not depend on the image."
        )
    image = predictor.decode_rgb(image_bytes)
    mask = result["mask"].astype(bool)
    if crf:
        from cmsa_tf.evaluation.dense_crf import dense_crf

        mask = dense_crf(image, result["probabilities"]).astype(bool)
    overlay_path, mask_path, attention_path = output_paths(item["output"])
    visualize.save_png(overlay_path, visualize.overlay_mask(image, mask, alpha=alpha))
    visualize.save_png(mask_path, mask)
    num_words = len(result["tokens"])
    attention = result["word_attention"]
    level_names = predictor.level_names or [f"level {i}" for i in range(attention.shape[0])]
    visualize.save_png(
        attention_path,
        visualize.word_attention_image(result["tokens"], attention[:, :num_words], level_names,
                                       title=expression),
    )
    share = 100.0 * float(np.mean(mask)) if mask.size else 0.0
    return f"{overlay_path}, {mask_path.name}, {attention_path.name} ({share:.1f}% of the image)"


def main(argv=None):
    """Runs cmsa-predict with `argv` (without the program name); returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage error
        return int(exit_.code or 0)
    if not 0.0 <= args.alpha <= 1.0:
        print(f"cmsa-predict: error: --alpha must be in [0, 1], got {args.alpha}.", file=sys.stderr)
        return 2
    try:
        items = _collect_items(args)
        version_dir = find_version_dir(args.model, args.version)
        predictor = Predictor(version_dir)
    except UsageError as error:
        print(f"cmsa-predict: error: {error}", file=sys.stderr)
        return 2
    print(f"cmsa-predict: model {version_dir}", file=sys.stderr)

    failed = 0
    for number, item in enumerate(items):
        label = f"[{number}] {item['source']}"
        try:
            if "error" in item:
                raise ItemError(item["error"])
            summary = _process(predictor, item, args.crf, args.alpha)
        except ItemError as error:
            failed += 1
            where = f" ({item['image']})" if "image" in item else ""
            print(f"{label}{where}: error: {error}", file=sys.stderr)
            continue
        print(f"{label}: {summary}")
    if failed:
        print(f"cmsa-predict: {failed} of {len(items)} items failed.", file=sys.stderr)
        return 1
    return 0


def run():
    """Console-script entry point (`cmsa-predict = cmsa_tf.predict:run`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
