"""Training: the Trainer, its loop, distribution strategies, precision, TensorBoard evaluation.

`python -m cmsa_tf.train` is the command line over this library.
"""

from cmsa_tf.training.loop import NonFiniteLossError, train_and_evaluate, train_loop
from cmsa_tf.training.precision import set_precision
from cmsa_tf.training.strategies import (
    STRATEGIES,
    configure_cpu_devices,
    create_strategy,
    distributes_input,
    is_chief,
)
from cmsa_tf.training.summaries import TrainingEvaluator
from cmsa_tf.training.trainer import Trainer

__all__ = [
    "STRATEGIES",
    "NonFiniteLossError",
    "Trainer",
    "TrainingEvaluator",
    "configure_cpu_devices",
    "create_strategy",
    "distributes_input",
    "is_chief",
    "set_precision",
    "train_and_evaluate",
    "train_loop",
]
