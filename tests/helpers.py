"""Shared test helpers: the repository paths, config loading and the tiny ShapesRef config."""

import importlib.util
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"


# configs/shapes.py scaled down to a few seconds of CPU (the keys work as --config.KEY=VALUE flags).
TINY_OVERRIDES = {
    "data.image_size": 32,
    "data.max_words": 6,
    "data.shuffle_buffer": 8,
    "model.embedding_dim": 8,
    "model.backbone.width": 4,
    "model.attention.key_dims": (4, 4, 4),
    "model.fusion_channels": 8,
    "train.batch_size": 4,
    "data.expressions_per_image": 1,  # tests split the batch of 4 over replicas and steps
    "train.steps": 4,
    "train.checkpoint_every": 2,
    "train.log_every": 1,
    "train.eval_every": 0,
    "eval.batch_size": 4,
}


# The smallest CMSASegmenter the export, predict and demo tests build (and export).
TINY_SEGMENTER = dict(
    embedding_dim=8, backbone_depth=18, backbone_width=4, key_dims=(4, 4, 4), fusion_channels=8
)


def tiny_segmenter(vocab_size, **kwargs):
    """A `CMSASegmenter` of `TINY_SEGMENTER`'s size; `kwargs` (e.g. `name`) go to it."""
    from cmsa_tf.models.cmsa_segmenter import CMSASegmenter

    return CMSASegmenter(vocab_size=vocab_size, **TINY_SEGMENTER, **kwargs)


def centre_logits(model, inputs):
    """Shifts the score bias so that the model's logits on `inputs` have median 0: a random head
    could give an empty or a full mask, which would not test much."""
    import numpy as np

    logits = np.asarray(model(inputs))
    model.score.bias.assign(model.score.bias.numpy() - np.median(logits))


def load_config(name, arg=None):
    """`get_config(arg)` of configs/NAME.py, loaded by path as `--config` loads it."""
    path = CONFIG_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def tiny_shapes_config(tfrecord_dir, arg=None):
    config = load_config("shapes", arg)
    config.data.tfrecord_dir = tfrecord_dir
    config.update_from_flattened_dict(TINY_OVERRIDES)
    if config.model.attention.form == "official":
        config.model.attention.reduce_dims = (None, 8, 8)
        config.model.res5_projection_dim = 8
    return config


def tiny_flags(tfrecord_dir):
    """The same tiny config as command-line overrides of configs/shapes.py."""
    flags = [f"--config={CONFIG_DIR}/shapes.py", f"--config.data.tfrecord_dir={tfrecord_dir}"]
    for key, value in TINY_OVERRIDES.items():
        flags.append(f"--config.{key}={value}".replace(" ", ""))
    return flags


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def _shapes(structure):
    """Shapes of a structure of tensors, or a structure of shapes, as comparable nested values."""
    if isinstance(structure, dict):
        return {key: _shapes(value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        if all(isinstance(x, int) or x is None for x in structure):
            return tuple(structure)  # one shape
        return [_shapes(x) for x in structure]
    return tuple(structure.shape)


def _float_leaves(structure):
    import keras
    import tensorflow as tf

    leaves = keras.tree.flatten(structure)
    return [x for x in leaves if tf.as_dtype(x.dtype).is_floating]


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    call_kwargs=None,
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=0,
    run_training_check=True,
    run_symbolic_check=True,
):
    """The checks every layer passes, as keras-hub's `TestCase.run_layer_test`.

    1. `layer_cls(**init_kwargs)` called on `input_data` (one array, or a tuple of positional
       arrays) gives outputs of `expected_output_shape` (a shape, or a matching structure of
       shapes), with the expected weight counts; called on symbolic inputs (`keras.KerasTensor`,
       through `compute_output_spec` / `compute_output_shape`) it gives the same shapes.
    2. `get_config` / `from_config` round trip: the same config, and on the same weights the
       same output.
    3. Keras serialisation round trip (`serialize_keras_object` / `deserialize_keras_object`):
       the same class and config, and on the same weights the same output.
    4. One gradient step on the sum of squares of the float outputs changes every trainable
       weight that gets a non-zero gradient, and at least one (for a layer with weights).

    Returns the layer.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    call_kwargs = dict(call_kwargs or {})
    inputs = _as_tuple(input_data)

    def run(layer):
        return layer(*inputs, **call_kwargs)

    def assert_same(a, b):
        for x, y in zip(keras.tree.flatten(a), keras.tree.flatten(b), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)

    # 1. Shapes and weights.
    layer = layer_cls(**init_kwargs)
    outputs = run(layer)
    expected = _shapes(expected_output_shape)
    assert _shapes(outputs) == expected
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    if run_symbolic_check:
        symbolic = layer_cls(**init_kwargs)
        symbolic_inputs = keras.tree.map_structure(
            lambda x: keras.KerasTensor(np.shape(x), dtype=tf.convert_to_tensor(x).dtype.name),
            list(inputs),
        )
        assert _shapes(symbolic(*symbolic_inputs, **call_kwargs)) == expected

    # 2. Config round trip.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    run(clone)
    clone.set_weights(layer.get_weights())
    assert_same(run(clone), outputs)

    # 3. Keras serialisation round trip.
    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is layer_cls and restored.get_config() == config
    run(restored)
    restored.set_weights(layer.get_weights())
    assert_same(run(restored), outputs)

    # 4. One gradient step.
    if run_training_check:
        variables = layer.trainable_variables
        if not variables:
            return layer
        before = [v.numpy().copy() for v in variables]
        with tf.GradientTape() as tape:
            loss = tf.add_n(
                [tf.reduce_sum(tf.square(tf.cast(x, "float32"))) for x in _float_leaves(run(layer))]
            )
        grads = tape.gradient(loss, variables)
        keras.optimizers.SGD(0.1).apply(
            [tf.zeros_like(v) if g is None else g for v, g in zip(variables, grads)], variables
        )
        changed = [np.any(v.numpy() != b) for v, b in zip(variables, before)]
        moved = [g is not None and np.any(np.asarray(g)) for g in grads]
        assert any(changed), "no trainable weight changed"
        for variable, has_gradient, did_change in zip(variables, moved, changed):
            assert did_change or not has_gradient, variable.path
    return layer


def load_benchmark(name: str):
    """The module `benchmarks/<name>.py` (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(script: str, timeout: int = 300) -> str:
    """Runs a Python script in a fresh process from the repository root (for what needs a TF
    runtime of its own, e.g. logical CPU devices); asserts it exits 0 and prints "OK", returns
    its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout, result.stdout
    return result.stdout


def run_tiny_trainer_benchmark(name: str, tfrecord_dir, *args: str) -> subprocess.CompletedProcess:
    """Runs `benchmarks/<name>.py` (a Trainer benchmark taking `--set`) with `args` on the tiny
    ShapesRef config (`TINY_OVERRIDES` over `tfrecord_dir`): 1 process each, 2 rounds of 2 steps
    after 1 warm-up step. Asserts it exits 0; returns the completed process."""
    command = [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args]
    command += ["--repeats", "1", "--rounds", "2", "--steps_per_round", "2", "--warmup", "1"]
    for key, value in dict(TINY_OVERRIDES, **{"data.tfrecord_dir": tfrecord_dir}).items():
        command += ["--set", f"{key}={value!r}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
