r"""The ablation command line: every variant trained and evaluated for every seed.

  python -m cmsa_tf.experiments.ablation --config=configs/shapes.py --variants=all \
      --workdir=workdir/ablation --seeds=0,1,2 [--steps=2000] [--splits=val,testA,testB] [--crf]

`--variants` takes groups (`attention`, `representation`, `fusion`, `all`) or variant names
(`VARIANTS`), comma-separated. Each variant overrides three config fields of the base config,
`model.attention.variant`, `model.word_representation` and `model.fusion` (the definitions are in
docs/ablations.md); everything else, including the training budget, is the base config's.

Every run lives in `WORKDIR/<variant>/seed<k>/` (a normal training workdir: checkpoints,
TensorBoard, `config.json`) with its metrics in `results.json` there. The summary is
`WORKDIR/results.json`, `WORKDIR/results.md` (overall IoU mean +- sample standard deviation over
the seeds, prec@0.5..0.9) and `WORKDIR/ablation.png`. Running the same command again resumes:
finished runs are neither retrained nor re-evaluated, interrupted ones continue from their last
checkpoint, and only missing splits are evaluated.

`--config`, `--workdir`, `--strategy` and `--num_cpu_devices` are as in `cmsa_tf.train`
(`--config.KEY=VALUE` overrides work as there).
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from cmsa_tf.experiments.ablation.report import to_markdown
from cmsa_tf.experiments.ablation.runner import AblationInterrupted, run_ablation
from cmsa_tf.experiments.ablation.variants import GROUPS, VARIANTS, resolve_variants
from cmsa_tf.training import (
    STRATEGIES,
    NonFiniteLossError,
    configure_cpu_devices,
    create_strategy,
)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Base experiment config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Root directory: runs go to <workdir>/<variant>/seed<k>/."
)
_STRATEGY = flags.DEFINE_enum("strategy", "mirrored", list(STRATEGIES), "Distribution strategy.")
_NUM_CPU_DEVICES = flags.DEFINE_integer(
    "num_cpu_devices",
    0,
    "Split the host CPU into this many logical devices (to run MirroredStrategy without GPUs).",
)
_VARIANTS = flags.DEFINE_string(
    "variants",
    "all",
    f"Comma-separated groups ({', '.join(GROUPS)}, all) and / or variants ({', '.join(VARIANTS)}).",
)
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Training seeds, e.g. 0,1,2.")
_STEPS = flags.DEFINE_integer("steps", None, "Training steps of every run (default: the config's).")
_SPLITS = flags.DEFINE_list(
    "splits", None, "Splits to evaluate (default: config.data.eval_splits)."
)
_CRF = flags.DEFINE_boolean("crf", None, "Also evaluate with DenseCRF (default: config.eval.crf).")
_MAX_EXAMPLES = flags.DEFINE_integer(
    "max_examples", None, "Evaluate only the first N expressions per split."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or not _WORKDIR.value:
        raise app.UsageError("--config and --workdir are required.")
    try:
        seeds = [int(s) for s in _SEEDS.value]
        resolve_variants(_VARIANTS.value)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    configure_cpu_devices(_NUM_CPU_DEVICES.value)
    strategy = create_strategy(_STRATEGY.value)
    try:
        results = run_ablation(
            _CONFIG.value,
            _VARIANTS.value,
            _WORKDIR.value,
            seeds=seeds,
            splits=_SPLITS.value,
            steps=_STEPS.value,
            crf=_CRF.value,
            max_examples=_MAX_EXAMPLES.value,
            strategy=strategy,
        )
    except (AblationInterrupted, NonFiniteLossError) as error:
        logging.error("%s", error)
        raise SystemExit(f"error: {error}") from None
    print("\n" + to_markdown(results))
    print(f"Wrote {os.path.join(_WORKDIR.value, 'results.md')} and ablation.png.")


if __name__ == "__main__":
    app.run(main)
