"""Scene sampling: 2-6 objects, at least two of one shape, each at least 60% visible."""

import math

import numpy as np

from cmsa_tf.data.shapes.constants import COLORS, SHAPES, SIZES
from cmsa_tf.data.shapes.language import expressions_for_object
from cmsa_tf.data.shapes.render import EXTENT, background, paint_object, shape_mask

MIN_OBJECTS = 2
MAX_OBJECTS = 6
MIN_VISIBLE_FRACTION = 0.6

# Object scale (circle radius) as a fraction of the image size.
_SCALE_RANGE = {"big": (0.12, 0.14), "small": (0.065, 0.078)}


def _visible_masks(full_masks):
    """Visible part of each object, drawn in order (later objects on top)."""
    visible = []
    covered = np.zeros_like(full_masks[0])
    for mask in reversed(full_masks):
        visible.append(mask & ~covered)
        covered |= mask
    return visible[::-1]


def _sample_scene(rng, image_size):
    """Objects (drawing order) and their visible masks."""
    while True:
        count = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
        repeated = SHAPES[int(rng.integers(len(SHAPES)))]
        others = [SHAPES[int(k)] for k in rng.integers(len(SHAPES), size=count - 2)]
        scene_shapes = [repeated, repeated] + others  # at least two objects of one shape
        scene_shapes = [scene_shapes[int(k)] for k in rng.permutation(count)]
        objects, full_masks = [], []
        for shape in scene_shapes:
            for _ in range(60):
                size = SIZES[int(rng.integers(2))]
                low, high = _SCALE_RANGE[size]
                scale = float(rng.uniform(low, high)) * image_size
                reach = math.ceil(EXTENT[shape] * scale) + 1
                if shape == "star":
                    angle = float(rng.uniform(0.0, 2.0 * math.pi / 5))
                else:
                    angle = float(rng.uniform(-math.pi / 12, math.pi / 12))
                obj = {
                    "shape": shape,
                    "color": list(COLORS)[int(rng.integers(len(COLORS)))],
                    "size": size,
                    "x": int(rng.integers(reach, image_size - reach)),
                    "y": int(rng.integers(reach, image_size - reach)),
                    "scale": round(scale, 3),
                    "angle": round(angle, 4),
                }
                mask = shape_mask(obj, image_size)
                if not mask.any():
                    continue
                visible = _visible_masks(full_masks + [mask])
                masks = full_masks + [mask]
                if all(v.sum() >= MIN_VISIBLE_FRACTION * m.sum() for v, m in zip(visible, masks)):
                    objects.append(obj)
                    full_masks.append(mask)
                    break
            else:
                break  # no room for this shape: start a new scene.
        if len(objects) == count:
            return objects, full_masks, _visible_masks(full_masks)


def generate_scene(
    rng: np.random.Generator, image_size: int, margin_fraction: float = 0.06
) -> dict:
    """One ShapesRef image with its objects and expressions.

    Args:
        rng: a `numpy.random.Generator`.
        image_size: image side in pixels.
        margin_fraction: the geometric tolerance as a fraction of `image_size`.

    Returns:
        A dict with `image` (uint8 [S, S, 3]), `objects` (list of dicts: shape, color, size, x, y,
        scale, angle), `masks` (bool [N, S, S], visible pixels), `full_masks` (bool [N, S, S],
        before occlusion) and `expressions` (for each object a list of (spec, sentence)).
    """
    objects, full, visible = _sample_scene(rng, image_size)
    image = background(rng, image_size)
    for obj, mask in zip(objects, visible):
        paint_object(image, mask, obj, rng)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)  # [S, S, 3]
    margin = margin_fraction * image_size
    expressions = [
        expressions_for_object(objects, t, rng, image_size, margin) for t in range(len(objects))
    ]
    return {
        "image": image,
        "objects": objects,
        "masks": np.stack(visible),
        "full_masks": np.stack(full),
        "expressions": expressions,
    }
