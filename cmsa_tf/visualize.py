"""Pictures of inputs and predictions: mask overlays, comparison panels, the paper's Fig. 4 and Fig. 5.

Used by the training loop (TensorBoard images), the evaluation script, the demo and `cmsa-predict`.
Everything here is NumPy, PIL and matplotlib; TensorFlow is imported only inside `to_uint8_rgb`
(for the pipeline's mean) and `to_summary_image`.

Figures are built with the object-oriented API (`matplotlib.figure.Figure`) and rendered with the
Agg canvas (`FigureCanvasAgg`), so no window ever opens and the global pyplot backend is left alone
(a notebook keeps its inline backend).

- `overlay_mask`: tint a mask's region on an image and outline it.
- `comparison_panel`: "input | ground truth | prediction" with the expression (and IoU) as a title.
- `word_attention_figure` / `word_attention_image`: the paper's Fig. 4 (2nd column), an L x T matrix
  of the attention each feature level pays to each word.
- `strongest_channel`, `heat_map`, `heat_map_overlay`: the paper's Fig. 5 heat maps.
- `figure_to_array`, `to_summary_image`, `save_png`, `to_uint8_rgb`: conversions and I/O.
"""

import pathlib
import sys
import textwrap

import matplotlib
import matplotlib.figure
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

DEFAULT_LEVEL_NAMES = ("res5", "res4", "res3")
HEAT_MAP_CRITERIA = ("mean", "max")


# ----------------------------------------------------------------------------------------------------
# Input checks


def _as_image(image, name="image"):
    """Checks an RGB uint8 image [H, W, 3] and returns it as a NumPy array."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must be an RGB image of shape [H, W, 3], got shape {image.shape}.")
    if image.dtype != np.uint8:
        raise ValueError(
            f"{name} must have dtype uint8 (pixels in [0, 255]), got {image.dtype}; "
            "use `to_uint8_rgb` to convert a normalised pipeline image."
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {image.shape}.")
    return image


def _as_map(values, name, shape=None):
    """Checks a finite numeric or boolean map [H, W] (or [H, W, 1]) and returns it as [H, W]."""
    values = np.asarray(values)
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim != 2:
        raise ValueError(f"{name} must have shape [H, W] or [H, W, 1], got shape {values.shape}.")
    if shape is not None and values.shape != tuple(shape):
        raise ValueError(f"{name} has shape {values.shape} but the image is {tuple(shape)} (H, W).")
    if values.dtype != bool and not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"{name} must be boolean or numeric, got dtype {values.dtype}.")
    if values.dtype != bool and not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return values


def _as_color(color, name="color"):
    color = np.asarray(color)
    if color.shape != (3,) or not np.all((color >= 0) & (color <= 255)):
        raise ValueError(f"{name} must be three values (R, G, B) in [0, 255], got {color!r}.")
    return color.astype(np.float32)


def _check_alpha(alpha):
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    return float(alpha)


def _binarize(mask, threshold):
    """Boolean masks stay as they are; numbers are foreground where `>= threshold` (as the pipeline)."""
    if mask.dtype == bool:
        return mask
    return mask >= threshold


def _blend(image, color, alpha, where=None):
    """`(1 - alpha) * image + alpha * color`, rounded to uint8, at `where` (everywhere if None)."""
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * color  # [H, W, 3]
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if where is None:
        return blended
    out = image.copy()
    out[where] = blended[where]
    return out


# ----------------------------------------------------------------------------------------------------
# Masks


def _erode(mask):
    """One step of 4-neighbour binary erosion; outside the image counts as the nearest edge pixel."""
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
    image_rgb_uint8, mask, color=(255, 0, 0), alpha=0.5, threshold=0.5, contour=True, contour_width=1
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
    image = _as_image(image_rgb_uint8, "image_rgb_uint8")
    mask = _binarize(_as_map(mask, "mask", image.shape[:2]), threshold)
    color = _as_color(color)
    alpha = _check_alpha(alpha)
    out = _blend(image, color, alpha, where=mask)
    if contour:
        out[mask_outline(mask, contour_width)] = color.astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------------------------
# Figures


def _new_figure(figsize, dpi, layout="constrained"):
    """A figure on its own Agg canvas: never attached to pyplot, never shown in a window."""
    fig = matplotlib.figure.Figure(figsize=figsize, dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def figure_to_array(fig):
    """Renders a matplotlib figure with Agg and returns its pixels; the figure is closed.

    Args:
        fig: a `matplotlib.figure.Figure` (from this module, or from pyplot with any backend).

    Returns:
        uint8 RGB array [h, w, 3] (h, w = the figure size in inches times its dpi).
    """
    if not isinstance(fig, matplotlib.figure.Figure):
        raise ValueError(f"fig must be a matplotlib.figure.Figure, got {type(fig).__name__}.")
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()  # [h, w, 4] -> [h, w, 3]
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:  # only pyplot keeps references to figures
        pyplot.close(fig)
    return pixels


def comparison_panel(
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
):
    """Side-by-side "input | ground truth overlay | prediction overlay" with the expression as title.

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
        uint8 RGB array [h, w, 3] of the rendered figure.
    """
    image = _as_image(image_rgb_uint8, "image_rgb_uint8")
    height, width = image.shape[:2]
    prediction = _as_map(prediction_probabilities, "prediction_probabilities", (height, width))
    panels = [("input", image)]
    if ground_truth is not None:
        truth = _as_map(ground_truth, "ground_truth", (height, width))
        panels.append(("ground truth", overlay_mask(image, truth, gt_color, threshold=threshold)))
    panels.append(("prediction", overlay_mask(image, prediction, prediction_color, threshold=threshold)))

    if isinstance(expression, bytes):
        expression = expression.decode("utf-8")
    if not isinstance(expression, str):
        raise ValueError(f"expression must be a str, got {type(expression).__name__}.")
    if panel_inches <= 0 or dpi <= 0:
        raise ValueError(f"panel_inches and dpi must be positive, got {panel_inches} and {dpi}.")
    total_inches = panel_inches * len(panels)
    line_width = max(20, int(total_inches * 11))  # about 11 characters of 10-pt text per inch
    lines = textwrap.wrap(f'"{expression}"', line_width) if expression else ["(empty expression)"]
    if iou is not None:
        iou = float(iou)
        if not np.isfinite(iou):
            raise ValueError(f"iou must be a finite number, got {iou}.")
        iou_text = f"IoU = {iou:.3f}"
        if len(lines[-1]) + 2 + len(iou_text) <= line_width:
            lines[-1] += "  " + iou_text
        else:
            lines.append(iou_text)
    title = "\n".join(lines)
    title_inches = 0.25 * len(lines) + 0.45
    fig = _new_figure((total_inches, panel_inches * height / width + title_inches), dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, picture) in zip(axes, panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return figure_to_array(fig)


def word_attention_figure(tokens, attention, level_names=DEFAULT_LEVEL_NAMES, title=None, dpi=100):
    """The paper's Fig. 4 (2nd column): how much each feature level attends to each word.

    Row l, column n holds the attention of level l to word n (the attention scores of Eq. 3 averaged
    over everything but the word). The words label the columns, the levels the rows; each cell is
    annotated with its value, and a colour bar shows the scale.

    Args:
        tokens: the expression's words, list of str (only these columns are drawn).
        attention: [L, T] with T >= len(tokens); columns past len(tokens) (padding) are ignored.
        level_names: L row labels, top to bottom.
        title: optional figure title (e.g. the expression).
        dpi: rendering resolution.

    Returns:
        a `matplotlib.figure.Figure`; its first Axes is the matrix, the second the colour bar.

    Example:
        >>> fig = word_attention_figure(["man", "on", "left"], np.full((3, 20), 0.05))
        >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
        ['man', 'on', 'left']
    """
    tokens = list(tokens)
    if not tokens:
        raise ValueError("tokens must hold at least one word.")
    if not all(isinstance(token, str) for token in tokens):
        raise ValueError(f"tokens must be strings, got {tokens!r}.")
    level_names = [str(name) for name in level_names]
    attention = np.asarray(attention)
    if attention.ndim != 2:
        raise ValueError(f"attention must have shape [levels, words], got shape {attention.shape}.")
    if not np.issubdtype(attention.dtype, np.number) or not np.all(np.isfinite(attention)):
        raise ValueError("attention must hold finite numbers.")
    num_levels, num_columns = attention.shape
    if num_columns < len(tokens):
        raise ValueError(
            f"attention has {num_columns} word columns but there are {len(tokens)} tokens; "
            "it needs at least one column per token."
        )
    if len(level_names) != num_levels:
        raise ValueError(
            f"level_names has {len(level_names)} names but attention has {num_levels} rows (levels)."
        )
    values = attention[:, : len(tokens)].astype(np.float64)  # [L, T] -> [L, n]

    fig = _new_figure((max(4.0, 0.7 * len(tokens) + 2.0), 0.55 * num_levels + 1.6), dpi)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(values, cmap="viridis", aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(len(tokens)), labels=tokens, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(num_levels), labels=level_names)
    fig.colorbar(image, ax=ax)
    low, high = float(values.min()), float(values.max())
    for row in range(num_levels):
        for column in range(len(tokens)):
            value = values[row, column]
            bright = high > low and (value - low) / (high - low) > 0.6  # viridis is light at the top
            ax.text(
                column, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                color="black" if bright else "white",
            )
    if title:
        ax.set_title(str(title), fontsize=10)
    return fig


def word_attention_image(tokens, attention, level_names=DEFAULT_LEVEL_NAMES, title=None, dpi=100):
    """`word_attention_figure` rendered to a uint8 RGB array [h, w, 3] (see that function)."""
    return figure_to_array(word_attention_figure(tokens, attention, level_names, title, dpi))


# ----------------------------------------------------------------------------------------------------
# Heat maps (Fig. 5)


def _check_features(features):
    features = np.asarray(features)
    if features.ndim != 3:
        raise ValueError(f"features must have shape [h, w, C], got shape {features.shape}.")
    if 0 in features.shape:
        raise ValueError(f"features must not be empty, got shape {features.shape}.")
    if not np.issubdtype(features.dtype, np.number) or not np.all(np.isfinite(features)):
        raise ValueError("features must hold finite numbers.")
    return features


def strongest_channel(features, criterion="mean"):
    """Index of the most strongly activated channel of a feature map [h, w, C].

    Args:
        features: [h, w, C].
        criterion: "mean" (largest spatial mean activation) or "max" (largest single activation).
            Ties go to the lowest index.

    Returns:
        int channel index.
    """
    features = _check_features(features)
    if criterion not in HEAT_MAP_CRITERIA:
        raise ValueError(f"criterion must be one of {HEAT_MAP_CRITERIA}, got {criterion!r}.")
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)  # [h * w, C]
    scores = flat.mean(axis=0) if criterion == "mean" else flat.max(axis=0)  # [C]
    return int(np.argmax(scores))


def resize_bilinear(values, output_size):
    """Bilinear resize of a 2-D map with half-pixel centres (as `tf.image.resize`, no antialias).

    Args:
        values: [h, w] numbers.
        output_size: (H, W) positive integers.

    Returns:
        float64 [H, W].
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"values must be a non-empty [h, w] map, got shape {values.shape}.")
    out_height, out_width = _check_size(output_size)

    def sample_points(in_size, out_size):
        centres = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
        centres = np.clip(centres, 0.0, in_size - 1)
        low = np.floor(centres).astype(np.int64)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, centres - low

    top, bottom, dy = sample_points(values.shape[0], out_height)
    left, right, dx = sample_points(values.shape[1], out_width)
    rows = values[top] * (1.0 - dy)[:, None] + values[bottom] * dy[:, None]  # [H, w]
    return rows[:, left] * (1.0 - dx)[None, :] + rows[:, right] * dx[None, :]  # [H, W]


def _check_size(output_size):
    try:
        height, width = (int(v) for v in output_size)
    except (TypeError, ValueError):
        raise ValueError(f"output_size must be (H, W), got {output_size!r}.") from None
    if height < 1 or width < 1 or (height, width) != tuple(output_size):
        raise ValueError(f"output_size must be two positive integers (H, W), got {output_size!r}.")
    return height, width


def heat_map(features, output_size, criterion="mean"):
    """The paper's Fig. 5 heat map: the strongest channel of a feature map, upsampled and normalised.

    Section 4.4 (after RRN, Li et al. 2018): "normalizing the strongest activated channel of the
    last feature map, which is upsampled to match with the size of original input image". Here:

    1. the strongest channel is the one with the largest spatial mean activation (`criterion="mean"`,
       the default; it reflects how much of the image a channel responds to, and a single outlier
       pixel cannot pick it), or the largest single activation (`criterion="max"`);
    2. that channel is bilinearly resized to `output_size` (`resize_bilinear`);
    3. the result is min-max normalised to [0, 1]; a constant map gives all zeros.

    Args:
        features: [h, w, C], e.g. the fused map Y of Eq. 5 for one example.
        output_size: (H, W) of the input image.
        criterion: "mean" or "max", see above.

    Returns:
        float32 [H, W] in [0, 1].
    """
    features = _check_features(features)
    channel = strongest_channel(features, criterion)
    heat = resize_bilinear(features[..., channel], output_size)  # [h, w] -> [H, W]
    low, high = heat.min(), heat.max()
    if high - low <= 0.0:
        return np.zeros(heat.shape, np.float32)
    return ((heat - low) / (high - low)).astype(np.float32)


def heat_map_overlay(image_rgb_uint8, heat, alpha=0.5, colormap="jet"):
    """Blends a colour-mapped heat map over an image: `(1 - alpha) * image + alpha * colormap(heat)`.

    Args:
        image_rgb_uint8: uint8 RGB image [H, W, 3].
        heat: [H, W] (or [H, W, 1]) values in [0, 1], e.g. from `heat_map`.
        alpha: heat-map opacity in [0, 1].
        colormap: a matplotlib colormap name ("jet" as in the paper's figure, "viridis", ...).

    Returns:
        uint8 [H, W, 3].
    """
    image = _as_image(image_rgb_uint8, "image_rgb_uint8")
    heat = _as_map(heat, "heat", image.shape[:2]).astype(np.float64)
    if heat.min() < -1e-6 or heat.max() > 1.0 + 1e-6:
        raise ValueError(
            f"heat must be in [0, 1], got values in [{heat.min():.4g}, {heat.max():.4g}]; "
            "normalise it (e.g. with `heat_map`)."
        )
    alpha = _check_alpha(alpha)
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise ValueError(f"colormap {colormap!r} is not a matplotlib colormap.") from None
    colors = cmap(np.clip(heat, 0.0, 1.0))[..., :3] * 255.0  # [H, W, 4] -> [H, W, 3]
    return _blend(image, colors.astype(np.float32), alpha)


# ----------------------------------------------------------------------------------------------------
# Conversions and I/O


def to_uint8_rgb(image_bgr_mean_subtracted):
    """Undoes the pipeline's normalisation: float BGR minus the mean -> uint8 RGB.

    Adds `cmsa_tf.data.pipeline.MEAN_BGR`, reverses the channels, rounds and clips to [0, 255]
    (the NumPy twin of `pipeline.denormalize_image`, usable on arrays and eager tensors).

    Args:
        image_bgr_mean_subtracted: [..., 3] float, e.g. a batch's `image` [S, S, 3] or [B, S, S, 3].

    Returns:
        uint8, same shape, RGB order.
    """
    # Imported here: the pipeline imports TensorFlow, which this module avoids at import time.
    from cmsa_tf.data.pipeline import MEAN_BGR

    image = np.asarray(image_bgr_mean_subtracted)
    if image.ndim < 1 or image.shape[-1] != 3:
        raise ValueError(
            f"image_bgr_mean_subtracted must have 3 (BGR) channels on its last axis, got shape {image.shape}."
        )
    if not np.issubdtype(image.dtype, np.number) or not np.all(np.isfinite(image)):
        raise ValueError("image_bgr_mean_subtracted must hold finite numbers.")
    rgb = (image.astype(np.float32) + np.asarray(MEAN_BGR, np.float32))[..., ::-1]  # BGR -> RGB
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def save_png(path, array_uint8):
    """Writes an image array as PNG, creating parent directories.

    Args:
        path: file path (str or os.PathLike).
        array_uint8: uint8 [H, W] or [H, W, 1] (grey), [H, W, 3] (RGB) or [H, W, 4] (RGBA);
            a boolean [H, W] mask is written as 0 / 255.

    Returns:
        the `pathlib.Path` written.
    """
    array = np.asarray(array_uint8)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise ValueError(f"array_uint8 must have dtype uint8 (or bool), got {array.dtype}.")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise ValueError(
            f"array_uint8 must have shape [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {array.shape}."
        )
    if 0 in array.shape:
        raise ValueError(f"array_uint8 must not be empty, got shape {array.shape}.")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")
    return path


def to_summary_image(image_or_figure):
    """An image, a batch of images or a figure -> uint8 tensor [B, h, w, 3] for `tf.summary.image`.

    Args:
        image_or_figure: uint8 [h, w, 3], uint8 [B, h, w, 3], or a matplotlib Figure (rendered and
            closed by `figure_to_array`).

    Returns:
        a `tf.Tensor` of dtype uint8 and rank 4.
    """
    import tensorflow as tf  # lazily: the rest of this module does not need TensorFlow

    if isinstance(image_or_figure, matplotlib.figure.Figure):
        image_or_figure = figure_to_array(image_or_figure)
    array = np.asarray(image_or_figure)
    if array.ndim == 3:
        array = array[None]  # [h, w, 3] -> [1, h, w, 3]
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(
            "image_or_figure must be a Figure or uint8 [h, w, 3] / [B, h, w, 3], "
            f"got dtype {array.dtype} and shape {array.shape}."
        )
    return tf.convert_to_tensor(array)
