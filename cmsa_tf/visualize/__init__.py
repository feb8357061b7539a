"""Pictures of inputs and predictions: mask overlays, comparison panels, the paper's Figs. 4 and 5.

Used by the evaluation script and its training-time TensorBoard images, the demo and
`cmsa-predict`. Everything here is NumPy, PIL and matplotlib; importing it does not import
TensorFlow (`to_uint8_rgb`, which lives in `cmsa_tf.data.preprocess`, is loaded on first use).

- `overlay`: `overlay_mask` (tint a mask's region on an image and outline it, `mask_outline`) and
  `comparison_figure` / `comparison_panel` ("input | ground truth | prediction" with the
  expression, and IoU, as title).
- `word_attention`: `word_attention_figure` / `word_attention_image`, the paper's Fig. 4
  (2nd column), an L x T matrix of the attention each feature level pays to each word.
- `heat_maps`: the paper's Fig. 5. `heat_map(features, size, criterion, score_kernel, score_bias)`
  is where the fused feature map responds for the expression, in [0, 1]; by default
  (`criterion="weighted"`) its channels weighted by the score convolution (docs/design.md,
  "Fig. 5: heat maps"; `HEAT_MAP_CRITERIA` lists the others, one channel each).
  `score_weights(model)` gives the score convolution's weights it reads.
  `heat_map_figure(image, heat, expression, iou)` is the panel every consumer draws (TensorBoard's
  `heat_map/K`, the docs, the web demo): "input | heat map over the input", a colour bar for the
  normalised activation, the expression and IoU as title; `heat_map_image` renders it.
  `heat_map_overlay` blends the colour-mapped map over the image; `strongest_channel`,
  `score_contributions` and `resize_bilinear` are its steps; `hotter_inside` and
  `share_hotter_inside` measure whether a map is hotter inside a mask than outside
  (`benchmarks/heat_maps.py`).
- `common.expression_title`: the title every figure carries (the expression in quotes, the IoU).
- `images`: `figure_to_array` (render a figure with Agg, no window, pyplot's backend untouched)
  and `save_png`.
- `to_uint8_rgb`: a normalised pipeline image back to uint8 RGB (`cmsa_tf.data.preprocess`).
"""

from cmsa_tf.visualize.common import expression_title
from cmsa_tf.visualize.heat_maps import (
    DEFAULT_HEAT_MAP_CRITERION,
    HEAT_MAP_CRITERIA,
    heat_map,
    heat_map_figure,
    heat_map_image,
    heat_map_overlay,
    hotter_inside,
    resize_bilinear,
    score_contributions,
    score_weights,
    share_hotter_inside,
    strongest_channel,
)
from cmsa_tf.visualize.images import figure_to_array, save_png
from cmsa_tf.visualize.overlay import (
    comparison_figure,
    comparison_panel,
    mask_outline,
    overlay_mask,
)
from cmsa_tf.visualize.word_attention import (
    DEFAULT_LEVEL_NAMES,
    word_attention_figure,
    word_attention_image,
)

__all__ = [
    "DEFAULT_HEAT_MAP_CRITERION",
    "DEFAULT_LEVEL_NAMES",
    "HEAT_MAP_CRITERIA",
    "comparison_figure",
    "comparison_panel",
    "expression_title",
    "figure_to_array",
    "heat_map",
    "heat_map_figure",
    "heat_map_image",
    "heat_map_overlay",
    "hotter_inside",
    "mask_outline",
    "overlay_mask",
    "resize_bilinear",
    "save_png",
    "score_contributions",
    "score_weights",
    "share_hotter_inside",
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
