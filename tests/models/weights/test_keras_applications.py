"""The keras.applications ImageNet weight copy into a bottleneck AtrousResNet."""

import keras
import numpy as np
import pytest

from cmsa_tf.models.atrous_resnet import AtrousResNet
from cmsa_tf.models.resnet_blocks import caffe_block_names
from cmsa_tf.models.weights.keras_applications import (
    _block_index,
    copy_keras_applications_weights,
)


def _images(height, width, batch=1, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((batch, height, width, 3))).astype("float32")


def _numpy(features):
    return {name: np.asarray(value) for name, value in features.items()}


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_block_index_is_the_position_in_caffe_block_names(depth):
    for stage in (2, 3, 4, 5):
        blocks = caffe_block_names(depth, stage)
        assert [_block_index(block) for block in blocks] == list(range(1, len(blocks) + 1))


@pytest.fixture(scope="module")
def keras_resnet50():
    """keras.applications.ResNet50 with random weights, conv biases and BatchNorm statistics."""
    keras.utils.set_random_seed(7)
    model = keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(None, None, 3)
    )
    rng = np.random.default_rng(7)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))
        elif isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, shape).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.1, shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))
    return model


def test_copy_keras_applications_weights_reproduces_keras_features(keras_resnet50):
    backbone = AtrousResNet(depth=50, output_stride=32)
    assert backbone.feature_channels == {"res3": 512, "res4": 1024, "res5": 2048}
    mapping = copy_keras_applications_weights(backbone, keras_resnet50)
    assert mapping["res4f_branch2c"] == "conv4_block6_3_conv"
    assert mapping["bn_conv1"] == "conv1_bn"
    assert len(mapping) == 2 * 53
    taps = ("conv3_block4_out", "conv4_block6_out", "conv5_block3_out")
    reference = keras.Model(
        keras_resnet50.input, [keras_resnet50.get_layer(name).output for name in taps]
    )
    images = _images(67, 75, scale=50.0)  # odd sizes: padding alignment matters
    expected = [np.asarray(x) for x in reference(images)]
    actual = _numpy(backbone(images))
    for name, value in zip(("res3", "res4", "res5"), expected):
        assert actual[name].shape == value.shape
        np.testing.assert_allclose(actual[name], value, rtol=1e-4, atol=1e-4 * np.abs(value).max())


def test_copy_keras_applications_weights_rejects_other_architectures(keras_resnet50):
    with pytest.raises(ValueError, match="bottleneck AtrousResNet"):
        copy_keras_applications_weights(AtrousResNet(depth=18, width=4), keras_resnet50)
    with pytest.raises(ValueError, match="widths differ"):
        copy_keras_applications_weights(AtrousResNet(depth=50, width=8), keras_resnet50)
    with pytest.raises(ValueError, match="has no layer 'conv4_block7_1_conv'"):
        copy_keras_applications_weights(AtrousResNet(depth=101, width=4), keras_resnet50)
