"""The authors' optimisation recipe: Adam, polynomial decay, L2 weight decay, 2x bias learning rate.

See docs/design.md, "Training recipe".
"""

from collections.abc import Sequence

import keras
import ml_collections
from keras import ops


def _leaf_name(variable):
    # A Keras variable has a `path`; inside a distributed update we see the raw tf.Variable,
    # whose name is the same path with a ":0" suffix.
    path = getattr(variable, "path", None) or variable.name
    return path.split(":")[0].split("/")[-1]


def is_bias(variable) -> bool:
    return _leaf_name(variable) == "bias"


def is_decayed(variable) -> bool:
    """Weight decay applies to conv / projection kernels only (not biases, BN, embeddings,
    gammas)."""
    return _leaf_name(variable) == "kernel"


@keras.saving.register_keras_serializable(package="cmsa_tf")
class Adam(keras.optimizers.Adam):
    """Adam whose bias variables take `bias_lr_multiplier` times the learning rate.

    Adam's step does not scale with the gradient, so the authors' "biases at twice the learning
    rate" cannot be had by scaling gradients; this multiplies the learning rate in the update
    instead.

    Args:
        bias_lr_multiplier: learning-rate factor for variables named `bias`.
        **kwargs: `keras.optimizers.Adam` arguments.
    """

    def __init__(self, bias_lr_multiplier: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.bias_lr_multiplier = bias_lr_multiplier

    def update_step(self, gradient, variable, learning_rate):
        if self.bias_lr_multiplier != 1.0 and is_bias(variable):
            learning_rate = ops.multiply(learning_rate, self.bias_lr_multiplier)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["bias_lr_multiplier"] = self.bias_lr_multiplier
        return config


def learning_rate_schedule(
    train_config: ml_collections.ConfigDict,
) -> keras.optimizers.schedules.PolynomialDecay:
    """Polynomial decay from `learning_rate` to `end_learning_rate` over `steps` (power 0.9)."""
    return keras.optimizers.schedules.PolynomialDecay(
        initial_learning_rate=train_config.learning_rate,
        decay_steps=max(int(train_config.steps), 1),
        end_learning_rate=train_config.end_learning_rate,
        power=train_config.decay_power,
    )


def create_optimizer(train_config: ml_collections.ConfigDict) -> Adam:
    """The authors' Adam (`Adam` below) over `learning_rate_schedule(train_config)`."""
    if train_config.optimizer != "adam":
        raise ValueError(
            f"config.train.optimizer must be 'adam' (the authors' optimiser), "
            f"got {train_config.optimizer!r}."
        )
    return Adam(
        learning_rate=learning_rate_schedule(train_config),
        bias_lr_multiplier=train_config.bias_lr_multiplier,
    )


def l2_penalty(variables: Sequence, weight_decay: float):
    """`weight_decay * sum ||w||^2 / 2` over decayed kernels (TF1's l2_loss, as the authors)."""
    kernels = [v for v in variables if is_decayed(v)]
    if not weight_decay or not kernels:
        return ops.convert_to_tensor(0.0)
    return weight_decay * ops.sum(
        ops.stack([ops.sum(ops.square(ops.cast(v, "float32"))) / 2.0 for v in kernels])
    )
