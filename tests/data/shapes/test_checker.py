"""Tests of cmsa_tf/data/shapes/checker.py: the strict and lenient readings of expressions."""

import pytest

from cmsa_tf.data import shapes


def _obj(shape, color, size, x, y):
    return {"shape": shape, "color": color, "size": size, "x": x, "y": y}


def test_checker_location_margins():
    objects = [_obj("circle", "red", "big", 30, 40), _obj("circle", "blue", "small", 120, 45)]
    left = {
        "kind": "location",
        "target": {"shape": "circle"},
        "horizontal": "left",
        "vertical": None,
    }
    kw = dict(image_size=160, margin=10)
    assert shapes.matching_objects(objects, left, strict=True, **kw) == [0]
    assert shapes.is_unambiguous(objects, left, 0, **kw)
    # Move the blue circle into the band around the middle: the lenient reading takes it too.
    objects[1]["x"] = 85
    assert shapes.matching_objects(objects, left, strict=False, **kw) == [0, 1]
    assert not shapes.is_unambiguous(objects, left, 0, **kw)
    top_left = dict(left, vertical="top")
    objects[1]["x"] = 120
    assert shapes.matching_objects(objects, top_left, strict=True, **kw) == [0]
    objects[0]["y"] = 75  # inside the band of the vertical middle
    assert shapes.matching_objects(objects, top_left, strict=True, **kw) == []


def test_checker_ordinal_and_relation():
    kw = dict(image_size=160, margin=8)
    objects = [
        _obj("star", "red", "big", 20, 80),
        _obj("star", "green", "big", 60, 30),
        _obj("star", "blue", "small", 140, 90),
        _obj("square", "yellow", "big", 100, 80),
    ]
    second = {"kind": "ordinal", "target": {"shape": "star"}, "direction": "left", "rank": 2}
    assert shapes.matching_objects(objects, second, strict=True, **kw) == [1]
    assert shapes.is_unambiguous(objects, second, 1, **kw)
    top = dict(second, direction="top", rank=1)
    assert shapes.is_unambiguous(objects, top, 1, **kw)
    objects[1]["x"] = 25  # a near tie with the red star: the rank is no longer clear
    assert shapes.matching_objects(objects, second, strict=False, **kw) == [0, 1]
    assert not shapes.is_unambiguous(objects, second, 1, **kw)
    objects[1]["x"] = 60
    rel = {
        "kind": "relation",
        "target": {"shape": "star"},
        "relation": "right",
        "anchor": {"shape": "square"},
    }
    assert shapes.is_unambiguous(objects, rel, 2, **kw)
    below = dict(rel, relation="below")
    # The blue star is 10 px below the square but 40 px to the side: not clearly "below".
    assert shapes.matching_objects(objects, below, strict=True, **kw) == []
    ambiguous_anchor = dict(rel, anchor={"shape": "star"})
    assert shapes.matching_objects(objects, ambiguous_anchor, strict=True, **kw) == []


def test_checker_rejects_bad_specs():
    objects = [_obj("circle", "red", "big", 30, 40)]
    kw = dict(image_size=64, margin=4, strict=True)
    with pytest.raises(ValueError, match="kind"):
        shapes.matching_objects(objects, {"kind": "colour", "target": {"shape": "circle"}}, **kw)
    with pytest.raises(ValueError, match="shape"):
        shapes.matching_objects(objects, {"kind": "attribute", "target": {"shape": "oval"}}, **kw)
    with pytest.raises(ValueError, match="location"):
        shapes.matching_objects(objects, {"kind": "location", "target": {"shape": "circle"}}, **kw)
    with pytest.raises(ValueError, match="margin"):
        shapes.matching_objects(
            objects,
            {"kind": "attribute", "target": {"shape": "circle"}},
            image_size=64,
            margin=0,
            strict=True,
        )
    with pytest.raises(ValueError, match="rank"):
        shapes.matching_objects(
            objects,
            {"kind": "ordinal", "target": {"shape": "circle"}, "direction": "left", "rank": 0},
            **kw,
        )
