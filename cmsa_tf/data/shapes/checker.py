"""The semantic checker: which objects of a scene an expression spec can refer to.

Geometry: an object's position is the centre (x, y) it was drawn around (pixels, y down), and
`m` (`margin`) a tolerance in pixels. Every predicate has a strict and a lenient reading; see
`cmsa_tf.data.shapes` for the rules.
"""

from collections.abc import Sequence

from cmsa_tf.data.shapes.constants import COLORS, DIRECTIONS, KINDS, RELATIONS, SHAPES, SIZES


def _check_description(description, name):
    if not isinstance(description, dict):
        raise ValueError(f"{name} must be a dict with keys shape/color/size, got {description!r}.")
    if description.get("shape") not in SHAPES:
        raise ValueError(
            f"{name}['shape'] must be one of {SHAPES}, got {description.get('shape')!r}."
        )
    if description.get("color") not in (None, *COLORS):
        raise ValueError(
            f"{name}['color'] must be None or one of {tuple(COLORS)}, got {description['color']!r}."
        )
    if description.get("size") not in (None, *SIZES):
        raise ValueError(
            f"{name}['size'] must be None or one of {SIZES}, got {description['size']!r}."
        )


def _fits(obj, description):
    return (
        obj["shape"] == description["shape"]
        and description.get("color") in (None, obj["color"])
        and description.get("size") in (None, obj["size"])
    )


def objects_fitting(objects, description):
    """The indices of the objects that fit a description (shape, optional colour and size)."""
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


def matching_objects(
    objects: Sequence[dict], spec: dict, *, image_size: int, margin: float, strict: bool
) -> list[int]:
    """Returns the sorted indices of the objects that `spec` can refer to.

    Args:
        objects: sequence of dicts with keys `shape`, `color`, `size`, `x`, `y` (centre, pixels).
        spec: an expression spec, a dict with `kind` in `KINDS` and `target` (a description:
            dict with `shape` and optional `color`, `size`), plus `horizontal` / `vertical`
            (location), `direction` / `rank` (ordinal) or `relation` / `anchor` (relation).
        image_size: the image side in pixels (for the image halves).
        margin: the tolerance in pixels (> 0).
        strict: the strict reading if True, the lenient one otherwise (see `cmsa_tf.data.shapes`).

    Returns:
        A sorted list of object indices.
    """
    if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
        raise ValueError(f"spec must be a dict with 'kind' in {KINDS}, got {spec!r}.")
    if not margin > 0:
        raise ValueError(f"margin must be > 0 (pixels), got {margin!r}.")
    _check_description(spec.get("target"), "spec['target']")
    kind = spec["kind"]
    candidates = objects_fitting(objects, spec["target"])
    if kind == "attribute":
        return candidates
    if kind == "location":
        directions = [d for d in (spec.get("horizontal"), spec.get("vertical")) if d is not None]
        if (
            spec.get("horizontal") not in (None, "left", "right")
            or spec.get("vertical") not in (None, "top", "bottom")
            or not directions
        ):
            raise ValueError(
                "A location spec needs horizontal in (None, 'left', 'right') and "
                f"vertical in (None, 'top', 'bottom'), not both None; got {spec!r}."
            )
        return [
            i
            for i in candidates
            if all(_in_half(objects[i], d, image_size, margin, strict) for d in directions)
        ]
    if kind == "ordinal":
        direction, rank = spec.get("direction"), spec.get("rank")
        if direction not in DIRECTIONS or not isinstance(rank, int) or rank < 1:
            raise ValueError(
                f"An ordinal spec needs direction in {DIRECTIONS} and an integer "
                f"rank >= 1; got {spec!r}."
            )
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
    anchors = objects_fitting(objects, spec["anchor"])
    if len(anchors) != 1:
        # The anchor description must itself name one object; otherwise nothing is named.
        return [] if strict else candidates
    anchor = anchors[0]
    return [
        i
        for i in candidates
        if i != anchor and _related(objects[i], objects[anchor], relation, margin, strict)
    ]


def is_unambiguous(
    objects: Sequence[dict], spec: dict, target: int, *, image_size: int, margin: float
) -> bool:
    """True if `spec` names exactly object `target` under the strict and the lenient readings."""
    kwargs = dict(image_size=image_size, margin=margin)
    return matching_objects(objects, spec, strict=False, **kwargs) == [target] and matching_objects(
        objects, spec, strict=True, **kwargs
    ) == [target]
