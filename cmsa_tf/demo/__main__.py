r"""cmsa-demo: a web page over an exported model (Gradio; `pip install -e '.[demo]'`).

  cmsa-demo --model saved_models/NAME [--version N] [--host 127.0.0.1] [--port 7860]
  cmsa-demo --server http://HOST:8501/v1/models/NAME [--examples shapes]

The page is a client of the export's `serving_default` signature and nothing else (no config, no
checkpoint): `--model` loads the SavedModel in this process (the latest version unless
`--version`), `--server` sends the same request to a TF Serving REST endpoint instead. With an
export trained on ShapesRef (or `--examples shapes`) the page offers a row of example scenes.

The flags are absl flags (`--flag value` or `--flag=value`), defined below at module level;
`cmsa-demo --help` lists them. Exit status 2 for a usage error (bad flags, no model).
"""

import os
import sys
import tempfile
from collections.abc import Sequence

from absl import flags

PROGRAM = "cmsa-demo"
EXAMPLES = ("auto", "shapes", "none")
USAGE = (
    f"usage: {PROGRAM} (--model DIR [--version N] | --server URL) [--host H] [--port P] "
    "[--examples auto|shapes|none] [--max_side N]"
)

# Its own FlagValues, as cmsa-predict's: `main(argv)` parses them on each call.
FLAGS = flags.FlagValues()
_MODEL = flags.DEFINE_string(
    "model",
    None,
    "SavedModel base directory (saved_models/NAME) or a version directory.",
    flag_values=FLAGS,
)
_VERSION = flags.DEFINE_integer(
    "version", None, "Version to load with --model; default: the latest.", flag_values=FLAGS
)
_SERVER = flags.DEFINE_string(
    "server",
    None,
    "TF Serving REST model URL, http://HOST:8501/v1/models/NAME, instead of --model.",
    flag_values=FLAGS,
)
_HOST = flags.DEFINE_string(
    "host",
    "127.0.0.1",
    "Address to serve the page on (0.0.0.0: every interface).",
    flag_values=FLAGS,
)
_PORT = flags.DEFINE_integer("port", 7860, "Port to serve the page on.", flag_values=FLAGS)
_EXAMPLES = flags.DEFINE_enum(
    "examples",
    "auto",
    EXAMPLES,
    "ShapesRef example row: auto (when the export was trained on ShapesRef), shapes, none.",
    flag_values=FLAGS,
)
_MAX_SIDE = flags.DEFINE_integer(
    "max_side",
    2048,
    "Images with a longer side are downscaled to it before sending (0: never).",
    flag_values=FLAGS,
)
_HELP = flags.DEFINE_boolean(
    "help", False, "Show this help and exit.", short_name="h", flag_values=FLAGS
)


def _usage_error(message) -> int:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None, block: bool = True):
    """Runs cmsa-demo with `argv` (without the program name).

    Returns:
        the exit status; with `block=False` the launched `gr.Blocks` instead (tests).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    FLAGS.unparse_flags()
    try:
        rest = FLAGS([PROGRAM, *argv])[1:]
    except flags.Error as error:
        return _usage_error(f"{error} ({PROGRAM} --help lists the flags).")
    if _HELP.value:
        print("\n\n".join([USAGE, FLAGS.get_help(include_special_flags=False).rstrip()]))
        return 0
    if rest:
        return _usage_error(f"unexpected arguments {rest}: every value follows its flag.")
    if _MAX_SIDE.value < 0:
        return _usage_error(f"--max_side must be >= 0, got {_MAX_SIDE.value}.")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from cmsa_tf import saved_model_predictor
    from cmsa_tf.demo import app as app_lib
    from cmsa_tf.demo import client as client_lib
    from cmsa_tf.demo import examples as examples_lib

    try:
        client = client_lib.make_client(_MODEL.value, _VERSION.value, _SERVER.value)
    except saved_model_predictor.UsageError as error:
        return _usage_error(error)
    directory = tempfile.mkdtemp(prefix="cmsa-demo-examples-")
    if _EXAMPLES.value == "shapes":
        examples = examples_lib.write_examples(directory)
    elif _EXAMPLES.value == "auto":
        examples = app_lib.shapes_examples(client, directory)
    else:
        examples = []
    print(f"{PROGRAM}: {client.description}", file=sys.stderr)
    try:
        client.warm_up()
    except saved_model_predictor.ItemError as error:  # e.g. the TF Serving endpoint is not up yet
        print(f"{PROGRAM}: warning: the first request failed: {error}", file=sys.stderr)
    app = app_lib.build_app(client, examples, max_side=_MAX_SIDE.value)
    app.launch(
        server_name=_HOST.value,
        server_port=_PORT.value,
        allowed_paths=[directory],
        prevent_thread_lock=not block,
        show_error=True,
        quiet=False,
    )
    return 0 if block else app


def run() -> None:
    """Console-script entry point (`cmsa-demo = cmsa_tf.demo.__main__:run`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
