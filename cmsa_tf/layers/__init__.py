"""The paper's equations as Keras layers, then the ablation variants of Tables 2 and 3.

Eq. 1 (`SpatialCoordinates`, `MultimodalFeatures`), the word representation (`BagOfWords`; beyond
the paper, `ContextualWords` gives the words their order),
Eq. 2-4 (`CrossModalSelfAttention`), Eq. 5 (`GatedMultiLevelFusion`); the ablations are in
`cmsa_tf.layers.ablations` (docs/design.md, "Where each equation lives").
"""

# The paper first, in equation order; then the ablations.
# isort: off
from cmsa_tf.layers.spatial_coordinates import SpatialCoordinates, spatial_coordinates
from cmsa_tf.layers.multimodal_features import MultimodalFeatures
from cmsa_tf.layers.bag_of_words import BagOfWords
from cmsa_tf.layers.contextual_words import ContextualWords
from cmsa_tf.layers.cross_modal_self_attention import CrossModalSelfAttention
from cmsa_tf.layers.gated_multilevel_fusion import GatedMultiLevelFusion

from cmsa_tf.layers.ablations import (
    AblatedCrossModalAttention,
    ConvLSTMFusion,
    DeconvFusion,
    PyramidPoolingFusion,
    SelfGatedFusion,
    SentenceEncoder,
    SingleLevel,
)
# isort: on

__all__ = [
    "SpatialCoordinates",
    "spatial_coordinates",
    "MultimodalFeatures",
    "BagOfWords",
    "ContextualWords",
    "CrossModalSelfAttention",
    "GatedMultiLevelFusion",
    "AblatedCrossModalAttention",
    "SentenceEncoder",
    "SingleLevel",
    "PyramidPoolingFusion",
    "DeconvFusion",
    "ConvLSTMFusion",
    "SelfGatedFusion",
]
