"""Tests of cmsa_tf/optimization.py: variable selection by role on real tiny models, the learning
rate schedule, the bias factors and the L2 term."""

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf import optimization
from cmsa_tf.models.factory import build_model
from tests.helpers import tiny_shapes_config

BACKBONE_KERNELS = [
    f"res{block}_branch{branch}/kernel"
    for block in ("4a", "4b", "5a", "5b")
    for branch in (("2a", "1", "2b") if block.endswith("a") else ("2a", "2b"))
]


def _head_kernels(levels_with_reduce=(), projection=False, sentence=False):
    paths = ["cmsa/res5_projection/kernel"] if projection else []
    for level in ("res5", "res4", "res3"):
        names = ["reduce"] if level in levels_with_reduce else []
        names += ["query", "key", "value", "output"]
        paths += [f"cmsa/{level}_attention/{name}_kernel" for name in names]
        paths.append(f"cmsa/{level}_fusion_projection/kernel")
    paths += [f"cmsa/gated_fusion/gate_conv_{i}/kernel" for i in (1, 2, 3)]
    paths.append("cmsa/score/kernel")
    return paths


def _model(arg="paper", **overrides):
    config = tiny_shapes_config("unused", arg)
    config.model.backbone.depth = 18
    config.model.backbone.trainable_stages = ("res4", "res5")
    config.model.update_from_flattened_dict(overrides)
    model_config = config.model.copy_and_resolve_references()
    return build_model(model_config, vocab_size=11, image_size=32, max_words=6)


def _selected(model, predicate):
    return sorted(v.path for v in model.trainable_variables if predicate(v))


@pytest.fixture(scope="module")
def models():
    return {
        "paper": _model("paper"),
        "official": _model("official"),
        "sentence": _model("paper", word_representation="sentence"),
    }


def test_default_recipe_decays_every_kernel_including_the_attention(models):
    paper = _selected(models["paper"], optimization.is_decayed)
    assert paper == sorted(BACKBONE_KERNELS + _head_kernels())
    official = _selected(models["official"], optimization.is_decayed)
    assert official == sorted(BACKBONE_KERNELS + _head_kernels(("res4", "res3"), projection=True))
    sentence = _selected(models["sentence"], optimization.is_decayed)
    lstm = [p for p in sentence if p not in paper]
    assert lstm and all(p.endswith(("/kernel", "/recurrent_kernel")) for p in lstm)


def test_authors_recipe_decays_projection_score_and_trained_backbone(models):
    def decayed(v):
        return optimization.is_decayed(v, "authors")

    assert _selected(models["official"], decayed) == sorted(
        BACKBONE_KERNELS + ["cmsa/res5_projection/kernel", "cmsa/score/kernel"]
    )
    assert _selected(models["paper"], decayed) == sorted(BACKBONE_KERNELS + ["cmsa/score/kernel"])
    assert _selected(models["sentence"], decayed) == _selected(models["paper"], decayed)


def test_bias_selection_by_recipe(models):
    official = models["official"]
    biases = _selected(official, optimization.is_bias)
    assert "cmsa/res5_attention/query_bias" in biases and "cmsa/score/bias" in biases
    assert all(p.endswith("bias") for p in biases)
    assert len(biases) == len(_head_kernels(("res4", "res3"), projection=True))

    def factor(v):
        return optimization.has_bias_gradient_factor(v, "authors")

    assert _selected(official, factor) == ["cmsa/res5_projection/bias", "cmsa/score/bias"]
    assert _selected(models["paper"], factor) == ["cmsa/score/bias"]
    assert not _selected(official, lambda v: optimization.has_bias_gradient_factor(v, "default"))


def test_every_variable_has_a_known_role(models):
    roles = {}
    for model in models.values():
        for v in model.trainable_variables:
            roles.setdefault(optimization.variable_role(v), set()).add(v.path.split("/")[-1])
    assert roles["embedding"] == {"embeddings"}
    assert roles["normalization"] == {"gamma", "beta"}
    assert roles["scale"] == {"gamma_1", "gamma_2", "gamma_3"}


def _train_config(**overrides):
    config = ml_collections.ConfigDict(
        dict(
            optimizer="adam",
            learning_rate=1.0,
            end_learning_rate=0.1,
            decay_power=0.9,
            steps=10,
            bias_lr_multiplier=2.0,
            recipe="default",
            adam_epsilon=ml_collections.config_dict.placeholder(float),
        )
    )
    config.update(overrides)
    return config


def test_learning_rate_schedule_values():
    schedule = optimization.learning_rate_schedule(_train_config())
    for step in (0, 3, 10, 20):
        t = min(step, 10) / 10
        assert float(schedule(step)) == pytest.approx(0.9 * (1 - t) ** 0.9 + 0.1, rel=1e-6)


def test_warmup_ramps_linearly_then_follows_the_decay():
    config = _train_config(warmup_steps=4)
    warm = optimization.learning_rate_schedule(config)
    cold = optimization.learning_rate_schedule(_train_config())
    for step in range(4):
        assert float(warm(step)) == pytest.approx(1.0 * (step + 1) / 4, rel=1e-6)
    for step in (4, 7, 10, 20):
        assert float(warm(step)) == pytest.approx(float(cold(step)), rel=1e-6)


def test_warmup_schedule_round_trips_and_rejects_negative_steps():
    schedule = optimization.WarmupPolynomialDecay(1e-3, decay_steps=50, warmup_steps=5)
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert restored.get_config() == schedule.get_config()
    for step in (0, 4, 5, 30, 60):
        assert float(restored(step)) == pytest.approx(float(schedule(step)), rel=1e-7)
    with pytest.raises(ValueError, match="warmup_steps"):
        optimization.WarmupPolynomialDecay(1e-3, decay_steps=50, warmup_steps=-1)


def _one_adam_step(train_config, gradient_scale=1.0):
    optimizer = optimization.create_optimizer(train_config)
    kernel = keras.Variable(np.ones(3, np.float32), name="kernel")
    bias = keras.Variable(np.ones(3, np.float32), name="bias")
    score = keras.layers.Dense(1, name="score")
    score.build((None, 3))
    variables = [kernel, bias, score.bias]
    grads = [tf.fill([3], 0.5 * gradient_scale), tf.fill([3], 0.5 * gradient_scale)]
    grads.append(tf.fill([1], 0.5 * gradient_scale))
    grads = optimization.scale_gradients(grads, variables, train_config)
    before = [v.numpy().copy() for v in variables]
    optimizer.apply(grads, variables)
    return optimizer, [b - v.numpy() for b, v in zip(before, variables, strict=True)]


def test_default_bias_learning_rate_multiplier_doubles_the_step():
    optimizer, (kernel_step, bias_step, score_step) = _one_adam_step(_train_config())
    assert float(optimizer.epsilon) == pytest.approx(1e-7)
    # Adam's first step is lr * g / (|g| + eps): the learning rate itself, doubled for biases.
    np.testing.assert_allclose(kernel_step, 1.0, rtol=1e-4)
    np.testing.assert_allclose(bias_step, 2.0, rtol=1e-4)
    np.testing.assert_allclose(score_step, 2.0, rtol=1e-4)


def test_authors_bias_gradient_factor_leaves_adam_unchanged_up_to_epsilon():
    config = _train_config(recipe="authors")
    optimizer, (kernel_step, bias_step, score_step) = _one_adam_step(config)
    assert float(optimizer.epsilon) == pytest.approx(1e-8)
    np.testing.assert_allclose([kernel_step, bias_step], 1.0, rtol=1e-4)
    np.testing.assert_allclose(score_step, 1.0, rtol=1e-4)
    # With a large epsilon the x2 gradient shows: the score bias (gradient x2) moves further than
    # a bias outside the two layers; step = g' / (|g'| + eps) with g' = 2g against g.
    config = _train_config(recipe="authors", adam_epsilon=1.0)
    _, (_, plain_step, doubled_step) = _one_adam_step(config, gradient_scale=1e-3)
    assert doubled_step[0] > 1.9 * plain_step[0] > 0


def test_l2_penalty_is_tf1_l2_loss_over_the_recipe(models):
    model = models["official"]
    penalty = optimization.l2_penalty(model.trainable_variables, 5e-4, "authors")
    want = sum(
        float(np.sum(np.square(v.numpy()))) / 2
        for v in model.trainable_variables
        if v.path in BACKBONE_KERNELS + ["cmsa/res5_projection/kernel", "cmsa/score/kernel"]
    )
    assert float(penalty) == pytest.approx(5e-4 * want, rel=1e-5)
    assert float(optimization.l2_penalty(model.trainable_variables, 0.0)) == 0.0


def test_unknown_recipe_is_refused():
    with pytest.raises(ValueError, match="config.train.recipe must be one of"):
        optimization.create_optimizer(_train_config(recipe="paper"))


# A kernel, a bias and an embedding table: their start values and gradients (the table's
# gradient is `tf.IndexedSlices` over rows 1 and 3, as a gather's is).
_SHAPES = ((3, 4), (4,), (5, 2))
_GRADIENT_SHAPES = ((3, 4), (4,), (2, 2))


def _start_values():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype("float32") for shape in _SHAPES]


def _gradients(seed, steps):
    rng = np.random.default_rng(seed)
    return [
        tuple(rng.standard_normal(shape).astype("float32") for shape in _GRADIENT_SHAPES)
        for _ in range(steps)
    ]


def _adam_steps(make_optimizer, gradients, strategy):
    """The steps of `make_optimizer()`, in a `tf.function` under `strategy`, from
    `_start_values()`; returns the variables' values."""
    with strategy.scope():
        variables = [
            keras.Variable(value, name=name)
            for value, name in zip(_start_values(), ("kernel", "bias", "embeddings"), strict=True)
        ]
        optimizer = make_optimizer()
        optimizer.build(variables)

    def replica_step(kernel, bias, rows):
        embedding = tf.IndexedSlices(rows, tf.constant([1, 3]), tf.constant(_SHAPES[2]))
        optimizer.apply([tf.identity(kernel), tf.identity(bias), embedding], variables)

    @tf.function
    def step(kernel, bias, rows):
        strategy.run(replica_step, args=(kernel, bias, rows))

    for kernel, bias, rows in gradients:
        step(kernel, bias, rows)
    return [v.numpy() for v in variables]


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_fused_update_is_keras_adam(strategy):
    """`Adam`'s fused update (`ResourceApplyAdam`) follows `keras.optimizers.Adam` over five
    steps of a decaying rate, the sparse embedding gradient included; its bias factor doubles the
    biases' rate only."""
    gradients = _gradients(seed=1, steps=5)
    strategies = {
        "default": tf.distribute.get_strategy,
        "mirrored": lambda: tf.distribute.MirroredStrategy(["/cpu:0"]),
    }

    def run(cls, **kwargs):
        schedule = keras.optimizers.schedules.PolynomialDecay(1e-2, 5, 1e-3, power=0.9)
        make = lambda: cls(learning_rate=schedule, **kwargs)  # noqa: E731
        return _adam_steps(make, gradients, strategies[strategy]())

    reference = run(keras.optimizers.Adam)
    fused = run(optimization.Adam)
    for want, got in zip(reference, fused, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    start = _start_values()
    assert not np.array_equal(fused[2][[1, 3]], start[2][[1, 3]])
    np.testing.assert_array_equal(fused[2][[0, 2, 4]], start[2][[0, 2, 4]])  # no gradient
    # The bias factor: the kernel and the embedding as without it, the bias at twice the rate
    # (Adam's first steps are about lr * sign(g), so the bias moves about twice as far).
    doubled = run(optimization.Adam, bias_lr_multiplier=2.0)
    np.testing.assert_allclose(doubled[0], fused[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(doubled[2], fused[2], rtol=1e-6, atol=1e-7)
    ratio = np.abs(doubled[1] - start[1]) / np.abs(fused[1] - start[1])
    np.testing.assert_allclose(ratio, 2.0, rtol=0.05)


def test_amsgrad_takes_keras_update():
    gradients = _gradients(seed=2, steps=3)
    strategy = tf.distribute.get_strategy()
    reference = _adam_steps(lambda: keras.optimizers.Adam(1e-2, amsgrad=True), gradients, strategy)
    ours = _adam_steps(
        lambda: optimization.Adam(learning_rate=1e-2, amsgrad=True), gradients, strategy
    )
    for want, got in zip(reference, ours, strict=True):
        np.testing.assert_array_equal(got, want)
