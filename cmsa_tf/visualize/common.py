"""Input checks and pixel blending shared by the drawing modules of `cmsa_tf.visualize`."""

import textwrap

import numpy as np


def as_image(image, name="image"):
    """Checks an RGB uint8 image [H, W, 3] and returns it as a NumPy array."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"{name} must be an RGB image of shape [H, W, 3], got shape {image.shape}."
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"{name} must have dtype uint8 (pixels in [0, 255]), got {image.dtype}; "
            "use `to_uint8_rgb` to convert a normalised pipeline image."
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {image.shape}.")
    return image


def as_map(values, name, shape=None):
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


def as_color(color, name="color"):
    color = np.asarray(color)
    if color.shape != (3,) or not np.all((color >= 0) & (color <= 255)):
        raise ValueError(f"{name} must be three values (R, G, B) in [0, 255], got {color!r}.")
    return color.astype(np.float32)


def check_alpha(alpha):
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    return float(alpha)


def binarize_mask(mask, threshold):
    """Boolean masks stay as they are; numbers are foreground where `>= threshold` (as in the
    pipeline)."""
    if mask.dtype == bool:
        return mask
    return mask >= threshold


def blend(image, color, alpha, where=None):
    """`(1 - alpha) * image + alpha * color`, rounded to uint8, at `where` (everywhere if None)."""
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * color  # [H, W, 3]
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if where is None:
        return blended
    out = image.copy()
    out[where] = blended[where]
    return out


def expression_title(expression, iou=None, line_width=60):
    """A figure title: the expression in quotes, wrapped at `line_width`, then "IoU = 0.xxx".

    Args:
        expression: the referring expression (str, or UTF-8 bytes as read from TFRecords).
        iou: optional IoU of the prediction, appended (on the last line when it fits).
        line_width: characters a line.

    Returns:
        str, lines joined by "\\n"; `"(empty expression)"` for an empty one.

    Example:
        >>> expression_title("man on the left", 0.75)
        '"man on the left"  IoU = 0.750'
    """
    if isinstance(expression, bytes):
        expression = expression.decode("utf-8")
    if not isinstance(expression, str):
        raise ValueError(f"expression must be a str, got {type(expression).__name__}.")
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
    return "\n".join(lines)
