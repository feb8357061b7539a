"""Expression text: rendering a spec as words (`describe`), choosing an object's expressions."""

import numpy as np

from cmsa_tf.data.shapes.checker import is_unambiguous, objects_fitting
from cmsa_tf.data.shapes.constants import DIRECTIONS, KINDS, MAX_WORDS, RELATIONS

# Ordinals go up to "third".
MAX_RANK = 3

_SIZE_WORDS = {"big": ("big", "large"), "small": ("small", "little")}
_EXTREME_WORDS = {
    "left": ("leftmost",),
    "right": ("rightmost",),
    "top": ("topmost", "highest"),
    "bottom": ("bottommost", "lowest"),
}
_RANK_WORDS = {1: "first", 2: "second", 3: "third"}
_RELATION_WORDS = {
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below", "under"),
}


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


def describe(spec: dict, rng: np.random.Generator, compact: bool = False) -> str:
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
        words = (
            article + target + phrase.split() + ["the"] + _description_words(spec["anchor"], rng)
        )
    return " ".join(words)


# ----------------------------------------------------------------------------------------------
# Choosing expressions.


def _descriptions(obj, with_size=True):
    """All descriptions of `obj`: shape alone, with colour, with size, with both."""
    out = [
        {"shape": obj["shape"], "color": None, "size": None},
        {"shape": obj["shape"], "color": obj["color"], "size": None},
    ]
    if with_size:
        out += [
            {"shape": obj["shape"], "color": None, "size": obj["size"]},
            {"shape": obj["shape"], "color": obj["color"], "size": obj["size"]},
        ]
    return out


def expressions_for_object(objects, target, rng, image_size, margin):
    """At most one expression of each kind for objects[target]: list of (spec, sentence)."""
    kwargs = dict(image_size=image_size, margin=margin)
    obj = objects[target]
    options = {kind: [] for kind in KINDS}
    for description in _descriptions(obj):
        spec = {"kind": "attribute", "target": description}
        if is_unambiguous(objects, spec, target, **kwargs):
            options["attribute"].append(spec)
    # Spatial kinds: the target description must fit at least two objects.
    spatial = [d for d in _descriptions(obj) if len(objects_fitting(objects, d)) >= 2]
    for description in spatial:
        count = len(objects_fitting(objects, description))
        for horizontal in (None, "left", "right"):
            for vertical in (None, "top", "bottom"):
                if horizontal is None and vertical is None:
                    continue
                spec = {
                    "kind": "location",
                    "target": description,
                    "horizontal": horizontal,
                    "vertical": vertical,
                }
                if is_unambiguous(objects, spec, target, **kwargs):
                    options["location"].append(spec)
        for direction in DIRECTIONS:
            for rank in range(1, min(MAX_RANK, count - 1) + 1):
                spec = {
                    "kind": "ordinal",
                    "target": description,
                    "direction": direction,
                    "rank": rank,
                }
                if is_unambiguous(objects, spec, target, **kwargs):
                    options["ordinal"].append(spec)
    # Relations: the anchor is named by its shortest unique attribute description.
    for anchor, anchor_obj in enumerate(objects):
        if anchor == target:
            continue
        anchor_descriptions = [
            d
            for d in _descriptions(anchor_obj)
            if is_unambiguous(objects, {"kind": "attribute", "target": d}, anchor, **kwargs)
        ]
        if not anchor_descriptions:
            continue
        fewest = min(sum(v is not None for v in d.values()) for d in anchor_descriptions)
        shortest = [
            d for d in anchor_descriptions if sum(v is not None for v in d.values()) == fewest
        ]
        anchor_description = shortest[int(rng.integers(len(shortest)))]
        for description in _descriptions(obj, with_size=False):
            others = [i for i in objects_fitting(objects, description) if i != anchor]
            if len(others) < 2:
                continue
            for relation in RELATIONS:
                spec = {
                    "kind": "relation",
                    "target": description,
                    "relation": relation,
                    "anchor": anchor_description,
                }
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
