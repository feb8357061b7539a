"""Figures on their own Agg canvas, rendering them to pixels, and writing PNGs.

Figures are built with the object-oriented API (`matplotlib.figure.Figure`) and rendered with the
Agg canvas (`FigureCanvasAgg`), so no window ever opens and the global pyplot backend is left alone
(a notebook keeps its inline backend).
"""

import pathlib
import sys

import matplotlib.figure
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image


def new_figure(figsize, dpi, layout="constrained"):
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
            f"array_uint8 must have shape [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], "
            f"got {array.shape}."
        )
    if 0 in array.shape:
        raise ValueError(f"array_uint8 must not be empty, got shape {array.shape}.")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")
    return path
