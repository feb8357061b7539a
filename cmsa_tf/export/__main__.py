r"""Exports a trained CMSA model as a SavedModel for TF Serving.

  python -m cmsa_tf.export --config=configs/refcoco_unc.py --workdir=workdir/refcoco_unc \
      --export_dir=saved_models/refcoco_unc [--version=N] [--checkpoint=PREFIX] [--overwrite] \
      [--max_pixels=N]

Writes `<export_dir>/<version>/` (`cmsa_tf.export.saving.export_model`; the default version is
the training step of the checkpoint) and prints its path. docs/serving.md describes the export.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from cmsa_tf.data import image_io
from cmsa_tf.export import module, saving

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Training directory; its latest checkpoint is exported."
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Checkpoint prefix to export instead of the latest."
)
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "Model base directory, e.g. saved_models/NAME."
)
_VERSION = flags.DEFINE_integer(
    "version", None, "Version directory; default: the training step.", lower_bound=0
)
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace an existing version directory.")
_MAX_PIXELS = flags.DEFINE_integer(
    "max_pixels",
    image_io.DEFAULT_MAX_PIXELS,
    "Refuse images with more pixels than this (0: no limit).",
    lower_bound=0,
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or not _EXPORT_DIR.value:
        raise app.UsageError("--config and --export_dir are required.")
    if not _WORKDIR.value and not _CHECKPOINT.value:
        raise app.UsageError("Give --workdir (its latest checkpoint) or --checkpoint.")
    try:
        path = saving.export_model(
            _CONFIG.value,
            _WORKDIR.value,
            _EXPORT_DIR.value,
            version=_VERSION.value,
            checkpoint=_CHECKPOINT.value,
            overwrite=_OVERWRITE.value,
            max_pixels=_MAX_PIXELS.value,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        logging.error("%s", error)
        raise SystemExit(f"error: {error}") from None
    logging.info(
        "Exported %s (signatures %s, %s).",
        path,
        module.SERVING_SIGNATURE,
        module.PREPROCESSED_SIGNATURE,
    )
    print(path)


if __name__ == "__main__":
    app.run(main)
