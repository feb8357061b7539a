"""benchmarks/word_order.py on a small generated ShapesRef: its definitions, counted by hand."""

import json
import pathlib

import pytest

from cmsa_tf.data import shapes
from tests.helpers import load_benchmark

REPO = pathlib.Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("word_order")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes_ref"))
    shapes.generate_shapes_ref(
        root, num_train_images=60, num_val_images=30, num_test_images=40, image_size=64,
        num_workers=1, progress=False, seed=2,
    )  # fmt: skip
    return root


def test_counts_and_table(root):
    word_order = _module()
    kind_of, duplicate, ambiguous = word_order.ambiguous_expressions(root)
    with open(f"{root}/shapes/scenes.json") as f:
        scenes = json.load(f)
    expressions = [e for s in scenes["images"] for e in s["expressions"]]
    assert set(kind_of) == {e["sent_id"] for e in expressions}
    assert all(kind_of[e["sent_id"]] == e["spec"]["kind"] for e in expressions)
    # The generator's anchors are unique and its targets are not: no bag has two valid readings.
    assert not any(duplicate.values()) and not any(ambiguous.values())
    table = word_order.share_table(root, "testB").splitlines()
    relations = sum(
        1 for e in expressions if e["spec"]["kind"] == "relation" and e["sent_id"] in
        set(word_order.split_sentence_ids(root, "testB"))
    )  # fmt: skip
    testb = len(word_order.split_sentence_ids(root, "testB"))
    assert relations > 0
    assert table[-1].startswith(f"| all | {testb} | 0 | {relations} (")
    assert f"| relation | {relations} | 0 | {relations} (100.0%) | 0 (0.0%) |" in table


def test_a_swapped_reading_with_a_unique_anchor_is_ambiguous(tmp_path):
    # One square left of one star; "the square left of the star" swaps into "the star left of the
    # square", which a lenient reading fits when the star is not clearly right of the square.
    objects = [
        {"ann_id": 1, "shape": "square", "color": "red", "size": "big", "x": 20.0, "y": 30.0},
        {"ann_id": 2, "shape": "star", "color": "blue", "size": "big", "x": 22.0, "y": 30.0},
    ]
    spec = {
        "kind": "relation",
        "relation": "left",
        "target": {"shape": "square", "color": None, "size": None},
        "anchor": {"shape": "star", "color": None, "size": None},
    }
    expression = {"sent_id": 7, "ref_id": 1, "ann_id": 1, "sent": "square left of the star"}
    scene = {"image_id": 1, "objects": objects, "expressions": [dict(expression, spec=spec)]}
    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "scenes.json").write_text(
        json.dumps({"image_size": 64, "margin": 4.0, "images": [scene]})
    )
    _, _, ambiguous = _module().ambiguous_expressions(str(tmp_path))
    assert ambiguous == {7: True}
    objects[1]["x"] = 50.0  # clearly right of the square: the swapped reading fits nothing
    (tmp_path / "shapes" / "scenes.json").write_text(
        json.dumps({"image_size": 64, "margin": 4.0, "images": [scene]})
    )
    assert _module().ambiguous_expressions(str(tmp_path))[2] == {7: False}
