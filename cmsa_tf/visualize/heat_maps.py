"""The paper's Fig. 5 heat maps: one channel of the fused feature map, upsampled, over the image.

Which channel is "the strongest activated" one is a choice (docs/design.md, "Fig. 5: heat maps");
`HEAT_MAP_CRITERIA` lists the ones offered. The default, "weighted", weighs every channel by the
model's score convolution (Eq. 6), whose weights `score_weights(model)` gives.
"""

from collections.abc import Sequence

import matplotlib
import matplotlib.cm
import matplotlib.colors
import matplotlib.figure
import numpy as np

from cmsa_tf.visualize.common import as_image, as_map, blend, check_alpha, expression_title
from cmsa_tf.visualize.images import figure_to_array, new_figure

# "weighted": every channel weighted by the score convolution (the logit map less its bias);
# "score": the channel whose contribution to the logit separates the predicted foreground from
# the background most; "correlation": the channel whose activation correlates most with the
# predicted probability; "mean" / "max": the channel with the largest spatial mean / single
# activation.
HEAT_MAP_CRITERIA = ("weighted", "score", "correlation", "mean", "max")
DEFAULT_HEAT_MAP_CRITERION = "weighted"
# The criteria that read the model's prediction, hence need its score convolution's weights.
SCORE_CRITERIA = ("weighted", "score", "correlation")


def _check_features(features):
    features = np.asarray(features)
    if features.dtype.name == "bfloat16":  # ml_dtypes' type (mixed precision), not np.number
        features = features.astype(np.float32)
    if features.ndim != 3:
        raise ValueError(f"features must have shape [h, w, C], got shape {features.shape}.")
    if 0 in features.shape:
        raise ValueError(f"features must not be empty, got shape {features.shape}.")
    if not np.issubdtype(features.dtype, np.number) or not np.all(np.isfinite(features)):
        raise ValueError("features must hold finite numbers.")
    return features


def _check_criterion(criterion, score_kernel):
    if criterion not in HEAT_MAP_CRITERIA:
        raise ValueError(f"criterion must be one of {HEAT_MAP_CRITERIA}, got {criterion!r}.")
    if criterion in SCORE_CRITERIA and score_kernel is None:
        raise ValueError(
            f"criterion {criterion!r} reads the model's prediction: pass score_kernel (and "
            "score_bias), e.g. `score_kernel, score_bias = score_weights(model)`; the criteria "
            "'mean' and 'max' need neither."
        )


def score_weights(model) -> tuple[np.ndarray, np.ndarray]:
    """The kernel [k, k, C, 1] and bias [1] of a model's score convolution (Eq. 6), as NumPy.

    Args:
        model: a `CMSASegmenter` (anything with a built `score` layer holding a kernel and a bias).
    """
    layer = getattr(model, "score", None)
    if layer is None or len(layer.get_weights()) != 2:
        raise ValueError(
            f"model must have a built `score` convolution with a kernel and a bias; "
            f"{type(model).__name__} has none."
        )
    kernel, bias = layer.get_weights()
    return np.asarray(kernel, np.float64), np.asarray(bias, np.float64)


def score_contributions(features, score_kernel) -> np.ndarray:
    """Each channel's part of the score convolution's logit (Eq. 6) at each position.

    The score convolution ("same" padding, stride 1) is a sum over channels:
    `logits = contributions.sum(-1) + bias`.

    Args:
        features: [h, w, C], the fused map Y of Eq. 5 for one example.
        score_kernel: [k, k, C, 1] with k odd (the score convolution's kernel).

    Returns:
        float64 [h, w, C].
    """
    features = _check_features(features).astype(np.float64)
    kernel = np.asarray(score_kernel, np.float64)
    height, width, channels = features.shape
    if (
        kernel.ndim != 4
        or kernel.shape[0] != kernel.shape[1]
        or kernel.shape[0] % 2 != 1
        or kernel.shape[2:] != (channels, 1)
    ):
        raise ValueError(
            f"score_kernel must have shape [k, k, {channels}, 1] with k odd (the features have "
            f"{channels} channels), got shape {kernel.shape}."
        )
    size = kernel.shape[0]
    pad = size // 2
    padded = np.pad(features, ((pad, pad), (pad, pad), (0, 0)))  # [h + 2p, w + 2p, C]
    out = np.zeros_like(features)  # [h, w, C]
    for row in range(size):
        for column in range(size):
            out += padded[row : row + height, column : column + width] * kernel[row, column, :, 0]
    return out


def _logits(contributions, score_bias):
    bias = 0.0 if score_bias is None else float(np.asarray(score_bias).reshape(-1)[0])
    return contributions.sum(axis=-1) + bias  # [h, w]


def strongest_channel(
    features,
    criterion: str = "score",
    score_kernel=None,
    score_bias=None,
) -> int:
    """Index of the most strongly activated channel of a feature map [h, w, C].

    Args:
        features: [h, w, C].
        criterion: one of `HEAT_MAP_CRITERIA` but "weighted" (which is no single channel):
            "score" (default): the channel whose contribution to the logit (`score_contributions`)
            is largest on average over the predicted foreground (logit > 0; where there is none,
            the position of the largest logit) relative to its average over the rest (the
            channel that most separates the predicted foreground from the background);
            "correlation": the channel whose activation has
            the largest Pearson correlation with the predicted probability; "mean" / "max": the
            largest spatial mean / single activation. Ties go to the lowest index.
        score_kernel: the score convolution's kernel [k, k, C, 1], for "score" and "correlation".
        score_bias: its bias [1] (default 0).

    Returns:
        int channel index.
    """
    features = _check_features(features)
    _check_criterion(criterion, score_kernel)
    if criterion == "weighted":
        raise ValueError("criterion 'weighted' combines all channels; it picks no single one.")
    if criterion in ("mean", "max"):
        flat = features.reshape(-1, features.shape[-1]).astype(np.float64)  # [h * w, C]
        scores = flat.mean(axis=0) if criterion == "mean" else flat.max(axis=0)  # [C]
        return int(np.argmax(scores))
    contributions = score_contributions(features, score_kernel)  # [h, w, C]
    logits = _logits(contributions, score_bias)  # [h, w]
    if criterion == "score":
        foreground = logits > 0.0
        if not foreground.any():
            foreground = logits == logits.max()
        inside = contributions[foreground].mean(axis=0)  # [C]
        outside = contributions[~foreground].mean(axis=0) if (~foreground).any() else 0.0
        return int(np.argmax(inside - outside))
    probabilities = 1.0 / (1.0 + np.exp(-logits)).reshape(-1)  # [h * w]
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)  # [h * w, C]
    centred = flat - flat.mean(axis=0)
    target = probabilities - probabilities.mean()
    norms = np.sqrt((centred**2).sum(axis=0) * (target**2).sum())  # [C]
    covariance = centred.T @ target  # [C]
    correlation = np.where(norms > 0.0, covariance / np.where(norms > 0.0, norms, 1.0), -np.inf)
    return int(np.argmax(correlation))


def resize_bilinear(values, output_size) -> np.ndarray:
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


def _check_window(window):
    try:
        size, top, left, height, width = (int(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(
            f"window must be (input_size, pad_top, pad_left, resized_height, resized_width), "
            f"got {window!r}."
        ) from None
    if not (size >= 1 and height >= 1 and width >= 1 and top >= 0 and left >= 0) or not (
        top + height <= size and left + width <= size
    ):
        raise ValueError(
            f"window {tuple(window)} does not lie inside the {size} x {size} padded input."
        )
    return size, top, left, height, width


def heat_map(
    features,
    output_size: Sequence[int],
    criterion: str = DEFAULT_HEAT_MAP_CRITERION,
    score_kernel=None,
    score_bias=None,
    window: Sequence[int] | None = None,
) -> np.ndarray:
    """The paper's Fig. 5 heat map: where the fused feature map responds for the expression.

    Section 4.4 (after RRN, Li et al. 2018): "normalizing the strongest activated channel of the
    last feature map, which is upsampled to match with the size of original input image". The
    last feature map is the fused map Y of Eq. 5, before the score convolution. Here
    (docs/design.md, "Fig. 5: heat maps"):

    1. by default ("weighted") every channel, weighted by the score convolution: the sum over
       channels of `score_contributions`, i.e. the logit map before the bias, so that hot means
       "this is where the features say: the referent". The other criteria pick one channel with
       `strongest_channel(features, criterion, ...)`; with "score" the map shown is that
       channel's contribution to the logit (hot still means "towards the referent", whatever the
       sign of its weights), with "correlation", "mean" or "max" the channel's activation;
    2. the map is bilinearly resized to `output_size` (`resize_bilinear`); with `window` it is
       first resized to the padded model input, the pad cropped and the rest resized, as the
       predictions are (docs/design.md, "Preprocessing and the map back");
    3. the result is min-max normalised to [0, 1]; a constant map gives all zeros.

    It needs only what inference gives (no ground truth).

    Args:
        features: [h, w, C], e.g. `model(..., return_attention=True)["features"][i]`.
        output_size: (H, W) of the image.
        criterion: one of `HEAT_MAP_CRITERIA`, see above.
        score_kernel: the score convolution's kernel [k, k, C, 1] (`score_weights(model)`);
            needed by "weighted", "score" and "correlation".
        score_bias: its bias [1].
        window: optional (input_size, pad_top, pad_left, resized_height, resized_width): where the
            image lies in the padded square model input (`resize_and_pad_info`); None when the
            features cover exactly the image (square images, or no padding).

    Returns:
        float32 [H, W] in [0, 1].

    Example:
        >>> kernel, bias = score_weights(model)
        >>> heat = heat_map(outputs["features"][0], image.shape[:2], score_kernel=kernel,
        ...                 score_bias=bias)
    """
    features = _check_features(features)
    _check_criterion(criterion, score_kernel)
    output_size = _check_size(output_size)
    if criterion == "weighted":
        values = score_contributions(features, score_kernel).sum(axis=-1)  # [h, w]
    else:
        channel = strongest_channel(features, criterion, score_kernel, score_bias)
        if criterion == "score":
            values = score_contributions(features, score_kernel)[..., channel]  # [h, w]
        else:
            values = features[..., channel]  # [h, w]
    if window is None:
        heat = resize_bilinear(values, output_size)  # [h, w] -> [H, W]
    else:
        size, top, left, height, width = _check_window(window)
        padded = resize_bilinear(values, (size, size))  # [S, S]
        heat = resize_bilinear(padded[top : top + height, left : left + width], output_size)
    low, high = heat.min(), heat.max()
    if high - low <= 0.0:
        return np.zeros(heat.shape, np.float32)
    return ((heat - low) / (high - low)).astype(np.float32)


def _colormap(colormap):
    try:
        return matplotlib.colormaps[colormap]
    except KeyError:
        raise ValueError(f"colormap {colormap!r} is not a matplotlib colormap.") from None


def _check_heat(heat, shape):
    heat = as_map(heat, "heat", shape).astype(np.float64)
    if heat.min() < -1e-6 or heat.max() > 1.0 + 1e-6:
        raise ValueError(
            f"heat must be in [0, 1], got values in [{heat.min():.4g}, {heat.max():.4g}]; "
            "normalise it (e.g. with `heat_map`)."
        )
    return np.clip(heat, 0.0, 1.0)


def heat_map_overlay(image_rgb_uint8, heat, alpha=0.5, colormap="jet") -> np.ndarray:
    """Blends a colour-mapped heat map over an image: `(1 - alpha) * image + alpha * cmap(heat)`.

    Args:
        image_rgb_uint8: uint8 RGB image [H, W, 3].
        heat: [H, W] (or [H, W, 1]) values in [0, 1], e.g. from `heat_map`.
        alpha: heat-map opacity in [0, 1].
        colormap: a matplotlib colormap name ("jet" as in the paper's figure, "viridis", ...).

    Returns:
        uint8 [H, W, 3].
    """
    image = as_image(image_rgb_uint8, "image_rgb_uint8")
    heat = _check_heat(heat, image.shape[:2])
    alpha = check_alpha(alpha)
    colors = _colormap(colormap)(heat)[..., :3] * 255.0  # [H, W, 4] -> [H, W, 3]
    return blend(image, colors.astype(np.float32), alpha)


def heat_map_figure(
    image_rgb_uint8,
    heat,
    expression,
    iou: float | None = None,
    alpha: float = 0.5,
    colormap: str = "jet",
    panel_inches: float = 3.0,
    dpi: int = 100,
) -> matplotlib.figure.Figure:
    """The paper's Fig. 5 panel: "input | heat map over the input", a colour bar, the expression.

    The second panel is `heat_map_overlay(image, heat, alpha, colormap)`; the colour bar beside it
    maps the colours to the normalised activation, 0 (coldest) to 1 (hottest). The figure's title
    (`fig._suptitle`) is `expression_title(expression, iou)`.

    Args:
        image_rgb_uint8: uint8 RGB image [H, W, 3].
        heat: [H, W] values in [0, 1] (`heat_map`).
        expression: the referring expression (str, or UTF-8 bytes as read from TFRecords).
        iou: optional IoU of the model's prediction for this expression, added to the title.
        alpha: heat-map opacity in [0, 1].
        colormap: a matplotlib colormap name.
        panel_inches: width of each image panel in inches.
        dpi: rendering resolution.

    Returns:
        a `matplotlib.figure.Figure` on its own Agg canvas: axes 0 the input, axes 1 the heat map,
        axes 2 the colour bar. `heat_map_image` renders it.

    Example:
        >>> fig = heat_map_figure(rgb, heat, "the big blue triangle", iou=0.81)
        >>> save_png("heat.png", figure_to_array(fig))
    """
    image = as_image(image_rgb_uint8, "image_rgb_uint8")
    overlay = heat_map_overlay(image, heat, alpha, colormap)
    cmap = _colormap(colormap)
    if panel_inches <= 0 or dpi <= 0:
        raise ValueError(f"panel_inches and dpi must be positive, got {panel_inches} and {dpi}.")
    height, width = image.shape[:2]
    total_inches = 2 * panel_inches + 0.8  # two panels and the colour bar
    title = expression_title(expression, iou, line_width=max(20, int(total_inches * 11)))
    title_inches = 0.25 * (title.count("\n") + 1) + 0.45
    fig = new_figure((total_inches, panel_inches * height / width + title_inches), dpi)
    axes = fig.subplots(1, 2, squeeze=True)
    for ax, (name, picture) in zip(axes, (("input", image), ("heat map", overlay))):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0.0, 1.0), cmap=cmap)
    bar = fig.colorbar(scale, ax=axes[1], fraction=0.05, pad=0.03)
    bar.set_label("normalised activation", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def heat_map_image(image_rgb_uint8, heat, expression, iou=None, **kwargs) -> np.ndarray:
    """`heat_map_figure` rendered to a uint8 RGB array [h, w, 3] (same arguments)."""
    return figure_to_array(heat_map_figure(image_rgb_uint8, heat, expression, iou, **kwargs))


def hotter_inside(heat, mask) -> bool:
    """Whether a heat map is hotter on average inside a mask than outside it.

    Args:
        heat: [H, W] numbers.
        mask: boolean [H, W] (e.g. the ground-truth mask); it must have pixels on both sides.

    Returns:
        `mean(heat[mask]) > mean(heat[~mask])`.
    """
    heat = as_map(heat, "heat").astype(np.float64)
    mask = as_map(mask, "mask", heat.shape)
    if mask.dtype != bool:
        raise ValueError(f"mask must be boolean, got dtype {mask.dtype}.")
    if mask.all() or not mask.any():
        raise ValueError("mask must have pixels both inside and outside it.")
    return bool(heat[mask].mean() > heat[~mask].mean())


def share_hotter_inside(heats, masks) -> float:
    """The share of (heat map, mask) pairs for which `hotter_inside` holds, in [0, 1].

    Args:
        heats: iterable of [H_i, W_i] heat maps.
        masks: iterable of boolean [H_i, W_i] masks, as many as `heats`.
    """
    heats, masks = list(heats), list(masks)
    if len(heats) != len(masks):
        raise ValueError(f"got {len(heats)} heat maps but {len(masks)} masks.")
    if not heats:
        raise ValueError("heats must hold at least one heat map.")
    return float(np.mean([hotter_inside(h, m) for h, m in zip(heats, masks)]))
