r"""Imports the authors' released TF1 CMSA checkpoint as a cmsa_tf workdir.

  python -m cmsa_tf.import_authors --checkpoint=PREFIX --vocab=vocabulary_Gref.txt \
      --workdir=workdir/gref_authors [--config=configs/refcocog_google.py:authors]

Writes WORKDIR/checkpoints/ckpt-<step>, WORKDIR/vocab.txt and WORKDIR/import_report.json
(`cmsa_tf.models.weights.authors.import_to_workdir`); `cmsa_tf.evaluate`, `cmsa_tf.export` and
`cmsa_tf.train` then take the same --config and --workdir. docs/authors_model.md has the steps.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from cmsa_tf.models.weights import authors

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/refcocog_google.py:authors", "Experiment config (an :authors config)."
)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "The authors' TF1 checkpoint prefix.")
_VOCAB = flags.DEFINE_string("vocab", None, "Their vocabulary file (e.g. vocabulary_Gref.txt).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory to write (must hold no checkpoint).")
_STEP = flags.DEFINE_integer(
    "step", None, "Step to record; default: the checkpoint's float global step.", lower_bound=0
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not (_CHECKPOINT.value and _VOCAB.value and _WORKDIR.value):
        raise app.UsageError("--checkpoint, --vocab and --workdir are required.")
    try:
        report = authors.import_to_workdir(
            _CONFIG.value, _CHECKPOINT.value, _VOCAB.value, _WORKDIR.value, step=_STEP.value
        )
    except (FileExistsError, ValueError) as error:
        logging.error("%s", error)
        raise SystemExit(f"error: {error}") from None
    print(
        f"Imported {len(report.loaded)} variables at step {report.step} "
        f"(vocabulary {report.vocab_size}) into {_WORKDIR.value}."
    )
    print(f"Ignored {len(report.ignored)} checkpoint variables:")
    for key, reason in report.ignored:
        print(f"  {key} ({reason})")
    if report.unexpected:
        print(f"Not read, unknown to the import ({len(report.unexpected)}):")
        for key in report.unexpected:
            print(f"  {key}")


if __name__ == "__main__":
    app.run(main)
