"""Masks drawn on images: `overlay_mask` (tint and outline) and the `comparison_figure` panel."""

import matplotlib.figure
import numpy as np

from cmsa_tf.visualize.common import (
    as_color,
    as_image,
    as_map,
    binarize_mask,
    blend,
    check_alpha,
    expression_title,
)
from cmsa_tf.visualize.images import figure_to_array, new_figure


def _erode(mask):
    """One step of 4-neighbour binary erosion; outside the image counts as the nearest edge
    pixel."""
    padded = np.pad(mask, 1, mode="edge")  # [H + 2, W + 2]
    return (
        padded[1:-1, 1:-1]
        & padded[:-2, 1:-1]
        & padded[2:, 1:-1]
        & padded[1:-1, :-2]
        & padded[1:-1, 2:]
    )


def mask_outline(mask, width=1):
    """The inner outline of a boolean mask: mask pixels within `width` steps of the background.

    The image border is not an edge: a mask that touches it is outlined only where it meets
    background inside the image.

    Args:
        mask: boolean [H, W].
        width: outline thickness in pixels (>= 1).

    Returns:
        boolean [H, W], a subset of `mask`.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape [H, W], got shape {mask.shape}.")
    if int(width) != width or width < 1:
        raise ValueError(f"width must be a positive integer, got {width}.")
    inner = mask
    for _ in range(int(width)):
        inner = _erode(inner)
    return mask & ~inner


def overlay_mask(
    image_rgb_uint8,
    mask,
    color=(255, 0, 0),
    alpha=0.5,
    threshold=0.5,
    contour=True,
    contour_width=1,
):
    """Tints the masked region of an image and, optionally, outlines it.

    Inside the mask each pixel becomes `round((1 - alpha) * pixel + alpha * color)`; outline pixels
    (the mask's inner boundary, see `mask_outline`) are set to `color`. Pixels outside the mask are
    never changed, so an empty mask returns an unchanged copy.

    Args:
        image_rgb_uint8: uint8 RGB image [H, W, 3].
        mask: [H, W] or [H, W, 1]; boolean, {0, 1}, or probabilities (foreground `>= threshold`).
        color: (R, G, B) in [0, 255].
        alpha: tint opacity in [0, 1].
        threshold: foreground threshold for non-boolean masks.
        contour: whether to draw the outline.
        contour_width: outline thickness in pixels.

    Returns:
        uint8 [H, W, 3], a new array.
    """
    image = as_image(image_rgb_uint8, "image_rgb_uint8")
    mask = binarize_mask(as_map(mask, "mask", image.shape[:2]), threshold)
    color = as_color(color)
    alpha = check_alpha(alpha)
    out = blend(image, color, alpha, where=mask)
    if contour:
        out[mask_outline(mask, contour_width)] = color.astype(np.uint8)
    return out


def comparison_figure(
    image_rgb_uint8,
    ground_truth,
    prediction_probabilities,
    expression,
    threshold=0.5,
    iou=None,
    gt_color=(0, 255, 0),
    prediction_color=(255, 0, 0),
    panel_inches=3.0,
    dpi=100,
) -> matplotlib.figure.Figure:
    """Side by side "input | ground truth overlay | prediction overlay", the expression as title.

    Args:
        image_rgb_uint8: uint8 RGB image [H, W, 3].
        ground_truth: the ground-truth mask [H, W] (or [H, W, 1]), or None to leave out that panel.
        prediction_probabilities: predicted probabilities [H, W] (or [H, W, 1]), or a binary mask.
        expression: the referring expression (str, or UTF-8 bytes as read from TFRecords).
        threshold: foreground threshold for the prediction (and a non-boolean ground truth).
        iou: optional IoU of this prediction, added to the title.
        gt_color: (R, G, B) of the ground-truth overlay.
        prediction_color: (R, G, B) of the prediction overlay.
        panel_inches: width of each panel in inches.
        dpi: rendering resolution.

    Returns:
        a `matplotlib.figure.Figure` on its own Agg canvas, one axes a panel; its title
        (`fig._suptitle`) is `expression_title(expression, iou)`. `comparison_panel` renders it.
    """
    image = as_image(image_rgb_uint8, "image_rgb_uint8")
    height, width = image.shape[:2]
    prediction = as_map(prediction_probabilities, "prediction_probabilities", (height, width))
    panels = [("input", image)]
    if ground_truth is not None:
        truth = as_map(ground_truth, "ground_truth", (height, width))
        panels.append(("ground truth", overlay_mask(image, truth, gt_color, threshold=threshold)))
    panels.append(
        ("prediction", overlay_mask(image, prediction, prediction_color, threshold=threshold))
    )

    if panel_inches <= 0 or dpi <= 0:
        raise ValueError(f"panel_inches and dpi must be positive, got {panel_inches} and {dpi}.")
    total_inches = panel_inches * len(panels)
    line_width = max(20, int(total_inches * 11))  # about 11 characters of 10-pt text per inch
    title = expression_title(expression, iou, line_width)
    lines = title.split("\n")
    title_inches = 0.25 * len(lines) + 0.45
    fig = new_figure((total_inches, panel_inches * height / width + title_inches), dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, picture) in zip(axes, panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig


def comparison_panel(image_rgb_uint8, ground_truth, prediction_probabilities, expression, **kwargs):
    """`comparison_figure` rendered to a uint8 RGB array [h, w, 3] (same arguments)."""
    return figure_to_array(
        comparison_figure(
            image_rgb_uint8, ground_truth, prediction_probabilities, expression, **kwargs
        )
    )
