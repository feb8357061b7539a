"""The paper's Fig. 5 heat maps: a feature map's strongest channel, upsampled, over the image."""

import matplotlib
import numpy as np

from cmsa_tf.visualize.common import as_image, as_map, blend, check_alpha

HEAT_MAP_CRITERIA = ("mean", "max")


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
    """The paper's Fig. 5 heat map: a feature map's strongest channel, upsampled and normalised.

    Section 4.4 (after RRN, Li et al. 2018): "normalizing the strongest activated channel of the
    last feature map, which is upsampled to match with the size of original input image". Here:

    1. the strongest channel is the one with the largest spatial mean activation
       (`criterion="mean"`, the default; it reflects how much of the image a channel responds to,
       and a single outlier pixel cannot pick it), or the largest single activation
       (`criterion="max"`);
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
    heat = as_map(heat, "heat", image.shape[:2]).astype(np.float64)
    if heat.min() < -1e-6 or heat.max() > 1.0 + 1e-6:
        raise ValueError(
            f"heat must be in [0, 1], got values in [{heat.min():.4g}, {heat.max():.4g}]; "
            "normalise it (e.g. with `heat_map`)."
        )
    alpha = check_alpha(alpha)
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise ValueError(f"colormap {colormap!r} is not a matplotlib colormap.") from None
    colors = cmap(np.clip(heat, 0.0, 1.0))[..., :3] * 255.0  # [H, W, 4] -> [H, W, 3]
    return blend(image, colors.astype(np.float32), alpha)
