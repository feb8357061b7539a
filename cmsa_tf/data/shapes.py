"""ShapesRef: a procedurally generated referring-segmentation benchmark in REFER format.

Each image shows 2-6 flat shapes (circle, square, triangle, star, cross) in 5 colours and 2 sizes
on a textured background (gradient, stripes, checkers or blotches, plus pixel noise). Later shapes
partially occlude earlier ones, but every object keeps at least 60% of its area visible, and every
image holds at least two objects of one shape (same-category distractors, as in RefCOCO).

Expressions come in four kinds:

- `attribute`: "the big red circle", "blue star".
- `location` (absolute, image halves): "triangle on the left", "top square",
  "the bottom right circle".
- `ordinal`: "second circle from the right", "leftmost square", "the first star from the top".
- `relation`: "the square left of the blue star", "circle above the green triangle".

Geometry. An object's position is the centre (x, y) it was drawn around (pixels, y down), and
`m = margin_fraction * image_size` is a tolerance. Every predicate has a strict and a lenient
reading, the strict one implying the plain one (margin 0), which implies the lenient one:

- in the left half: strict `x <= S/2 - m`, lenient `x < S/2 + m` (right, top, bottom alike);
- `a` left of `b`: strict `x_b - x_a >= max(m, |y_b - y_a|)` (clearly left and more to the side
  than above or below), lenient `x_a < x_b + m` (not clearly right); above, below, right alike;
- rank `k` from the left among candidates: with `lo` the number of other candidates clearly
  before it (`x_o <= x - m`) and `hi` those possibly before it (`x_o < x + m`), strict
  `lo == hi == k - 1`, lenient `lo <= k - 1 <= hi`.

`matching_objects` is the semantic checker: given a scene's objects and an expression spec it
returns the indices of the objects the expression can refer to under either reading. The
generator keeps an expression only if the lenient reading matches exactly the target and the
strict reading matches it too, so any reading in between (the plain one, or the plain one after
moving every centre by less than m/2) names exactly that object. Location, ordinal and relation
expressions are generated only when at least two objects fit the target's description, so the
spatial part is needed.

Files written (a REFER root; images under `<output_dir>/images`):

    <output_dir>/images/shapes_<split>_<index>.jpg
    <output_dir>/shapes/instances.json     COCO format, exact RLE masks of the visible pixels
    <output_dir>/shapes/refs(shapes).p     pickle protocol 2, plain dicts / lists / str / int
    <output_dir>/shapes/scenes.json        objects (shape, colour, size, centre) and expression
                                           specs, for inspection and tests
    <output_dir>/shapes/summary.json       counts per split and kind

Splits are by image: train and val images give train and val refs; test images give `testA`
refs (attribute expressions) and `testB` refs (location, ordinal and relation expressions).
Everything is deterministic from the seed; image `i` of a split uses its own seed, so the files
do not depend on the number of workers.

Usage:
    python -m cmsa_tf.data.shapes --output_dir=data/shapes_ref
"""

import io
import json
import math
import multiprocessing
import os
import pickle
import re
import time

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

DATASET = "shapes"
SPLIT_BY = "shapes"

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLORS = {
    "red": (205, 35, 35),
    "green": (30, 160, 55),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 25),
    "purple": (145, 50, 180),
}
SIZES = ("big", "small")
KINDS = ("attribute", "location", "ordinal", "relation")
SPLITS = ("train", "val", "testA", "testB")
IMAGE_SPLITS = ("train", "val", "test")
DIRECTIONS = ("left", "right", "top", "bottom")
RELATIONS = ("left", "right", "above", "below")
CATEGORY_IDS = {shape: index + 1 for index, shape in enumerate(SHAPES)}

MIN_OBJECTS = 2
MAX_OBJECTS = 6
MIN_VISIBLE_FRACTION = 0.6
MAX_WORDS = 10  # configs/shapes.py keeps 10 words; no expression is longer.
MAX_RANK = 3
JPEG_QUALITY = 92

# Object scale (circle radius) as a fraction of the image size.
_SCALE_RANGE = {"big": (0.12, 0.14), "small": (0.065, 0.078)}
# Farthest point of each shape from its centre, in units of the scale.
_EXTENT = {"circle": 1.0, "square": 0.89 * math.sqrt(2.0), "triangle": 1.5, "star": 1.4,
           "cross": math.hypot(1.2, 0.42)}

_SIZE_WORDS = {"big": ("big", "large"), "small": ("small", "little")}
_EXTREME_WORDS = {"left": ("leftmost",), "right": ("rightmost",), "top": ("topmost", "highest"),
                  "bottom": ("bottommost", "lowest")}
_RANK_WORDS = {1: "first", 2: "second", 3: "third"}
_RELATION_WORDS = {"left": ("left of", "to the left of"), "right": ("right of", "to the right of"),
                   "above": ("above",), "below": ("below", "under")}

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_CHUNK_SIZE = 32


# ----------------------------------------------------------------------------------------------
# Semantic checker.


def _check_description(description, name):
    if not isinstance(description, dict):
        raise ValueError(f"{name} must be a dict with keys shape/color/size, got {description!r}.")
    if description.get("shape") not in SHAPES:
        raise ValueError(f"{name}['shape'] must be one of {SHAPES}, got {description.get('shape')!r}.")
    if description.get("color") not in (None, *COLORS):
        raise ValueError(
            f"{name}['color'] must be None or one of {tuple(COLORS)}, got {description['color']!r}.")
    if description.get("size") not in (None, *SIZES):
        raise ValueError(f"{name}['size'] must be None or one of {SIZES}, got {description['size']!r}.")


def _fits(obj, description):
    return (obj["shape"] == description["shape"]
            and description.get("color") in (None, obj["color"])
            and description.get("size") in (None, obj["size"]))


def _candidates(objects, description):
    return [i for i, obj in enumerate(objects) if _fits(obj, description)]


def _in_half(obj, direction, image_size, margin, strict):
    """Whether `obj` lies in the `direction` half of the image."""
    half = image_size / 2.0
    value = obj["x"] if direction in ("left", "right") else obj["y"]
    if direction in ("right", "bottom"):
        value = 2.0 * half - value  # mirror so that the test is always "small coordinate".
    return value <= half - margin if strict else value < half + margin


def _before(a, b, direction, margin, strict):
    """Whether `a` comes before `b` when counting from `direction` (leftmost first for 'left')."""
    key = {"left": ("x", 1.0), "right": ("x", -1.0), "top": ("y", 1.0), "bottom": ("y", -1.0)}
    axis, sign = key[direction]
    gap = sign * (b[axis] - a[axis])  # > 0 when a is before b.
    return gap >= margin if strict else gap > -margin


def _related(a, b, relation, margin, strict):
    """Whether `a` is `relation` (left / right / above / below) of `b`."""
    direction = {"left": "left", "right": "right", "above": "top", "below": "bottom"}[relation]
    if not strict:
        return _before(a, b, direction, margin, strict=False)
    dx, dy = b["x"] - a["x"], b["y"] - a["y"]
    along, across = (dx, dy) if relation in ("left", "right") else (dy, dx)
    if relation in ("right", "below"):
        along = -along
    return along >= max(margin, abs(across))


def matching_objects(objects, spec, *, image_size, margin, strict):
    """Returns the sorted indices of the objects that `spec` can refer to.

    Args:
        objects: sequence of dicts with keys `shape`, `color`, `size`, `x`, `y` (centre, pixels).
        spec: an expression spec, a dict with `kind` in `KINDS` and `target` (a description:
            dict with `shape` and optional `color`, `size`), plus `horizontal` / `vertical`
            (location), `direction` / `rank` (ordinal) or `relation` / `anchor` (relation).
        image_size: the image side in pixels (for the image halves).
        margin: the tolerance in pixels (> 0).
        strict: the strict reading if True, the lenient one otherwise (see the module docstring).

    Returns:
        A sorted list of object indices.
    """
    if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
        raise ValueError(f"spec must be a dict with 'kind' in {KINDS}, got {spec!r}.")
    if not margin > 0:
        raise ValueError(f"margin must be > 0 (pixels), got {margin!r}.")
    _check_description(spec.get("target"), "spec['target']")
    kind = spec["kind"]
    candidates = _candidates(objects, spec["target"])
    if kind == "attribute":
        return candidates
    if kind == "location":
        directions = [d for d in (spec.get("horizontal"), spec.get("vertical")) if d is not None]
        if spec.get("horizontal") not in (None, "left", "right") or spec.get("vertical") not in (
                None, "top", "bottom") or not directions:
            raise ValueError("A location spec needs horizontal in (None, 'left', 'right') and "
                             f"vertical in (None, 'top', 'bottom'), not both None; got {spec!r}.")
        return [i for i in candidates
                if all(_in_half(objects[i], d, image_size, margin, strict) for d in directions)]
    if kind == "ordinal":
        direction, rank = spec.get("direction"), spec.get("rank")
        if direction not in DIRECTIONS or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"An ordinal spec needs direction in {DIRECTIONS} and an integer "
                             f"rank >= 1; got {spec!r}.")
        matches = []
        for i in candidates:
            others = [objects[j] for j in candidates if j != i]
            lo = sum(_before(o, objects[i], direction, margin, strict=True) for o in others)
            hi = sum(_before(o, objects[i], direction, margin, strict=False) for o in others)
            if (lo == hi == rank - 1) if strict else (lo <= rank - 1 <= hi):
                matches.append(i)
        return matches
    # kind == "relation"
    relation = spec.get("relation")
    if relation not in RELATIONS:
        raise ValueError(f"A relation spec needs relation in {RELATIONS}; got {spec!r}.")
    _check_description(spec.get("anchor"), "spec['anchor']")
    anchors = _candidates(objects, spec["anchor"])
    if len(anchors) != 1:
        # The anchor description must itself name one object; otherwise nothing is named.
        return [] if strict else candidates
    anchor = anchors[0]
    return [i for i in candidates
            if i != anchor and _related(objects[i], objects[anchor], relation, margin, strict)]


def is_unambiguous(objects, spec, target, *, image_size, margin):
    """True if `spec` names exactly object `target` under the strict and the lenient readings."""
    kwargs = dict(image_size=image_size, margin=margin)
    return (matching_objects(objects, spec, strict=False, **kwargs) == [target]
            and matching_objects(objects, spec, strict=True, **kwargs) == [target])


# ----------------------------------------------------------------------------------------------
# Expression text.


def _description_words(description, rng):
    words = []
    if description.get("size"):
        words.append(_choice(rng, _SIZE_WORDS[description["size"]]))
    if description.get("color"):
        words.append(description["color"])
    words.append(description["shape"])
    return words


def _choice(rng, options):
    return options[int(rng.integers(len(options)))]


def describe(spec, rng, compact=False):
    """Renders an expression spec as a lower-case sentence.

    Args:
        spec: an expression spec (see `matching_objects`).
        rng: a `numpy.random.Generator` choosing among phrasings.
        compact: if True, leave out optional words ("the", "to the").

    Returns:
        The sentence, words separated by single spaces.
    """
    kind = spec["kind"]
    article = [] if compact or rng.random() < 0.5 else ["the"]
    target = _description_words(spec["target"], rng)
    if kind == "attribute":
        words = article + target
    elif kind == "location":
        horizontal, vertical = spec.get("horizontal"), spec.get("vertical")
        prefix = rng.random() < 0.5
        if horizontal and vertical:
            region, preposition = [vertical, horizontal], "in"
        elif horizontal:
            region, preposition = [horizontal], "on"
        else:
            region, preposition = [vertical], "at"
        if prefix:  # "the top left circle"
            words = article + region + target
        else:  # "the circle in the top left"
            words = article + target + [preposition, "the"] + region
    elif kind == "ordinal":
        direction, rank = spec["direction"], spec["rank"]
        if rank == 1 and rng.random() < 0.6:
            words = article + [_choice(rng, _EXTREME_WORDS[direction])] + target
        else:
            words = article + [_RANK_WORDS[rank]] + target + ["from", "the", direction]
    else:
        phrases = _RELATION_WORDS[spec["relation"]]
        phrase = phrases[0] if compact else _choice(rng, phrases)
        words = (article + target + phrase.split() + ["the"]
                 + _description_words(spec["anchor"], rng))
    return " ".join(words)


# ----------------------------------------------------------------------------------------------
# Scene rendering.


def _shape_points(shape, x, y, scale, angle):
    """Polygon vertices (list of (x, y)) of a shape; None for a circle."""
    if shape == "circle":
        return None
    if shape == "square":
        radius = 0.89 * scale * math.sqrt(2.0)
        polar = [(radius, angle + math.pi / 4 + k * math.pi / 2) for k in range(4)]
    elif shape == "triangle":
        polar = [(1.5 * scale, angle - math.pi / 2 + k * 2 * math.pi / 3) for k in range(3)]
    elif shape == "star":
        polar = [(1.4 * scale if k % 2 == 0 else 0.77 * scale, angle - math.pi / 2 + k * math.pi / 5)
                 for k in range(10)]
    elif shape == "cross":
        arm, half_width = 1.2 * scale, 0.42 * scale
        corners = [(half_width, arm), (half_width, half_width), (arm, half_width)]
        points = []
        for quarter in range(4):  # the three corners of one arm, turned by 0, -90, -180, -270 deg.
            c, s = math.cos(-quarter * math.pi / 2), math.sin(-quarter * math.pi / 2)
            points.extend((px * c - py * s, px * s + py * c) for px, py in corners)
        polar = [(math.hypot(px, py), math.atan2(py, px) + angle) for px, py in points]
    else:
        raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")
    return [(x + r * math.cos(a), y + r * math.sin(a)) for r, a in polar]


def _shape_mask(obj, image_size):
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    points = _shape_points(obj["shape"], obj["x"], obj["y"], obj["scale"], obj["angle"])
    if points is None:
        r = obj["scale"]
        draw.ellipse([obj["x"] - r, obj["y"] - r, obj["x"] + r, obj["y"] + r], fill=1)
    else:
        draw.polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)  # [S, S]


def _muted_color(rng):
    gray = rng.uniform(70.0, 200.0)
    return gray + rng.uniform(-18.0, 18.0, size=3)


def _background(rng, image_size):
    """A textured, low-saturation background, float [S, S, 3] in about [0, 255]."""
    s = image_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s  # [S, S] each
    c0 = _muted_color(rng)
    c1 = np.clip(c0 + rng.uniform(-45.0, 45.0) + rng.uniform(-12.0, 12.0, size=3), 40.0, 230.0)
    texture = int(rng.integers(4))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    if texture == 0:  # linear gradient
        t = (along - along.min()) / max(float(along.max() - along.min()), 1e-6)
    elif texture == 1:  # soft stripes
        period = rng.uniform(0.06, 0.2)
        t = 0.5 + 0.5 * np.sin(2.0 * math.pi * along / period + rng.uniform(0.0, 2.0 * math.pi))
    elif texture == 2:  # checkers
        cells = int(rng.integers(4, 11))
        t = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2).astype(np.float32)
    else:  # smooth blotches: a coarse random grid upsampled bicubically
        grid = int(rng.integers(3, 7))
        coarse = (rng.random((grid, grid)) * 255.0).astype(np.uint8)
        t = np.asarray(Image.fromarray(coarse).resize((s, s), Image.BICUBIC), np.float32) / 255.0
    image = c0 + t[:, :, None] * (c1 - c0)  # [S, S, 3]
    return image + rng.normal(0.0, rng.uniform(2.0, 7.0), size=image.shape)


def _paint_object(image, mask, obj, rng):
    """Paints the visible pixels of `obj` in its colour, with a slight shading and noise."""
    base = np.asarray(COLORS[obj["color"]], np.float32) + rng.uniform(-14.0, 14.0, size=3)
    yy, xx = np.nonzero(mask)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    shade = 1.0 + 0.12 * ((xx - obj["x"]) * math.cos(angle) + (yy - obj["y"]) * math.sin(angle)) / (
        _EXTENT[obj["shape"]] * obj["scale"])
    colors = base[None, :] * shade[:, None] + rng.normal(0.0, 4.0, size=(len(yy), 3))
    image[yy, xx] = colors


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
                reach = math.ceil(_EXTENT[shape] * scale) + 1
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
                mask = _shape_mask(obj, image_size)
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


# ----------------------------------------------------------------------------------------------
# Expression generation.


def _descriptions(obj, with_size=True):
    """All descriptions of `obj`: shape alone, with colour, with size, with both."""
    out = [{"shape": obj["shape"], "color": None, "size": None},
           {"shape": obj["shape"], "color": obj["color"], "size": None}]
    if with_size:
        out += [{"shape": obj["shape"], "color": None, "size": obj["size"]},
                {"shape": obj["shape"], "color": obj["color"], "size": obj["size"]}]
    return out


def _expressions_for_object(objects, target, rng, image_size, margin):
    """At most one expression of each kind for objects[target]: list of (spec, sentence)."""
    kwargs = dict(image_size=image_size, margin=margin)
    obj = objects[target]
    options = {kind: [] for kind in KINDS}
    for description in _descriptions(obj):
        spec = {"kind": "attribute", "target": description}
        if is_unambiguous(objects, spec, target, **kwargs):
            options["attribute"].append(spec)
    # Spatial kinds: the target description must fit at least two objects.
    spatial = [d for d in _descriptions(obj) if len(_candidates(objects, d)) >= 2]
    for description in spatial:
        count = len(_candidates(objects, description))
        for horizontal in (None, "left", "right"):
            for vertical in (None, "top", "bottom"):
                if horizontal is None and vertical is None:
                    continue
                spec = {"kind": "location", "target": description, "horizontal": horizontal,
                        "vertical": vertical}
                if is_unambiguous(objects, spec, target, **kwargs):
                    options["location"].append(spec)
        for direction in DIRECTIONS:
            for rank in range(1, min(MAX_RANK, count - 1) + 1):
                spec = {"kind": "ordinal", "target": description, "direction": direction,
                        "rank": rank}
                if is_unambiguous(objects, spec, target, **kwargs):
                    options["ordinal"].append(spec)
    # Relations: the anchor is named by its shortest unique attribute description.
    for anchor, anchor_obj in enumerate(objects):
        if anchor == target:
            continue
        anchor_descriptions = [
            d for d in _descriptions(anchor_obj)
            if is_unambiguous(objects, {"kind": "attribute", "target": d}, anchor, **kwargs)]
        if not anchor_descriptions:
            continue
        fewest = min(sum(v is not None for v in d.values()) for d in anchor_descriptions)
        shortest = [d for d in anchor_descriptions if sum(v is not None for v in d.values()) == fewest]
        anchor_description = shortest[int(rng.integers(len(shortest)))]
        for description in _descriptions(obj, with_size=False):
            others = [i for i in _candidates(objects, description) if i != anchor]
            if len(others) < 2:
                continue
            for relation in RELATIONS:
                spec = {"kind": "relation", "target": description, "relation": relation,
                        "anchor": anchor_description}
                if is_unambiguous(objects, spec, target, **kwargs):
                    options["relation"].append(spec)
    expressions = []
    for kind in KINDS:
        if options[kind]:
            spec = options[kind][int(rng.integers(len(options[kind])))]
            sentence = describe(spec, rng)
            if len(sentence.split()) > MAX_WORDS:
                sentence = describe(spec, rng, compact=True)
            expressions.append((spec, sentence))
    return expressions


def generate_scene(rng, image_size, margin_fraction=0.06):
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
    image = _background(rng, image_size)
    for obj, mask in zip(objects, visible):
        _paint_object(image, mask, obj, rng)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)  # [S, S, 3]
    margin = margin_fraction * image_size
    expressions = [_expressions_for_object(objects, t, rng, image_size, margin)
                   for t in range(len(objects))]
    return {"image": image, "objects": objects, "masks": np.stack(visible),
            "full_masks": np.stack(full), "expressions": expressions}


# ----------------------------------------------------------------------------------------------
# Files.


_FILE_PATTERN = re.compile(r"shapes_(train|val|test)_(\d{6})\.jpg")


def _file_name(split, index):
    return f"shapes_{split}_{index:06d}.jpg"


def _encode_jpeg(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


def _generate_chunk(task):
    """Worker: renders images [start, stop) of a split, writes them, returns their records."""
    split, start, stop, seed, image_size, margin_fraction, image_dir = task
    records = []
    for index in range(start, stop):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODES[split], index]))
        scene = generate_scene(rng, image_size, margin_fraction)
        file_name = _file_name(split, index)
        with open(os.path.join(image_dir, file_name), "wb") as f:
            f.write(_encode_jpeg(scene["image"]))
        objects = []
        for obj, mask, expressions in zip(scene["objects"], scene["masks"], scene["expressions"]):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            objects.append({
                **obj,
                "rle": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
                "area": int(mask.sum()),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "expressions": expressions,
            })
        records.append({"split": split, "index": index, "file_name": file_name,
                        "objects": objects})
    return records


def _write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _json_bytes(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def generate_shapes_ref(output_dir, *, num_train_images=2600, num_val_images=170,
                        num_test_images=400, image_size=160, seed=0, num_workers=2,
                        progress=True, margin_fraction=0.06, overwrite=True):
    """Generates ShapesRef as a REFER root under `output_dir`.

    With the defaults: about 24,000 train, 1,600 val, 1,450 testA and 2,250 testB expressions
    (about 15 s on 2 cores).

    Args:
        output_dir: folder to write `images/` and `shapes/` into (created if missing).
        num_train_images, num_val_images, num_test_images: images per split (train >= 1).
        image_size: image side in pixels (>= 32).
        seed: the random seed; the same seed gives byte-identical files.
        num_workers: processes rendering images (1: in this process).
        progress: show a tqdm progress bar.
        margin_fraction: geometric tolerance as a fraction of `image_size` (see module docstring).
        overwrite: if False, refuse to write over an existing `shapes/instances.json`.

    Returns:
        A summary dict: `images` (count per image split), `splits` (per split: `refs`,
        `expressions` and `kinds`, a count per expression kind), `objects`, `image_size`, `seed`.
    """
    _check_count("num_train_images", num_train_images, 1)
    _check_count("num_val_images", num_val_images, 0)
    _check_count("num_test_images", num_test_images, 0)
    _check_count("image_size", image_size, 32)
    _check_count("num_workers", num_workers, 1)
    if not 0.0 < margin_fraction < 0.25:
        raise ValueError(f"margin_fraction must be in (0, 0.25), got {margin_fraction!r}.")
    counts = {"train": int(num_train_images), "val": int(num_val_images),
              "test": int(num_test_images)}
    image_dir = os.path.join(output_dir, "images")
    ann_dir = os.path.join(output_dir, DATASET)
    instances_path = os.path.join(ann_dir, "instances.json")
    if os.path.exists(instances_path) and not overwrite:
        raise ValueError(f"output_dir {output_dir!r} already holds {instances_path}; pass "
                         "overwrite=True to replace it.")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    # Images of an earlier, larger run would linger: remove the ones this run does not write.
    for name in os.listdir(image_dir):
        match = _FILE_PATTERN.fullmatch(name)
        if match and int(match.group(2)) >= counts[match.group(1)]:
            os.remove(os.path.join(image_dir, name))

    tasks = []
    for split in IMAGE_SPLITS:
        for start in range(0, counts[split], _CHUNK_SIZE):
            stop = min(start + _CHUNK_SIZE, counts[split])
            tasks.append((split, start, stop, int(seed), int(image_size), float(margin_fraction),
                          image_dir))
    total = sum(counts.values())
    records = []
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel

    with tqdm(total=total, desc="ShapesRef", unit="img", disable=not progress) as bar:
        if num_workers == 1:
            for task in tasks:
                records.extend(_generate_chunk(task))
                bar.update(task[2] - task[1])
        else:
            context = multiprocessing.get_context("spawn")
            with context.Pool(min(num_workers, len(tasks))) as pool:
                for task, chunk in zip(tasks, pool.imap(_generate_chunk, tasks)):
                    records.extend(chunk)
                    bar.update(task[2] - task[1])

    images, annotations, refs, scenes = [], [], [], []
    splits = {s: {"refs": 0, "expressions": 0, "kinds": {k: 0 for k in KINDS}} for s in SPLITS}
    ann_id = ref_id = sent_id = 0
    for image_id, record in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": record["file_name"], "height": image_size,
                       "width": image_size})
        scene = {"image_id": image_id, "file_name": record["file_name"],
                 "split": record["split"], "objects": [], "expressions": []}
        for obj in record["objects"]:
            ann_id += 1
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": CATEGORY_IDS[obj["shape"]],
                "segmentation": obj["rle"], "area": obj["area"], "bbox": obj["bbox"],
                "iscrowd": 0,
            })
            scene["objects"].append({key: obj[key] for key in (
                "shape", "color", "size", "x", "y", "scale", "angle")} | {"ann_id": ann_id})
            groups = {}  # ref split -> [(spec, sentence)]
            for spec, sentence in obj["expressions"]:
                if record["split"] == "test":
                    ref_split = "testA" if spec["kind"] == "attribute" else "testB"
                else:
                    ref_split = record["split"]
                groups.setdefault(ref_split, []).append((spec, sentence))
            for ref_split in SPLITS:
                if ref_split not in groups:
                    continue
                ref_id += 1
                sentences = []
                for spec, sentence in groups[ref_split]:
                    sent_id += 1
                    sentences.append({"sent_id": sent_id, "raw": sentence, "sent": sentence,
                                      "tokens": sentence.split()})
                    scene["expressions"].append({"sent_id": sent_id, "ref_id": ref_id,
                                                 "ann_id": ann_id, "sent": sentence, "spec": spec})
                    splits[ref_split]["expressions"] += 1
                    splits[ref_split]["kinds"][spec["kind"]] += 1
                splits[ref_split]["refs"] += 1
                refs.append({
                    "ref_id": ref_id, "ann_id": ann_id, "image_id": image_id,
                    "category_id": CATEGORY_IDS[obj["shape"]], "split": ref_split,
                    "sentences": sentences, "sent_ids": [s["sent_id"] for s in sentences],
                })
        scenes.append(scene)

    categories = [{"id": CATEGORY_IDS[s], "name": s, "supercategory": "shape"} for s in SHAPES]
    instances = {"images": images, "annotations": annotations, "categories": categories}
    summary = {"images": counts, "objects": ann_id, "splits": splits, "image_size": image_size,
               "seed": seed}
    margin = margin_fraction * image_size
    _write_bytes(instances_path, _json_bytes(instances))
    # Pickle memoizes by object identity, which differs between worker counts: a JSON round trip
    # gives every value a fresh object, so equal refs always pickle to equal bytes.
    refs = json.loads(json.dumps(refs))
    _write_bytes(os.path.join(ann_dir, f"refs({SPLIT_BY}).p"), pickle.dumps(refs, protocol=2))
    _write_bytes(os.path.join(ann_dir, "scenes.json"), _json_bytes(
        {"image_size": image_size, "margin": margin, "images": scenes}))
    _write_bytes(os.path.join(ann_dir, "summary.json"), _json_bytes(summary))
    return summary


def _main(argv):
    from absl import flags  # pylint: disable=import-outside-toplevel

    from cmsa_tf.data import shapes  # pylint: disable=import-outside-toplevel

    del argv
    values = flags.FLAGS
    start = time.time()
    # Through the imported module, so that worker processes pickle its functions by name.
    summary = shapes.generate_shapes_ref(
        values.output_dir,
        num_train_images=values.num_train_images,
        num_val_images=values.num_val_images,
        num_test_images=values.num_test_images,
        image_size=values.image_size,
        seed=values.seed,
        num_workers=values.num_workers,
        progress=True,
    )
    print(json.dumps(summary, indent=2))
    print(f"ShapesRef written to {values.output_dir} in {time.time() - start:.1f} s")


def _define_flags():
    """Defines the command-line flags (only when run as a program, to keep imports flag-free)."""
    from absl import flags  # pylint: disable=import-outside-toplevel

    flags.DEFINE_string("output_dir", None, "Folder for images/ and shapes/.", required=True)
    flags.DEFINE_integer("num_train_images", 2600, "Training images.")
    flags.DEFINE_integer("num_val_images", 170, "Validation images.")
    flags.DEFINE_integer("num_test_images", 400, "Test images (testA and testB).")
    flags.DEFINE_integer("image_size", 160, "Image side in pixels.")
    flags.DEFINE_integer("seed", 0, "Random seed.")
    flags.DEFINE_integer("num_workers", 2, "Worker processes.")


if __name__ == "__main__":
    from absl import app  # pylint: disable=import-outside-toplevel

    _define_flags()
    app.run(_main)
