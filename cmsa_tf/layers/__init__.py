"""The paper's equations as Keras layers: Eq. 1 (features), Eq. 2-4 (CMSA), Eq. 5 (fusion)."""

from cmsa_tf.layers.cross_modal_self_attention import CrossModalSelfAttention
from cmsa_tf.layers.gated_multilevel_fusion import GatedMultiLevelFusion
from cmsa_tf.layers.multimodal_features import MultimodalFeatures
from cmsa_tf.layers.spatial_coordinates import SpatialCoordinates, spatial_coordinates

__all__ = [
    "CrossModalSelfAttention",
    "GatedMultiLevelFusion",
    "MultimodalFeatures",
    "SpatialCoordinates",
    "spatial_coordinates",
]
