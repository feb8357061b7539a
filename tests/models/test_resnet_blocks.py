"""Tests of cmsa_tf/models/resnet_blocks.py: Caffe block names (the builder is exercised through
AtrousResNet in test_atrous_resnet.py)."""

import pytest

from cmsa_tf.models.resnet_blocks import caffe_block_names


def test_caffe_block_names():
    assert caffe_block_names(101, 2) == ["2a", "2b", "2c"]
    assert caffe_block_names(101, 3) == ["3a", "3b1", "3b2", "3b3"]
    assert caffe_block_names(101, 4)[-1] == "4b22" and len(caffe_block_names(101, 4)) == 23
    assert caffe_block_names(101, 5) == ["5a", "5b", "5c"]
    assert caffe_block_names(50, 3) == ["3a", "3b", "3c", "3d"]
    assert caffe_block_names(50, 4) == ["4a", "4b", "4c", "4d", "4e", "4f"]
    assert caffe_block_names(152, 4)[-1] == "4b35"
    assert caffe_block_names(18, 5) == ["5a", "5b"]


def test_caffe_block_names_refuses_unknown_depth_and_stage():
    with pytest.raises(ValueError, match="depth must be one of"):
        caffe_block_names(42, 2)
    with pytest.raises(ValueError, match="stage must be"):
        caffe_block_names(50, 6)
