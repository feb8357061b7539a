"""Pictures of inputs and predictions: mask overlays, comparison panels, the paper's Figs. 4 and 5.

Used by the evaluation script and its training-time TensorBoard images, the demo and
`cmsa-predict`. Everything here is NumPy, PIL and matplotlib; importing it does not import
TensorFlow (`to_uint8_rgb`, which lives in `cmsa_tf.data.preprocess`, is loaded on first use).

- `overlay`: `overlay_mask` (tint a mask's region on an image and outline it, `mask_outline`) and
  `comparison_panel` ("input | ground truth | prediction" with the expression, and IoU, as title).
- `word_attention`: `word_attention_figure` / `word_attention_image`, the paper's Fig. 4
  (2nd column), an L x T matrix of the attention each feature level pays to each word.
- `heat_maps`: `strongest_channel`, `resize_bilinear`, `heat_map`, `heat_map_overlay`, the
  paper's Fig. 5 heat maps.
- `images`: `figure_to_array` (render a figure with Agg, no window, pyplot's backend untouched)
  and `save_png`.
- `to_uint8_rgb`: a normalised pipeline image back to uint8 RGB (`cmsa_tf.data.preprocess`).
"""

from cmsa_tf.visualize.heat_maps import (
    HEAT_MAP_CRITERIA,
    heat_map,
    heat_map_overlay,
    resize_bilinear,
    strongest_channel,
)
from cmsa_tf.visualize.images import figure_to_array, save_png
from cmsa_tf.visualize.overlay import comparison_panel, mask_outline, overlay_mask
from cmsa_tf.visualize.word_attention import (
    DEFAULT_LEVEL_NAMES,
    word_attention_figure,
    word_attention_image,
)

__all__ = [
    "DEFAULT_LEVEL_NAMES",
    "HEAT_MAP_CRITERIA",
    "comparison_panel",
    "figure_to_array",
    "heat_map",
    "heat_map_overlay",
    "mask_outline",
    "overlay_mask",
    "resize_bilinear",
    "save_png",
    "strongest_channel",
    "to_uint8_rgb",
    "word_attention_figure",
    "word_attention_image",
]


def __getattr__(name):
    # `to_uint8_rgb` has its home in the preprocessing module, which imports TensorFlow: loaded
    # here only when asked for (PEP 562), so that importing visualize stays TensorFlow-free.
    if name == "to_uint8_rgb":
        from cmsa_tf.data.preprocess import to_uint8_rgb

        return to_uint8_rgb
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
