"""The ablation variants of Tables 2 and 3 (docs/design.md, "Ablation variants").

Table 2, the attention: `AblatedCrossModalAttention` (no / word / pixel / word-pixel pair
attention). Table 3 (top), the word representation: `SentenceEncoder` (CMSA-S). Table 3 (bottom),
the multi-level fusion: `SingleLevel` (no fusion), `PyramidPoolingFusion`, `DeconvFusion`,
`ConvLSTMFusion` and `SelfGatedFusion`.
"""

from cmsa_tf.layers.ablations.ablated_cross_modal_attention import AblatedCrossModalAttention
from cmsa_tf.layers.ablations.conv_lstm_fusion import ConvLSTMFusion
from cmsa_tf.layers.ablations.deconv_fusion import DeconvFusion
from cmsa_tf.layers.ablations.pyramid_pooling_fusion import PyramidPoolingFusion
from cmsa_tf.layers.ablations.self_gated_fusion import SelfGatedFusion
from cmsa_tf.layers.ablations.sentence_encoder import SentenceEncoder
from cmsa_tf.layers.ablations.single_level import SingleLevel

__all__ = [
    "AblatedCrossModalAttention",
    "SentenceEncoder",
    "SingleLevel",
    "PyramidPoolingFusion",
    "DeconvFusion",
    "ConvLSTMFusion",
    "SelfGatedFusion",
]
