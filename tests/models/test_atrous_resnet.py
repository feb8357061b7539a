"""Tests for the atrous ResNet backbone."""

import inspect
import json

import keras
import numpy as np
import pytest

from cmsa_tf.models.atrous_resnet import AtrousResNet

STAGES = ("conv1", "res2", "res3", "res4", "res5")


def _images(height, width, batch=1, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((batch, height, width, 3))).astype("float32")


def _numpy(features):
    return {name: np.asarray(value) for name, value in features.items()}


def _ceil(size, stride):
    return -(-size // stride)


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_shapes_and_channels(depth, output_stride):
    backbone = AtrousResNet(depth=depth, output_stride=output_stride, width=8)
    features = backbone(_images(64, 48))
    expansion = 4 if depth >= 50 else 1
    channels = {"res3": 16 * expansion, "res4": 32 * expansion, "res5": 64 * expansion}
    strides = {"res3": 8, "res4": min(output_stride, 16), "res5": output_stride}
    assert set(features) == {"res3", "res4", "res5"}
    assert backbone.feature_channels == channels
    assert backbone.feature_strides == strides
    for name, value in features.items():
        stride = strides[name]
        assert tuple(value.shape) == (1, 64 // stride, _ceil(48, stride), channels[name])


def test_feature_sizes_of_a_64px_image_at_output_strides_8_and_16():
    os8 = AtrousResNet(depth=50, output_stride=8, width=8)(_images(64, 64))
    assert {k: tuple(v.shape[1:3]) for k, v in os8.items()} == {
        "res3": (8, 8),
        "res4": (8, 8),
        "res5": (8, 8),
    }
    os16 = AtrousResNet(depth=50, output_stride=16, width=8)(_images(64, 64))
    assert {k: tuple(v.shape[1:3]) for k, v in os16.items()} == {
        "res3": (8, 8),
        "res4": (4, 4),
        "res5": (4, 4),
    }


@pytest.mark.parametrize("padding", ["symmetric", "same"])
def test_sizes_are_ceil_of_stride_for_odd_inputs(padding):
    backbone = AtrousResNet(depth=18, output_stride=32, width=4, padding=padding)
    features = backbone(_images(37, 50))
    for name, stride in (("res3", 8), ("res4", 16), ("res5", 32)):
        assert tuple(features[name].shape[1:3]) == (_ceil(37, stride), _ceil(50, stride))
    stem = keras.Model(backbone.input, backbone.get_layer("pool1").output)
    assert tuple(stem(_images(37, 50)).shape[1:3]) == (_ceil(37, 4), _ceil(50, 4))


def test_full_width_channels():
    backbone = AtrousResNet(depth=18, output_stride=32)
    assert backbone.feature_channels == {"res3": 128, "res4": 256, "res5": 512}
    assert backbone.get_layer("conv1").kernel.shape == (7, 7, 3, 64)


def test_deeplab_layer_names_strides_and_dilations():
    backbone = AtrousResNet(depth=101, output_stride=8, width=4)
    assert backbone.feature_layer_names == {
        "res3": "res3b3_relu",
        "res4": "res4b22_relu",
        "res5": "res5c_relu",
    }
    names = {layer.name for layer in backbone.layers}
    for name in (
        "conv1",
        "bn_conv1",
        "pool1",
        "res2a_branch1",
        "bn2a_branch1",
        "res2a_branch2a",
        "bn2a_branch2a",
        "res3b1_branch2b",
        "bn4b22_branch2c",
        "res5c_relu",
    ):
        assert name in names
    layer = backbone.get_layer
    assert layer("conv1").use_bias is False
    assert layer("res3a_branch1").strides == (2, 2)
    assert layer("res3a_branch2a").strides == (2, 2)
    assert layer("res3a_branch2b").strides == (1, 1)
    assert layer("res4a_branch1").strides == (1, 1)
    assert layer("res4a_branch2a").strides == (1, 1)
    assert layer("res4a_branch2b").dilation_rate == (2, 2)
    assert layer("res4b22_branch2b").dilation_rate == (2, 2)
    assert layer("res5a_branch2b").dilation_rate == (4, 4)
    assert layer("res5c_branch2b").dilation_rate == (4, 4)
    assert layer("res3b3_branch2b").dilation_rate == (1, 1)


@pytest.mark.parametrize("depth", [18, 50])
def test_atrous_features_are_the_strided_features_evaluated_densely(depth):
    # Replacing a stride by dilation computes the strided network at every position, so with
    # the same weights the OS8 maps subsampled equal the OS16 / OS32 maps.
    models = {s: AtrousResNet(depth=depth, output_stride=s, width=4) for s in (8, 16, 32)}
    for s in (16, 32):
        models[s].set_weights(models[8].get_weights())
    images = _images(37, 50, batch=2)
    out = {s: _numpy(model(images)) for s, model in models.items()}
    tol = {"rtol": 1e-4, "atol": 1e-4}
    np.testing.assert_allclose(out[8]["res3"], out[32]["res3"], **tol)
    np.testing.assert_allclose(out[8]["res4"][:, ::2, ::2], out[16]["res4"], **tol)
    np.testing.assert_allclose(out[16]["res4"], out[32]["res4"], **tol)
    np.testing.assert_allclose(out[8]["res5"][:, ::4, ::4], out[32]["res5"], **tol)
    np.testing.assert_allclose(out[8]["res5"][:, ::2, ::2], out[16]["res5"], **tol)
    np.testing.assert_allclose(out[16]["res5"][:, ::2, ::2], out[32]["res5"], **tol)
    assert np.abs(out[8]["res5"]).max() > 0


def _weight_paths(variables):
    return {variable.path for variable in variables}


def test_trainable_weights_follow_trainable_stages():
    backbone = AtrousResNet(depth=50, width=4)  # res3-res5 trainable, BatchNorm frozen
    expected = {
        f"{layer.name}/kernel"
        for layer in backbone.layers
        if isinstance(layer, keras.layers.Conv2D)
        and layer.name.startswith(("res3", "res4", "res5"))
    }
    assert len(expected) == 13 + 19 + 10
    assert _weight_paths(backbone.trainable_weights) == expected

    unfrozen = AtrousResNet(depth=18, width=4, freeze_batchnorm=False, trainable_stages=("conv1",))
    assert _weight_paths(unfrozen.trainable_weights) == {
        "conv1/kernel",
        "bn_conv1/gamma",
        "bn_conv1/beta",
    }
    assert AtrousResNet(depth=18, width=4, trainable_stages=()).trainable_weights == []

    # Freezing and unfreezing the model keeps the stage selection and the frozen BatchNorm.
    backbone.trainable = False
    assert backbone.trainable_weights == []
    backbone.trainable = True
    assert _weight_paths(backbone.trainable_weights) == expected
    outer_input = keras.Input((None, None, 3))
    outer = keras.Model(outer_input, backbone(outer_input)["res5"])
    outer.trainable = False
    outer.trainable = True
    assert _weight_paths(outer.trainable_weights) == expected


def _moving_stats(model):
    return {
        variable.path: variable.numpy()
        for variable in model.non_trainable_weights
        if "moving" in variable.path
    }


def test_frozen_batchnorm_ignores_training_flag():
    backbone = AtrousResNet(depth=18, width=4, trainable_stages=STAGES)
    images = _images(32, 32, batch=2, scale=10.0)
    before = _moving_stats(backbone)
    training = _numpy(backbone(images, training=True))
    inference = _numpy(backbone(images, training=False))
    after = _moving_stats(backbone)
    assert before.keys() == after.keys() and len(before) == 2 * 20
    for path in before:
        np.testing.assert_array_equal(before[path], after[path])
    for name in training:
        np.testing.assert_array_equal(training[name], inference[name])


def test_unfrozen_batchnorm_updates_only_trainable_stages():
    backbone = AtrousResNet(depth=18, width=4, freeze_batchnorm=False, trainable_stages=("res5",))
    before = _moving_stats(backbone)
    backbone(_images(32, 32, batch=2, scale=10.0), training=True)
    after = _moving_stats(backbone)
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    assert changed and all(path.startswith("bn5") for path in changed)
    assert {path.split("/")[0] for path in changed} == {
        layer.name
        for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name.startswith("bn5")
    }


def test_get_config_round_trip():
    backbone = AtrousResNet(
        depth=34,
        output_stride=16,
        width=4,
        freeze_batchnorm=False,
        trainable_stages=("res4", "res5"),
        padding="same",
        batchnorm_epsilon=1e-3,
        name="bb",
    )
    config = backbone.get_config()
    json.dumps(config)
    constructor_args = set(inspect.signature(AtrousResNet.__init__).parameters) - {"self", "kwargs"}
    assert constructor_args | {"name", "trainable"} == set(config)
    assert config["weights"] is None and config["padding"] == "same"
    clone = AtrousResNet.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(backbone.get_weights())
    images = _images(40, 24)
    expected, actual = _numpy(backbone(images)), _numpy(clone(images))
    for name in expected:
        np.testing.assert_array_equal(expected[name], actual[name])
    assert _weight_paths(clone.trainable_weights) == _weight_paths(backbone.trainable_weights)


def test_defaults_resolve_padding_and_epsilon():
    config = AtrousResNet(depth=18, width=4).get_config()
    assert config["padding"] == "symmetric"
    assert config["batchnorm_epsilon"] == pytest.approx(1.001e-5)
    assert config["trainable_stages"] == ["res3", "res4", "res5"]


def test_keras_file_round_trip(tmp_path):
    backbone = AtrousResNet(depth=18, output_stride=8, width=4, trainable_stages=("res5",))
    # Non-trivial BatchNorm statistics so that a lost variable would show.
    rng = np.random.default_rng(3)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape).astype("float32"))
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, AtrousResNet)
    assert restored.get_config() == backbone.get_config()
    images = _images(32, 40, batch=2)
    expected, actual = _numpy(backbone(images)), _numpy(restored(images))
    for name in expected:
        np.testing.assert_array_equal(expected[name], actual[name])
    assert _weight_paths(restored.trainable_weights) == _weight_paths(backbone.trainable_weights)


def test_dtype_policy():
    backbone = AtrousResNet(depth=18, output_stride=32, width=4, dtype="mixed_float16")
    features = backbone(_images(32, 32))
    assert keras.backend.standardize_dtype(features["res5"].dtype) == "float16"
    assert backbone.get_layer("conv1").kernel.dtype == "float32"
    assert AtrousResNet.from_config(backbone.get_config()).get_config() == backbone.get_config()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"depth": 42}, "depth must be one of"),
        ({"output_stride": 4}, "output_stride must be one of"),
        ({"trainable_stages": ("res3", "res6")}, r"unknown stage names \['res6'\]"),
        ({"trainable_stages": "res3"}, "sequence of stage names"),
        ({"trainable_stages": None}, "sequence of stage names"),
        ({"width": 0}, "width must be a positive integer"),
        ({"padding": "valid"}, "padding must be one of"),
        ({"batchnorm_epsilon": 0.0}, "batchnorm_epsilon must be positive"),
        ({"batchnorm_epsilon": "1e-3"}, "batchnorm_epsilon must be positive"),
        ({"weights": 3}, "weights must be None, 'imagenet'"),
        ({"weights": "imagenet", "depth": 34}, "keras.applications has no ResNet-34"),
        ({"weights": "imagenet", "depth": 50, "width": 8}, "needs width=64"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AtrousResNet(**{"width": 4, **kwargs})
