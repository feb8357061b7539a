"""The optimisation recipes: Adam, polynomial decay (optional warm-up), L2 weight decay, the bias
factor.

`config.train.recipe` (docs/design.md, "Training recipe"):

- "default": L2 decay on every kernel (`variable_role == "kernel"`: conv, dense, attention and
  LSTM kernels of the head, and the kernels of the backbone stages that train); every bias takes
  `bias_lr_multiplier` times the learning rate inside Adam's update; Adam epsilon 1e-7.
- "authors" (their `train_op`): L2 decay only on the kernels of `res5_projection` and `score`
  (their `mlp_c5/DW`, `score/DW`) and of the backbone stages that train (their `weights`);
  the gradients of those two layers' biases are multiplied by `bias_lr_multiplier` (which Adam's
  update ignores, up to epsilon); Adam epsilon 1e-8.

Variables are selected by role from the last two parts of their path (`variable_role`).
"""

import re
from collections.abc import Sequence

import keras
import ml_collections
import tensorflow as tf
from keras import ops

RECIPES = ("default", "authors")
ROLES = ("kernel", "bias", "embedding", "normalization", "scale")
# Adam's epsilon of each recipe when `config.train.adam_epsilon` is None (Keras's, TF1's).
ADAM_EPSILON = {"default": 1e-7, "authors": 1e-8}
# The layers whose kernels and biases the authors' recipe treats apart.
AUTHORS_HEAD_LAYERS = ("res5_projection", "score")
# Backbone convolutions (`conv1`, `res4b22_branch2a`, ...), as `AtrousResNet` names them.
_BACKBONE_CONV = re.compile(r"^(conv1|res\d+[a-z]\w*_branch\w+)$")
_NORMALIZATION = ("gamma", "beta", "moving_mean", "moving_variance")


def _path_parts(variable):
    # A Keras variable has a `path`; inside a distributed update we see the raw tf.Variable,
    # whose name is the same path with a ":0" suffix.
    path = getattr(variable, "path", None) or variable.name
    parts = path.split(":")[0].split("/")
    return (parts[-2] if len(parts) > 1 else ""), parts[-1]


def _leaf_name(variable):
    return _path_parts(variable)[1]


def variable_role(variable) -> str:
    """ "kernel" (`kernel`, `*_kernel`: query / key / value / output / reduce / recurrent),
    "bias" (`bias`, `*_bias`), "embedding", "normalization" (BatchNorm / LayerNorm `gamma`,
    `beta`, moving statistics) or "scale" (any other, e.g. the fusion's `gamma_1`)."""
    leaf = _leaf_name(variable)
    if leaf == "kernel" or leaf.endswith("_kernel"):
        return "kernel"
    if leaf == "bias" or leaf.endswith("_bias"):
        return "bias"
    if leaf == "embeddings":
        return "embedding"
    if leaf in _NORMALIZATION:
        return "normalization"
    return "scale"


def _check_recipe(recipe):
    if recipe not in RECIPES:
        raise ValueError(f"config.train.recipe must be one of {RECIPES}, got {recipe!r}.")


def is_bias(variable) -> bool:
    return variable_role(variable) == "bias"


def is_decayed(variable, recipe: str = "default") -> bool:
    """Whether the recipe's L2 term covers `variable` (module docstring)."""
    _check_recipe(recipe)
    if variable_role(variable) != "kernel":
        return False
    if recipe == "default":
        return True
    layer = _path_parts(variable)[0]
    return layer in AUTHORS_HEAD_LAYERS or bool(_BACKBONE_CONV.match(layer))


def has_bias_gradient_factor(variable, recipe: str) -> bool:
    """Whether the recipe multiplies `variable`'s gradient by `bias_lr_multiplier`: the biases of
    `AUTHORS_HEAD_LAYERS` under "authors"; none under "default" (a learning-rate factor there)."""
    _check_recipe(recipe)
    return (
        recipe == "authors"
        and is_bias(variable)
        and _path_parts(variable)[0] in AUTHORS_HEAD_LAYERS
    )


def scale_gradients(gradients, variables, train_config: ml_collections.ConfigDict) -> list:
    """The recipe's gradient factors (`has_bias_gradient_factor`) applied to `gradients`."""
    recipe = train_config.get("recipe", "default")
    factor = train_config.bias_lr_multiplier
    return [
        g * factor if g is not None and has_bias_gradient_factor(v, recipe) else g
        for g, v in zip(gradients, variables, strict=True)
    ]


def _handle(variable):
    """The resource handle of a Keras variable (its `tf.Variable`) or of a `tf.Variable` (inside
    a distributed update, the replica's component)."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


@keras.saving.register_keras_serializable(package="cmsa_tf")
class Adam(keras.optimizers.Adam):
    """Adam whose bias variables take `bias_lr_multiplier` times the learning rate.

    Adam's step does not scale with the gradient, so the authors' "biases at twice the learning
    rate" cannot be had by scaling gradients; this multiplies the learning rate in the update
    instead.

    Each variable's update is TensorFlow's fused Adam kernel (`ResourceApplyAdam`, the update of
    TF1's `AdamOptimizer`), the same formula as `keras.optimizers.Adam`'s (epsilon added to the
    root of the second moment) as one op instead of about twenty, fewer ops for a train step to
    trace and to run. The two agree to float32 rounding (`tests/test_optimization.py`). With
    `amsgrad=True` the update is Keras's.

    Args:
        bias_lr_multiplier: learning-rate factor for the biases (`variable_role` "bias").
        **kwargs: `keras.optimizers.Adam` arguments.
    """

    def __init__(self, bias_lr_multiplier: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.bias_lr_multiplier = bias_lr_multiplier

    def update_step(self, gradient, variable, learning_rate):
        if self.bias_lr_multiplier != 1.0 and is_bias(variable):
            learning_rate = ops.multiply(learning_rate, self.bias_lr_multiplier)
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        self._adam_update(gradient, variable, learning_rate)

    def _adam_update(self, gradient, variable, learning_rate):
        """Adam's update of `variable` at `learning_rate` (the bias factor already applied), as
        `ResourceApplyAdam`."""
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(tf.convert_to_tensor(gradient), dtype),  # IndexedSlices made dense
        )

    def get_config(self):
        config = super().get_config()
        config["bias_lr_multiplier"] = self.bias_lr_multiplier
        return config


@keras.saving.register_keras_serializable(package="cmsa_tf")
class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 over `warmup_steps`, then polynomial decay over `decay_steps`.

    Step `s < warmup_steps` takes `initial_learning_rate * (s + 1) / warmup_steps`; from
    `warmup_steps` on it is `PolynomialDecay` of step `s` (the decay counts from step 0, so the
    schedule ends at `end_learning_rate` on step `decay_steps` whatever the warm-up). With
    `warmup_steps = 0` it is `PolynomialDecay` exactly.

    Args:
        initial_learning_rate, decay_steps, end_learning_rate, power: as
            `keras.optimizers.schedules.PolynomialDecay`.
        warmup_steps: int >= 0.

    Example:
    >>> schedule = WarmupPolynomialDecay(1e-3, decay_steps=100, warmup_steps=10)
    >>> float(schedule(0)), float(schedule(9))
    (0.0001, 0.001)
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        end_learning_rate: float = 1e-4,
        power: float = 1.0,
        warmup_steps: int = 0,
    ):
        if int(warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}.")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.warmup_steps = int(warmup_steps)
        self._decay = keras.optimizers.schedules.PolynomialDecay(
            initial_learning_rate=initial_learning_rate,
            decay_steps=decay_steps,
            end_learning_rate=end_learning_rate,
            power=power,
        )

    def __call__(self, step):
        decayed = self._decay(step)
        if not self.warmup_steps:
            return decayed
        step = ops.cast(step, decayed.dtype)
        ramp = self.initial_learning_rate * (step + 1.0) / float(self.warmup_steps)
        return ops.where(step < self.warmup_steps, ramp, decayed)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "warmup_steps": self.warmup_steps,
        }


def learning_rate_schedule(train_config: ml_collections.ConfigDict) -> WarmupPolynomialDecay:
    """`config.train.warmup_steps` of linear warm-up, then polynomial decay from `learning_rate`
    to `end_learning_rate` over `steps` (power `decay_power`, 0.9: the authors' recipe, which
    has no warm-up)."""
    return WarmupPolynomialDecay(
        initial_learning_rate=train_config.learning_rate,
        decay_steps=max(int(train_config.steps), 1),
        end_learning_rate=train_config.end_learning_rate,
        power=train_config.decay_power,
        warmup_steps=train_config.get("warmup_steps", 0),
    )


def create_optimizer(train_config: ml_collections.ConfigDict) -> Adam:
    """The recipe's Adam (`Adam` below) over `learning_rate_schedule(train_config)`."""
    if train_config.optimizer != "adam":
        raise ValueError(
            f"config.train.optimizer must be 'adam' (the authors' optimiser), "
            f"got {train_config.optimizer!r}."
        )
    recipe = train_config.get("recipe", "default")
    _check_recipe(recipe)
    epsilon = train_config.get("adam_epsilon")
    return Adam(
        learning_rate=learning_rate_schedule(train_config),
        # "authors": the bias factor is on the gradient (`scale_gradients`), not the rate.
        bias_lr_multiplier=train_config.bias_lr_multiplier if recipe == "default" else 1.0,
        epsilon=ADAM_EPSILON[recipe] if epsilon is None else epsilon,
    )


def l2_penalty(variables: Sequence, weight_decay: float, recipe: str = "default"):
    """`weight_decay * sum ||w||^2 / 2` over the recipe's decayed kernels (TF1's l2_loss)."""
    kernels = [v for v in variables if is_decayed(v, recipe)]
    if not weight_decay or not kernels:
        return ops.convert_to_tensor(0.0)
    return weight_decay * ops.sum(
        ops.stack([ops.sum(ops.square(ops.cast(v, "float32"))) / 2.0 for v in kernels])
    )
