"""The Trainer: one distributed step equals one single-device step; mixed precision."""

import textwrap

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.training import Trainer, create_strategy, train_loop
from tests.helpers import REPO, run_script

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    sys.path.insert(0, {repo!r})
    from tests.helpers import tiny_shapes_config
    from cmsa_tf.training import Trainer
    config = tiny_shapes_config({records!r})
    config.data.deterministic = True  # same example order for both runs
    config.model.backbone.freeze_batchnorm = True  # per-replica BN statistics would differ
    results = {{}}
    for name, devices in (("one", ["/cpu:0"]), ("two", ["/cpu:0", "/cpu:1"])):
        strategy = tf.distribute.MirroredStrategy(devices)
        tf.keras.utils.set_random_seed(0)  # same initial weights and example order
        assert strategy.num_replicas_in_sync == len(devices)
        trainer = Trainer(config, {workdir!r} + name, strategy)
        step = trainer.train_step_fn()
        iterator = iter(trainer.dataset())
        before = [v.numpy().copy() for v in trainer.model.trainable_variables]
        loss = float(step(iterator)[0])  # one step on the same global batch of 4
        after = [v.numpy() for v in trainer.model.trainable_variables]
        results[name] = (loss, [b - a for a, b in zip(before, after)], before)
    (l1, u1, w1), (l2, u2, w2) = results["one"], results["two"]
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    assert len(u1) == len(u2) > 10
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)  # same start
    moved = 0
    for a, b in zip(u1, u2):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)  # same update
        moved += int(np.abs(a).max() > 0)
    assert moved == len(u1)
    print("OK", l1, l2)
    """
)


@pytest.mark.slow
def test_mirrored_two_cpu_replicas_equal_one_device(tmp_path, tiny_shapes_tfrecords):
    script = MIRRORED_SCRIPT.format(
        repo=str(REPO),
        records=tiny_shapes_tfrecords,
        workdir=str(tmp_path / "run_"),
    )
    run_script(script, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_trains(tmp_path, tiny_shapes_tfrecords, tiny_config, precision):
    import keras

    config = tiny_config(tiny_shapes_tfrecords)
    config.train.steps = 2
    config.train.mixed_precision = precision
    try:
        trainer = Trainer(config, str(tmp_path / "run"), create_strategy("mirrored"))
        assert trainer.model.compute_dtype == precision
        assert all(v.dtype == "float32" for v in trainer.model.trainable_variables)
        before = [v.numpy().copy() for v in trainer.model.trainable_variables]
        result = train_loop(trainer, progress=False)
        assert result["step"] == 2 and np.isfinite(result["loss"])
        after = [v.numpy() for v in trainer.model.trainable_variables]
        assert sum(int(not np.array_equal(a, b)) for a, b in zip(before, after)) > len(before) // 2
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_checkpoint_without_optimiser_state_fine_tunes_with_a_fresh_optimiser(
    tmp_path, tiny_shapes_tfrecords
):
    """What `cmsa_tf.import_authors` writes: the model and the step, no optimiser."""
    import tensorflow as tf

    from cmsa_tf.data import manifest
    from cmsa_tf.models import build_model, restore
    from tests.helpers import tiny_shapes_config

    config = tiny_shapes_config(tiny_shapes_tfrecords)
    data = config.data
    model = build_model(
        config.model, manifest.vocab_size(data.tfrecord_dir), data.image_size, data.max_words
    )
    step = tf.Variable(700, dtype=tf.int64)
    workdir = str(tmp_path / "imported")
    tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model, step=step), restore.checkpoint_dir(workdir), None
    ).save(checkpoint_number=700)
    trainer = Trainer(config, workdir, create_strategy("one_device"))
    assert trainer.restore() == 700
    for mine, theirs in zip(trainer.model.weights, model.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    slots = [v for v in trainer.optimizer.variables if "momentum" in v.path or "velocity" in v.path]
    assert slots and all(not np.any(v.numpy()) for v in slots)  # fresh moments


def test_a_tokenizer_other_than_the_manifests_is_refused(
    tmp_path, tiny_shapes_tfrecords, tiny_config
):
    config = tiny_config(tiny_shapes_tfrecords)
    config.data.tokenizer = "authors"
    with pytest.raises(ValueError, match=r"config.data.tokenizer is 'authors'.*'default'"):
        Trainer(config, str(tmp_path / "run"), create_strategy("one_device"))


def _trained_weights(config, workdir, steps_per_call):
    import keras

    from cmsa_tf.training import create_strategy

    keras.utils.set_random_seed(0)
    trainer = Trainer(config, workdir, create_strategy("one_device"))
    iterator = iter(trainer.dataset())
    if steps_per_call == 1:
        step = trainer.train_step_fn()
        losses = [step(iterator) for _ in range(3)]
        loss = losses[-1][0]
    else:
        import tensorflow as tf

        loss, _, finite = trainer.train_steps_fn()(iterator, tf.constant(steps_per_call))
        assert bool(finite)
    assert trainer.step == 3
    return float(loss), [v.numpy() for v in trainer.model.trainable_variables]


def test_three_steps_in_one_call_equal_three_single_steps(tmp_path, tiny_shapes_tfrecords):
    from tests.helpers import tiny_shapes_config

    config = tiny_shapes_config(tiny_shapes_tfrecords)
    config.data.deterministic = True
    loss_1, weights_1 = _trained_weights(config, str(tmp_path / "single"), 1)
    loss_3, weights_3 = _trained_weights(config, str(tmp_path / "loop"), 3)
    np.testing.assert_allclose(loss_3, loss_1, rtol=1e-6)
    assert len(weights_1) > 10
    for a, b in zip(weights_1, weights_3):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_jit_compiled_step_equals_the_plain_step(tmp_path, tiny_shapes_tfrecords, caplog):
    import keras

    from tests.helpers import tiny_shapes_config

    results = []
    for jit in (False, True):
        config = tiny_shapes_config(tiny_shapes_tfrecords)
        config.data.deterministic = True
        config.train.jit_compile = jit
        keras.utils.set_random_seed(0)
        trainer = Trainer(config, str(tmp_path / f"jit{jit}"), create_strategy("one_device"))
        before = [v.numpy().copy() for v in trainer.model.trainable_variables]
        loss, penalty = trainer.train_step_fn()(iter(trainer.dataset()))
        after = [v.numpy() for v in trainer.model.trainable_variables]
        results.append((float(loss), float(penalty), before, after))
    (loss_e, pen_e, before_e, after_e), (loss_x, pen_x, before_x, after_x) = results
    np.testing.assert_allclose(loss_x, loss_e, rtol=1e-4)
    np.testing.assert_allclose(pen_x, pen_e, rtol=1e-5)
    moved = 0
    for b_e, a_e, b_x, a_x in zip(before_e, after_e, before_x, after_x):
        np.testing.assert_array_equal(b_x, b_e)
        step_x, step_e = a_x - b_x, a_e - b_e
        # XLA reorders float32 sums: Adam's first step is about lr * sign(g), so only elements
        # whose gradient is near Adam's epsilon may move differently, and within 1e-4.
        close = np.isclose(step_x, step_e, rtol=1e-2, atol=2e-5)
        assert close.mean() >= 0.999, (close.size - close.sum(), close.size)
        np.testing.assert_allclose(step_x, step_e, rtol=0, atol=1e-4)
        moved += int(np.abs(a_e - b_e).max() > 0)
    assert moved > len(before_e) // 2
    # Without an accelerator the XLA step is asked for with a warning (it is slower on CPUs).
    accelerated = any(tf.config.list_physical_devices(kind) for kind in ("GPU", "TPU"))
    assert ("jit_compile=True without a GPU or TPU" in caplog.text) != accelerated


def test_one_cpu_replica_trains_on_a_plain_iterator_with_the_same_step(
    tmp_path, tiny_shapes_tfrecords
):
    """`Trainer.dataset()` skips the distributed input for one CPU replica (`distributes_input`);
    fed the same batches, the step is the same as through the distributed iterator."""
    import keras

    from tests.helpers import tiny_shapes_config

    results = {}
    for distribute in (True, False):
        config = tiny_shapes_config(tiny_shapes_tfrecords)
        config.data.deterministic = True
        keras.utils.set_random_seed(0)
        trainer = Trainer(config, str(tmp_path / f"d{distribute}"), create_strategy("mirrored"))
        dataset = trainer.dataset(distribute=distribute)
        assert isinstance(dataset, tf.data.Dataset) != distribute
        before = [v.numpy().copy() for v in trainer.model.trainable_variables]
        step = trainer.train_step_fn()
        iterator = iter(dataset)
        losses = [float(step(iterator)[0]) for _ in range(2)]
        after = [v.numpy() for v in trainer.model.trainable_variables]
        results[distribute] = (losses, before, after)
    (loss_d, before_d, after_d), (loss_p, before_p, after_p) = results[True], results[False]
    np.testing.assert_allclose(loss_p, loss_d, rtol=1e-6)
    assert len(before_d) > 10
    for b_d, a_d, b_p, a_p in zip(before_d, after_d, before_p, after_p):
        np.testing.assert_array_equal(b_p, b_d)
        np.testing.assert_allclose(a_p, a_d, rtol=1e-5, atol=1e-7)
    # Without the argument the strategy decides: one replica on this CPU-only machine is plain.
    gpus = tf.config.list_logical_devices("GPU")
    plain = isinstance(trainer.dataset(), tf.data.Dataset)
    assert plain == (not gpus)


def test_image_groups_train_the_step_of_the_images_repeated(tmp_path, tiny_shapes_tfrecords):
    """`data.expressions_per_image=2`: batches of 2 images x 2 expressions, the backbone run once
    per image; with BatchNorm frozen the step equals the step on each expression's image
    repeated (the ungrouped model input)."""
    import keras

    from tests.helpers import tiny_shapes_config

    config = tiny_shapes_config(tiny_shapes_tfrecords)
    config.data.deterministic = True
    config.data.expressions_per_image = 2
    config.model.backbone.freeze_batchnorm = True  # BN statistics over 2 or 4 images differ
    config.model.backbone.trainable_stages = ("res4", "res5")
    trainer = Trainer(config, str(tmp_path / "data"), create_strategy("one_device"))
    batch = next(iter(trainer.dataset()))
    assert batch["image"].shape[0] == 2 and batch["words"].shape[0] == 4
    np.testing.assert_array_equal(batch["image_index"], [0, 0, 1, 1])
    repeated = {k: v for k, v in batch.items() if k != "image_index"}
    repeated["image"] = tf.gather(batch["image"], batch["image_index"])
    results = []
    for name, inputs in (("grouped", batch), ("repeated", repeated)):
        keras.utils.set_random_seed(0)
        trainer = Trainer(config, str(tmp_path / name), create_strategy("one_device"))
        before = [v.numpy().copy() for v in trainer.model.trainable_variables]
        loss = float(trainer.train_step_fn()(iter(tf.data.Dataset.from_tensors(inputs)))[0])
        after = [v.numpy() for v in trainer.model.trainable_variables]
        results.append((loss, before, after))
    (loss_g, before_g, after_g), (loss_r, before_r, after_r) = results
    np.testing.assert_allclose(loss_g, loss_r, rtol=1e-5)
    paths = [v.path for v in trainer.model.trainable_variables]
    compared = 0
    for path, b_g, a_g, b_r, a_r in zip(paths, before_g, after_g, before_r, after_r):
        np.testing.assert_array_equal(b_g, b_r)
        if path.endswith("key_bias"):
            # The softmax is invariant to the key bias: its gradient is rounding noise, and
            # Adam's first step (about lr * sign(g)) follows the noise's sign.
            continue
        np.testing.assert_allclose(a_g - b_g, a_r - b_r, rtol=1e-3, atol=1e-6, err_msg=path)
        assert np.abs(a_g - b_g).max() > 0, path
        compared += 1
    backbone = {id(v) for v in trainer.model.backbone.trainable_variables}
    assert compared > 10 and sum(id(v) in backbone for v in trainer.model.trainable_variables) > 4
