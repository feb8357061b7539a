r"""Trains CMSA: absl main over `cmsa_tf.training`.

  python -m cmsa_tf.train --config=configs/refcoco_unc.py --workdir=workdir/refcoco_unc
  python -m cmsa_tf.train --config=configs/shapes.py --workdir=workdir/shapes \
      --config.train.batch_size=8 --config.train.steps=2000

Running the same command on the same workdir resumes from the last checkpoint (weights, optimiser
state and step). Checkpoints are written every `config.train.checkpoint_every` steps, at the end,
and when the process receives SIGTERM. TensorBoard: `tensorboard --logdir WORKDIR`.

Strategies (`--strategy`): `mirrored` (all local GPUs, else the CPU), `multi_worker` (several hosts,
from the TF_CONFIG environment variable), `one_device`. The batch size in the config is the global
batch; it is split across replicas and the loss is scaled by the global batch.
"""

import json

from absl import app, flags, logging
from ml_collections import config_flags

from cmsa_tf.training import (
    STRATEGIES,
    NonFiniteLossError,
    configure_cpu_devices,
    create_strategy,
    train_and_evaluate,
)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and TensorBoard logs.")
_STRATEGY = flags.DEFINE_enum("strategy", "mirrored", list(STRATEGIES), "Distribution strategy.")
_NUM_CPU_DEVICES = flags.DEFINE_integer(
    "num_cpu_devices",
    0,
    "Split the host CPU into this many logical devices (to run MirroredStrategy without GPUs).",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or not _WORKDIR.value:
        raise app.UsageError("--config and --workdir are required.")
    configure_cpu_devices(_NUM_CPU_DEVICES.value)
    strategy = create_strategy(_STRATEGY.value)
    logging.info(
        "Training with %s over %d replica(s).",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
    )
    try:
        result = train_and_evaluate(_CONFIG.value, _WORKDIR.value, strategy)
    except NonFiniteLossError as error:
        logging.error("%s", error)
        raise SystemExit(f"error: {error}") from None
    logging.info("Done: %s", json.dumps(result))


if __name__ == "__main__":
    app.run(main)
