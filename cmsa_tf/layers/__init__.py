"""The paper's equations as Keras layers: Eq. 1 (features), Eq. 2-4 (CMSA), Eq. 5 (fusion)."""

from cmsa_tf.layers.cross_modal_self_attention import CrossModalSelfAttention
from cmsa_tf.layers.gated_multilevel_fusion import GatedMultiLevelFusion
from cmsa_tf.layers.multimodal_features import MultimodalFeatures
from cmsa_tf.layers.spatial_coordinates import SpatialCoordinates, spatial_coordinates

# The ablations of Tables 2 and 3.
from cmsa_tf.layers.ablated_cross_modal_attention import AblatedCrossModalAttention
from cmsa_tf.layers.conv_lstm_fusion import ConvLSTMFusion
from cmsa_tf.layers.deconv_fusion import DeconvFusion
from cmsa_tf.layers.pyramid_pooling_fusion import PyramidPoolingFusion
from cmsa_tf.layers.self_gated_fusion import SelfGatedFusion

__all__ = [
    "CrossModalSelfAttention",
    "GatedMultiLevelFusion",
    "MultimodalFeatures",
    "SpatialCoordinates",
    "spatial_coordinates",
    "AblatedCrossModalAttention",
    "ConvLSTMFusion",
    "DeconvFusion",
    "PyramidPoolingFusion",
    "SelfGatedFusion",
]
