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

The flags are absl flags (`--flag value` or `--flag=value`; `--image`, `--expression` and
`--output` may repeat), defined below at module level; `cmsa-predict --help` lists them.
"""

import json
import os
import pathlib
import sys
from collections.abc import Sequence

import numpy as np
from absl import flags

# The export's client side has its own module; its names stay importable from here.
from cmsa_tf.saved_model_predictor import (  # noqa: F401
    ItemError,
    SavedModelPredictor,
    UsageError,
    error_message,
    find_version_dir,
    refusal_message,
    split_outputs,
)

DEFAULT_OUTPUT_DIR = "cmsa_predictions"
MASK_SUFFIX = "_mask"
ATTENTION_SUFFIX = "_attention"
PROGRAM = "cmsa-predict"
USAGE = (
    f"usage: {PROGRAM} --model DIR [--version N] --image FILE --expression TEXT [--output FILE] "
    "[--image ... --expression ... --output ...] [--jsonl FILE] [--output_dir DIR] [--crf] "
    "[--alpha A]"
)
DESCRIPTION = "Referring image segmentation with an exported CMSA SavedModel."
EPILOG = "Writes OUT.png (overlay), OUT_mask.png and OUT_attention.png (Fig. 4) per item."


# The flags live in their own FlagValues, not absl's global one: `main(argv)` parses them on each
# call (the tests call it in-process), and the flags of other mains imported in the same process
# (`--output_dir`, `--version`, ...) neither clash with these nor take part in their parsing.
FLAGS = flags.FlagValues()
_MODEL = flags.DEFINE_string(
    "model",
    None,
    "SavedModel base directory (saved_models/NAME) or a version directory.",
    flag_values=FLAGS,
)
_VERSION = flags.DEFINE_integer(
    "version", None, "Version to load; default: the latest.", flag_values=FLAGS
)
_IMAGE = flags.DEFINE_multi_string("image", [], "Image file (repeatable).", flag_values=FLAGS)
_EXPRESSION = flags.DEFINE_multi_string(
    "expression",
    [],
    "Referring expression for the --image at the same position (repeatable).",
    flag_values=FLAGS,
)
_OUTPUT = flags.DEFINE_multi_string(
    "output",
    [],
    "Overlay PNG for the pair at the same position (repeatable).",
    flag_values=FLAGS,
)
_JSONL = flags.DEFINE_string(
    "jsonl",
    None,
    'File of {"image": ..., "expression": ..., "output": ...} lines.',
    flag_values=FLAGS,
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    DEFAULT_OUTPUT_DIR,
    "Where items without an output go.",
    flag_values=FLAGS,
)
_CRF = flags.DEFINE_boolean("crf", False, "Refine the mask with DenseCRF.", flag_values=FLAGS)
_ALPHA = flags.DEFINE_float("alpha", 0.5, "Overlay opacity in [0, 1].", flag_values=FLAGS)
_HELP = flags.DEFINE_boolean(
    "help", False, "Show this help and exit.", short_name="h", flag_values=FLAGS
)


def output_paths(
    output: str | os.PathLike,
) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """The (overlay, mask, attention) paths written for `--output output`.

    Example:
        >>> [str(path) for path in output_paths("runs/out.png")]
        ['runs/out.png', 'runs/out_mask.png', 'runs/out_attention.png']
    """
    path = pathlib.Path(output)
    stem = path.with_suffix("") if path.suffix else path
    overlay = path if path.suffix else path.with_name(path.name + ".png")
    return (
        overlay,
        stem.with_name(stem.name + MASK_SUFFIX + ".png"),
        stem.with_name(stem.name + ATTENTION_SUFFIX + ".png"),
    )


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
            items.append(
                {
                    "source": where,
                    "error": f"needs string fields 'image' and 'expression' ('output' optional); "
                    f"bad or missing: {problems}",
                }
            )
            continue
        image = record["image"]
        if not os.path.isabs(image):
            image = os.path.join(base, image)
        if output and not os.path.isabs(output):
            output = os.path.join(base, output)
        items.append(
            {"source": where, "image": image, "expression": record["expression"], "output": output}
        )
    return items


def _collect_items(images, expressions, outputs, jsonl, output_dir):
    if len(images) != len(expressions):
        raise UsageError(
            f"Give one --expression per --image: got {len(images)} images and "
            f"{len(expressions)} expressions."
        )
    if outputs and len(outputs) != len(images):
        raise UsageError(
            f"Give one --output per --image pair, or none (then --output_dir is used): got "
            f"{len(outputs)} outputs for {len(images)} pairs."
        )
    items = []
    for index, (image, expression) in enumerate(zip(images, expressions)):
        output = outputs[index] if outputs else None
        items.append(
            {
                "source": f"--image #{index + 1}",
                "image": image,
                "expression": expression,
                "output": output,
            }
        )
    if jsonl:
        items.extend(_read_jsonl(jsonl))
    if not items:
        raise UsageError("Nothing to do: give --image/--expression pairs or --jsonl.")
    for number, item in enumerate(items):
        if "error" not in item and not item["output"]:
            name = pathlib.Path(item["image"]).stem or "image"
            item["output"] = os.path.join(output_dir, f"{number:03d}_{name}.png")
    return items


def _process(predictor, item, crf, alpha):
    """Runs one item and writes its PNGs; returns a one-line summary."""
    from cmsa_tf import visualize
    from cmsa_tf.data import image_io

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
    image = image_io.decode_rgb(image_bytes)  # as the export decodes it
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
        visualize.word_attention_image(
            result["tokens"], attention[:, :num_words], level_names, title=expression
        ),
    )
    share = 100.0 * float(np.mean(mask)) if mask.size else 0.0
    return f"{overlay_path}, {mask_path.name}, {attention_path.name} ({share:.1f}% of the image)"


def _usage_error(message):
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    return 2


def _help():
    return "\n\n".join(
        [USAGE, DESCRIPTION, FLAGS.get_help(include_special_flags=False).rstrip(), EPILOG]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs cmsa-predict with `argv` (without the program name); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    FLAGS.unparse_flags()  # back to the defaults: the repeated flags would otherwise accumulate
    try:
        rest = FLAGS([PROGRAM, *argv])[1:]
    except flags.Error as error:
        return _usage_error(f"{error} ({PROGRAM} --help lists the flags).")
    if _HELP.value:
        print(_help())
        return 0
    if rest:
        return _usage_error(f"unexpected arguments {rest}: every value follows its flag.")
    if _MODEL.value is None:
        return _usage_error("--model is required (the export's base or version directory).")
    if not 0.0 <= _ALPHA.value <= 1.0:
        return _usage_error(f"--alpha must be in [0, 1], got {_ALPHA.value}.")
    try:
        items = _collect_items(
            _IMAGE.value, _EXPRESSION.value, _OUTPUT.value, _JSONL.value, _OUTPUT_DIR.value
        )
        version_dir = find_version_dir(_MODEL.value, _VERSION.value)
        predictor = SavedModelPredictor(version_dir)
    except UsageError as error:
        return _usage_error(error)
    print(f"{PROGRAM}: model {version_dir}", file=sys.stderr)

    failed = 0
    for number, item in enumerate(items):
        label = f"[{number}] {item['source']}"
        try:
            if "error" in item:
                raise ItemError(item["error"])
            summary = _process(predictor, item, _CRF.value, _ALPHA.value)
        except ItemError as error:
            failed += 1
            where = f" ({item['image']})" if "image" in item else ""
            print(f"{label}{where}: error: {error}", file=sys.stderr)
            continue
        print(f"{label}: {summary}")
    if failed:
        print(f"{PROGRAM}: {failed} of {len(items)} items failed.", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """Console-script entry point (`cmsa-predict = cmsa_tf.predict:run`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
