"""Tests for loading TF1 DeepLab checkpoints (DrSleep's variable names) into AtrousResNet."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.models.atrous_resnet import AtrousResNet
from cmsa_tf.models.weights.tf1_deeplab import load_tf1_checkpoint, tf1_variable_names

OMITTED = "res4b7_branch2b/weights"
MISSHAPEN = "bn5c_branch2c/gamma"
SLIM_TO_CAFFE_TENSORFLOW = {
    "gamma": "scale",
    "beta": "offset",
    "moving_mean": "mean",
    "moving_variance": "variance",
}


def _write_tf1_checkpoint(directory, tensors, version="V2"):
    """Writes `{name: array}` with a TF1 `Saver` in graph mode, as DrSleep's npy2ckpt.py does."""
    directory.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        variables = {
            name: tf.compat.v1.Variable(value, name=name) for name, value in tensors.items()
        }
        saver = tf.compat.v1.train.Saver(
            var_list=variables, write_version=getattr(tf.compat.v1.train.SaverDef, version)
        )
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(session, str(directory / "model.ckpt"), write_meta_graph=False)


def _deeplab_tensors(backbone, seed=0, spelling="slim"):
    """Random values for every backbone variable, keyed by DrSleep's TF1 names."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, (variable, _) in tf1_variable_names(backbone).items():
        value = rng.normal(size=variable.shape).astype("float32")
        if name.endswith("moving_variance"):
            value = np.abs(value) + 0.5
        if spelling == "caffe-tensorflow":
            layer, param = name.split("/")
            name = f"{layer}/{SLIM_TO_CAFFE_TENSORFLOW.get(param, param)}"
        tensors[name] = value
    return tensors


@pytest.fixture(scope="module")
def resnet101():
    return AtrousResNet(depth=101, output_stride=8, width=8)


@pytest.mark.parametrize("prefix", ["", "model/backbone/"])
def test_load_reports_loaded_unused_unassigned_and_mismatches(resnet101, tmp_path, prefix):
    backbone = resnet101
    tensors = _deeplab_tensors(backbone, seed=len(prefix))
    assert len(tensors) == 104 + 4 * 104  # ResNet-101: 104 convs, each followed by BatchNorm
    assert {
        "conv1/weights",
        "bn_conv1/gamma",
        "res3b3_branch2c/weights",
        "bn4b22_branch2a/moving_variance",
        "res5c_branch2c/weights",
    } <= tensors.keys()
    omitted_before = backbone.get_layer("res4b7_branch2b").kernel.numpy()
    misshapen_before = backbone.get_layer("bn5c_branch2c").gamma.numpy()
    del tensors[OMITTED]
    tensors[MISSHAPEN] = np.ones(3, "float32")
    checkpoint = {prefix + name: value for name, value in tensors.items()}
    # The CMSA head and an optimiser slot live next to the backbone in the authors' checkpoint.
    checkpoint["text_objseg/mlp_c5/DW"] = np.zeros((1, 1, 256, 10), "float32")
    checkpoint[prefix + "conv1/weights/Adam"] = np.zeros((7, 7, 3, 8), "float32")
    path = _write_tf1_checkpoint(tmp_path, checkpoint)

    report = load_tf1_checkpoint(backbone, path)

    assert report.prefix == prefix
    assert report.unused == sorted([prefix + "conv1/weights/Adam", "text_objseg/mlp_c5/DW"])
    assert report.unassigned == [OMITTED, MISSHAPEN]
    assert report.shape_mismatches == [(prefix + MISSHAPEN, (3,), (256,))]
    assert len(report.loaded) == len(tensors) - 1 and not report.complete
    by_name = tf1_variable_names(backbone)
    for name, value in tensors.items():
        if name != MISSHAPEN:
            np.testing.assert_array_equal(by_name[name][0].numpy(), value)
    np.testing.assert_array_equal(by_name[OMITTED][0].numpy(), omitted_before)
    np.testing.assert_array_equal(by_name[MISSHAPEN][0].numpy(), misshapen_before)
    summary = report.summary()
    assert "1 shape mismatches" in summary and OMITTED in summary

    with pytest.raises(ValueError, match="incomplete load"):
        load_tf1_checkpoint(backbone, path, strict=True)


def test_explicit_prefix_and_old_caffe_tensorflow_spelling(tmp_path):
    backbone = AtrousResNet(depth=18, width=4)
    tensors = _deeplab_tensors(backbone, spelling="caffe-tensorflow")
    assert "bn_conv1/scale" in tensors and "bn_conv1/gamma" not in tensors
    path = _write_tf1_checkpoint(tmp_path, {"scope/" + k: v for k, v in tensors.items()})

    wrong = load_tf1_checkpoint(backbone, path, prefix="")
    assert wrong.loaded == [] and len(wrong.unused) == len(tensors)

    report = load_tf1_checkpoint(backbone, path, prefix="scope")
    assert report.prefix == "scope/" and report.complete and report.unused == []
    layer = backbone.get_layer("bn3a_branch2b")
    np.testing.assert_array_equal(layer.gamma.numpy(), tensors["bn3a_branch2b/scale"])
    np.testing.assert_array_equal(layer.beta.numpy(), tensors["bn3a_branch2b/offset"])
    np.testing.assert_array_equal(layer.moving_mean.numpy(), tensors["bn3a_branch2b/mean"])
    np.testing.assert_array_equal(layer.moving_variance.numpy(), tensors["bn3a_branch2b/variance"])


def test_v1_checkpoint_folder(tmp_path):
    # DrSleep's released DeepLab checkpoint is in the V1 format; a folder resolves through its
    # `checkpoint` state file.
    backbone = AtrousResNet(depth=18, width=4)
    tensors = _deeplab_tensors(backbone, seed=5)
    _write_tf1_checkpoint(tmp_path / "v1", tensors, version="V1")
    report = load_tf1_checkpoint(backbone, tmp_path / "v1")
    assert report.complete and len(report.loaded) == len(tensors)
    np.testing.assert_array_equal(
        backbone.get_layer("res5b_branch2b").kernel.numpy(), tensors["res5b_branch2b/weights"]
    )


def test_constructor_loads_checkpoint_and_logs_report(tmp_path, caplog):
    reference = AtrousResNet(depth=18, width=4)
    tensors = _deeplab_tensors(reference, seed=2)
    tensors["text_objseg/embedding"] = np.zeros((5, 4), "float32")
    path = _write_tf1_checkpoint(tmp_path, tensors)
    with caplog.at_level(logging.INFO, logger="absl"):
        backbone = AtrousResNet(depth=18, width=4, weights=path)
    assert any("loaded 100 variables" in record.getMessage() for record in caplog.records)
    # A TF1 checkpoint selects DrSleep's graph conventions: TF 'SAME' padding, slim's epsilon.
    config = backbone.get_config()
    assert config["padding"] == "same" and config["batchnorm_epsilon"] == 1e-3
    assert config["weights"] is None
    np.testing.assert_array_equal(
        backbone.get_layer("conv1").kernel.numpy(), tensors["conv1/weights"]
    )

    # The stem is exactly DrSleep's TF1 graph: conv 'SAME' /2, slim BatchNorm, ReLU, pool 'SAME'.
    images = np.random.default_rng(0).normal(size=(2, 34, 40, 3)).astype("float32")
    x = tf.nn.conv2d(images, tensors["conv1/weights"], 2, "SAME")
    x = tf.nn.batch_normalization(
        x,
        tensors["bn_conv1/moving_mean"],
        tensors["bn_conv1/moving_variance"],
        tensors["bn_conv1/beta"],
        tensors["bn_conv1/gamma"],
        1e-3,
    )
    expected = tf.nn.max_pool2d(tf.nn.relu(x), 3, 2, "SAME").numpy()
    stem = keras.Model(backbone.input, backbone.get_layer("pool1").output)
    np.testing.assert_allclose(np.asarray(stem(images)), expected, rtol=1e-5, atol=1e-5)


def test_constructor_rejects_unusable_checkpoints(tmp_path):
    path = _write_tf1_checkpoint(
        tmp_path / "other", {"text_objseg/embedding": np.zeros(3, "float32")}
    )
    with pytest.raises(ValueError, match="no variable of the checkpoint matches"):
        AtrousResNet(depth=18, width=4, weights=path)
    with pytest.raises(ValueError, match="not a readable TF checkpoint"):
        AtrousResNet(depth=18, width=4, weights=str(tmp_path / "missing" / "model.ckpt"))
