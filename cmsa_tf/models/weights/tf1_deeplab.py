"""Loads TF1 DeepLab ResNet checkpoints (DrSleep's tensorflow-deeplab-resnet names) into Keras.

DrSleep's converted DeepLab-v2 ResNet-101, which the official CMSA code starts from, stores one
TF1 variable per Caffe blob, scoped by the Caffe layer name:

    conv1/weights                    [7, 7, 3, 64]   (HWIO, the layout of a Keras Conv2D kernel)
    bn_conv1/gamma, bn_conv1/beta, bn_conv1/moving_mean, bn_conv1/moving_variance  (TF-slim)
    res2a_branch1/weights, bn2a_branch1/..., res3b1_branch2a/weights, ..., res5c_branch2c/weights

Older caffe-tensorflow conversions name the BatchNorm parameters scale / offset / mean / variance;
both spellings are read. A checkpoint written by a larger model (the CMSA authors' one) may scope
everything (`some_scope/conv1/weights`) and holds head and optimiser variables too: the scope is
detected automatically and the extra variables are reported as unused.
"""

import collections
import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

# Keras attribute -> TF1 parameter names, preferred first.
_BATCHNORM_NAMES = {
    "gamma": ("gamma", "scale"),
    "beta": ("beta", "offset"),
    "moving_mean": ("moving_mean", "mean"),
    "moving_variance": ("moving_variance", "variance"),
}


@dataclasses.dataclass
class Tf1CheckpointReport:
    """What `load_tf1_checkpoint` did.

    Attributes:
        checkpoint_path: the path that was read.
        prefix: the scope in front of every backbone variable in the checkpoint ("" for none).
        loaded: checkpoint keys whose values were assigned.
        unused: checkpoint keys with no counterpart in the model (head, optimiser slots, ...).
        unassigned: TF1 names (without prefix) of model variables that received no value,
            including those with a shape mismatch.
        shape_mismatches: `(checkpoint key, checkpoint shape, model shape)` for names that match
            but whose shapes do not; these variables are left unchanged.
    """

    checkpoint_path: str
    prefix: str
    loaded: list = dataclasses.field(default_factory=list)
    unused: list = dataclasses.field(default_factory=list)
    unassigned: list = dataclasses.field(default_factory=list)
    shape_mismatches: list = dataclasses.field(default_factory=list)

    @property
    def complete(self):
        """True when every model variable got a value."""
        return not self.unassigned and not self.shape_mismatches

    def summary(self, max_names=5):
        """A few lines for a log: counts and the first names of each list."""

        def names(items):
            shown = ", ".join(str(item) for item in items[:max_names])
            more = f", ... ({len(items) - max_names} more)" if len(items) > max_names else ""
            return f"[{shown}{more}]"

        return (
            f"TF1 checkpoint {self.checkpoint_path!r} (prefix {self.prefix!r}): "
            f"loaded {len(self.loaded)} variables; "
            f"{len(self.unassigned)} model variables unassigned {names(self.unassigned)}; "
            f"{len(self.shape_mismatches)} shape mismatches {names(self.shape_mismatches)}; "
            f"{len(self.unused)} checkpoint variables unused {names(self.unused)}."
        )


def tf1_variable_names(model):
    """The TF1 names of a model's Conv2D and BatchNormalization variables.

    Args:
        model: a Keras model whose layers carry Caffe names (e.g. `AtrousResNet`).

    Returns:
        An ordered dict mapping the canonical TF1 name (`"res2a_branch1/weights"`,
        `"bn_conv1/gamma"`) to `(variable, accepted names)`, the accepted names preferred first.
    """
    names = collections.OrderedDict()
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            names[f"{layer.name}/weights"] = (layer.kernel, (f"{layer.name}/weights",))
            if layer.use_bias:
                names[f"{layer.name}/biases"] = (layer.bias, (f"{layer.name}/biases",))
        elif isinstance(layer, keras.layers.BatchNormalization):
            for attribute, spellings in _BATCHNORM_NAMES.items():
                variable = getattr(layer, attribute, None)
                if variable is None:  # scale=False or center=False
                    continue
                accepted = tuple(f"{layer.name}/{spelling}" for spelling in spellings)
                names[accepted[0]] = (variable, accepted)
    return names


def _detect_prefix(checkpoint_keys, accepted_names):
    """The scope that most checkpoint keys put in front of a known `layer/param` name."""
    counts = collections.Counter()
    for key in checkpoint_keys:
        parts = key.split("/")
        if len(parts) >= 2 and "/".join(parts[-2:]) in accepted_names:
            counts["/".join(parts[:-2] + [""]) if len(parts) > 2 else ""] += 1
    if not counts:
        return ""
    return min(counts, key=lambda prefix: (-counts[prefix], len(prefix)))


def load_tf1_checkpoint(backbone, checkpoint_path, prefix=None, strict=False):
    """Assigns a TF1 DeepLab checkpoint's variables to a backbone with Caffe layer names.

    Args:
        backbone: a built Keras model whose Conv2D / BatchNormalization layers have Caffe names
            (an `AtrousResNet`).
        checkpoint_path: a TF1 checkpoint prefix (`.../model.ckpt`, V1 or V2 format) or a folder
            with a `checkpoint` state file, as `tf.train.load_checkpoint` accepts.
        prefix: the scope in front of the backbone's variables in the checkpoint (`"resnet/"`),
            "" for none, or None to detect it.
        strict: if True, raise when any model variable is left unassigned.

    Returns:
        A `Tf1CheckpointReport`.

    Raises:
        ValueError: the checkpoint cannot be read, or `strict` and the load is incomplete.
    """
    checkpoint_path = os.fspath(checkpoint_path)
    try:
        reader = tf.train.load_checkpoint(checkpoint_path)
    except (tf.errors.OpError, ValueError) as error:
        raise ValueError(
            f"checkpoint_path {checkpoint_path!r} is not a readable TF checkpoint: {error}"
        ) from error
    shapes = reader.get_variable_to_shape_map()
    expected = tf1_variable_names(backbone)
    accepted_names = {name for _, accepted in expected.values() for name in accepted}
    if prefix is None:
        prefix = _detect_prefix(shapes, accepted_names)
    elif prefix and not prefix.endswith("/"):
        prefix += "/"

    report = Tf1CheckpointReport(checkpoint_path=checkpoint_path, prefix=prefix)
    placed = set()
    for canonical, (variable, accepted) in expected.items():
        key = next((prefix + name for name in accepted if prefix + name in shapes), None)
        if key is None:
            report.unassigned.append(canonical)
            continue
        placed.add(key)
        checkpoint_shape = tuple(shapes[key])
        model_shape = tuple(variable.shape)
        if checkpoint_shape != model_shape:
            report.shape_mismatches.append((key, checkpoint_shape, model_shape))
            report.unassigned.append(canonical)
            continue
        value = np.asarray(reader.get_tensor(key))
        variable.assign(value.astype(variable.dtype))
        report.loaded.append(key)
    report.unused = sorted(key for key in shapes if key not in placed)
    if strict and not report.complete:
        raise ValueError(f"incomplete load (strict=True): {report.summary()}")
    return report
