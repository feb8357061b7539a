"""The backbone, the whole CMSA network, and `build_model(config.model)`."""

from cmsa_tf.models.atrous_resnet import AtrousResNet
from cmsa_tf.models.cmsa_segmenter import CMSASegmenter
from cmsa_tf.models.factory import build_model

__all__ = ["AtrousResNet", "CMSASegmenter", "build_model"]
