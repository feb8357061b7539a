"""The backbone and the whole CMSA network."""

from cmsa_tf.models.atrous_resnet import AtrousResNet
from cmsa_tf.models.cmsa_segmenter import CMSASegmenter, build_model

__all__ = ["AtrousResNet", "CMSASegmenter", "build_model"]
