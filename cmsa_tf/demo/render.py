"""The web demo's pictures: an export's answer (`saved_model_predictor.split_outputs`) as images.

All drawing is `cmsa_tf.visualize`'s: `overlay_mask` (one colour per expression), the Fig. 4
matrix (`word_attention_image`) and the Fig. 5 panel (`heat_map` + `heat_map_image`) built from the
export's `fused_scores` and `level_scores` (docs/serving.md, "Response").
"""

from __future__ import annotations

import numpy as np

from cmsa_tf import visualize

# One colour per expression, in order (RGB); the demo takes at most this many expressions at once.
COLOURS = (
    (230, 25, 75),
    (0, 130, 200),
    (60, 180, 75),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (255, 225, 25),
)
COLOUR_NAMES = ("red", "blue", "green", "orange", "purple", "cyan", "magenta", "yellow")
FUSED_NAME = "fused (Fig. 5)"
# A one-channel map with a 1 x 1 unit kernel is its own "weighted" score contribution, so
# `visualize.heat_map` resizes, crops and normalises an exported score map unchanged.
_UNIT_KERNEL = np.ones((1, 1, 1, 1))


def colour(index: int) -> tuple[int, int, int]:
    """The colour of expression `index` (0-based)."""
    if not 0 <= index < len(COLOURS):
        raise ValueError(f"index must be in [0, {len(COLOURS)}), got {index}.")
    return COLOURS[index]


def binary_mask(item: dict, threshold: float, default_threshold: float) -> np.ndarray:
    """bool [H, W]: the export's own `mask` at its threshold, else `probabilities >= threshold`."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}.")
    if abs(float(threshold) - float(default_threshold)) < 1e-9:
        return item["mask"].astype(bool)
    return item["probabilities"] >= float(threshold)


def overlay(image: np.ndarray, masks, alpha: float = 0.45) -> np.ndarray:
    """uint8 [H, W, 3]: each mask tinted and outlined in its own colour (`colour(i)`), in order."""
    out = np.asarray(image)
    for index, mask in enumerate(masks):
        out = visualize.overlay_mask(out, mask, color=colour(index), alpha=alpha, contour_width=2)
    return out


def mask_image(mask: np.ndarray) -> np.ndarray:
    """uint8 [H, W]: 255 on the referred region, 0 elsewhere (as cmsa-predict's `_mask.png`)."""
    return np.asarray(mask, bool).astype(np.uint8) * 255


def level_names(item: dict) -> list[str]:
    """The names of the rows of `word_attention` (the export's, or "level i")."""
    names = item.get("level_names")
    return list(names) if names else [f"level {i}" for i in range(len(item["word_attention"]))]


def attention_image(item: dict, expression: str) -> np.ndarray:
    """The paper's Fig. 4 matrix of one expression: each level's attention to each word read."""
    tokens = item["tokens"]
    return visualize.word_attention_image(
        tokens, item["word_attention"][:, : len(tokens)], level_names(item), title=expression
    )


def stack(pictures, gap: int = 8) -> np.ndarray:
    """uint8 RGB pictures one below the other on white, left-aligned, `gap` pixels apart."""
    pictures = [np.asarray(p) for p in pictures]
    if not pictures:
        raise ValueError("stack needs at least one picture.")
    width = max(p.shape[1] for p in pictures)
    height = sum(p.shape[0] for p in pictures) + gap * (len(pictures) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    top = 0
    for picture in pictures:
        out[top : top + picture.shape[0], : picture.shape[1]] = picture
        top += picture.shape[0] + gap
    return out


def heat_maps(item: dict, image_height: int, image_width: int) -> list[tuple[str, np.ndarray]]:
    """`[(name, heat [H, W] in [0, 1])]`: the fused map (Fig. 5), then one per level.

    Empty for exports without `fused_scores` / `level_scores`.
    """
    if "fused_scores" not in item or "window" not in item:
        return []
    maps = [(FUSED_NAME, item["fused_scores"])]
    maps += list(zip(level_names(item), item.get("level_scores", [])))
    size = (int(image_height), int(image_width))
    return [
        (
            name,
            visualize.heat_map(
                np.asarray(scores)[..., None],
                size,
                score_kernel=_UNIT_KERNEL,
                window=item["window"],
            ),
        )
        for name, scores in maps
    ]


def heat_map_images(item: dict, image: np.ndarray, expression: str) -> list[tuple[np.ndarray, str]]:
    """The Fig. 5 panels of one expression (`visualize.heat_map_image`), with their captions."""
    panels = []
    for name, heat in heat_maps(item, *image.shape[:2]):
        picture = visualize.heat_map_image(image, heat, expression, panel_inches=2.4, dpi=80)
        panels.append((picture, f"{name}: {expression}"))
    return panels
