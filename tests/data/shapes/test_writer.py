"""Tests of cmsa_tf/data/shapes/writer.py: the ShapesRef files, read back independently.

The main check is independent of the generator: every sentence in the refs pickle is re-parsed
from its text by a grammar written here, evaluated against the scene's stored object list under
the plain reading of each word (left = smaller centre x, no margin), and must name exactly the
ref's object, also after every centre is moved by less than half the margin. Masks are checked
against the pixels of the written images (object colours vs. the low-saturation background).
"""

import hashlib
import io
import json
import os
import pickle
import re

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from cmsa_tf.data import shapes

IMAGE_SIZE = 64
COUNTS = dict(num_train_images=360, num_val_images=40, num_test_images=80)


@pytest.fixture(scope="module")
def ref_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes_ref"))
    summary = shapes.generate_shapes_ref(
        root, image_size=IMAGE_SIZE, seed=3, num_workers=1, progress=False, **COUNTS
    )
    return root, summary


def _get_mask(ann, image):
    """The stock REFER toolkit's `REFER.getMask` (lichengunc/refer), step by step: polygons if
    `segmentation[0]` is a list, else the list of RLE dicts as it is; pycocotools decodes the
    parts into [H, W, N] and their sum is the mask."""
    segmentation = ann["segmentation"]
    if isinstance(segmentation[0], list):  # polygons
        rle = mask_utils.frPyObjects(segmentation, image["height"], image["width"])
    else:
        rle = segmentation
    mask = np.sum(mask_utils.decode(rle), axis=2).astype(np.uint8)
    assert sum(mask_utils.area(rle)) == ann["area"]
    return mask


def _masks(instances):
    """ann_id -> the toolkit's mask of every annotation."""
    images = {im["id"]: im for im in instances["images"]}
    return {a["id"]: _get_mask(a, images[a["image_id"]]) for a in instances["annotations"]}


def _load(root):
    with open(os.path.join(root, "shapes", "instances.json")) as f:
        instances = json.load(f)
    with open(os.path.join(root, "shapes", "refs(shapes).p"), "rb") as f:
        refs = pickle.load(f)
    with open(os.path.join(root, "shapes", "scenes.json")) as f:
        scenes = json.load(f)
    return instances, refs, scenes


# ----------------------------------------------------------------------------------------------
# An independent reading of the expressions.

_SIZE = {"big": "big", "large": "big", "small": "small", "little": "small"}
_DESC = (
    r"(?:(big|large|small|little) )?(?:(red|green|blue|yellow|purple) )?"
    r"(circle|square|triangle|star|cross)"
)
_EXTREMES = {
    "leftmost": "left",
    "rightmost": "right",
    "topmost": "top",
    "highest": "top",
    "bottommost": "bottom",
    "lowest": "bottom",
}
_RELATIONS = {
    "left of": "left",
    "to the left of": "left",
    "right of": "right",
    "to the right of": "right",
    "above": "above",
    "below": "below",
    "under": "below",
}
_PATTERNS = [
    ("attribute", re.compile(rf"^(?:the )?{_DESC}$")),
    ("location_prefix", re.compile(rf"^(?:the )?(?:(top|bottom) )?(?:(left|right) )?{_DESC}$")),
    (
        "location_suffix",
        re.compile(
            rf"^(?:the )?{_DESC} "
            r"(?:on the (left|right)|at the (top|bottom)|in the (top|bottom) (left|right))$"
        ),
    ),
    (
        "extreme",
        re.compile(rf"^(?:the )?(leftmost|rightmost|topmost|highest|bottommost|lowest) {_DESC}$"),
    ),
    (
        "rank",
        re.compile(rf"^(?:the )?(first|second|third) {_DESC} from the (left|right|top|bottom)$"),
    ),
    (
        "relation",
        re.compile(
            rf"^(?:the )?{_DESC} "
            r"(left of|to the left of|right of|to the right of|above|below|under) "
            rf"the {_DESC}$"
        ),
    ),
]


def _desc(size, color, shape):
    return {"size": _SIZE.get(size), "color": color, "shape": shape}


def parse(sentence):
    """Sentence -> (kind, reading) with this file's own grammar."""
    for name, pattern in _PATTERNS:
        match = pattern.match(sentence)
        if not match:
            continue
        g = match.groups()
        if name == "attribute":
            return "attribute", {"target": _desc(*g)}
        if name == "location_prefix":
            if g[0] is None and g[1] is None:
                continue
            return "location", {"target": _desc(*g[2:5]), "regions": [r for r in g[:2] if r]}
        if name == "location_suffix":
            return "location", {"target": _desc(*g[:3]), "regions": [r for r in g[3:] if r]}
        if name == "extreme":
            return "ordinal", {"target": _desc(*g[1:4]), "direction": _EXTREMES[g[0]], "rank": 1}
        if name == "rank":
            rank = {"first": 1, "second": 2, "third": 3}[g[0]]
            return "ordinal", {"target": _desc(*g[1:4]), "direction": g[4], "rank": rank}
        return "relation", {
            "target": _desc(*g[:3]),
            "relation": _RELATIONS[g[3]],
            "anchor": _desc(*g[4:7]),
        }
    raise AssertionError(f"unparseable expression {sentence!r}")


def _fits(obj, desc):
    return all(desc[k] in (None, obj[k]) for k in ("shape", "color", "size"))


def evaluate(kind, reading, objects, positions, image_size):
    """Ann ids named by a parsed expression, plain reading (no margins)."""
    half = image_size / 2.0
    cands = [o for o in objects if _fits(o, reading["target"])]

    def coord(o, direction):  # smaller = earlier when counting from `direction`
        x, y = positions[o["ann_id"]]
        return {"left": x, "right": -x, "top": y, "bottom": -y}[direction]

    if kind == "attribute":
        return {o["ann_id"] for o in cands}
    if kind == "location":
        return {
            o["ann_id"]
            for o in cands
            if all(
                coord(o, r) < {"left": half, "top": half, "right": -half, "bottom": -half}[r]
                for r in reading["regions"]
            )
        }
    if kind == "ordinal":
        d = reading["direction"]
        return {
            o["ann_id"]
            for o in cands
            if 1 + sum(coord(p, d) < coord(o, d) for p in cands) == reading["rank"]
        }
    anchors = [o for o in objects if _fits(o, reading["anchor"])]
    if len(anchors) != 1:
        return set()
    d = {"left": "left", "right": "right", "above": "top", "below": "bottom"}[reading["relation"]]
    return {
        o["ann_id"] for o in cands if o is not anchors[0] and coord(o, d) < coord(anchors[0], d)
    }


def test_every_expression_names_exactly_its_object(ref_root):
    root, _ = ref_root
    _, refs, scenes = _load(root)
    margin = scenes["margin"]
    assert margin == pytest.approx(0.06 * IMAGE_SIZE)
    by_image = {s["image_id"]: s["objects"] for s in scenes["images"]}
    rng = np.random.default_rng(0)
    jitters = [rng.uniform(-0.49 * margin, 0.49 * margin, size=(8, 2)) for _ in range(3)]
    checked = 0
    for ref in refs:
        objects = by_image[ref["image_id"]]
        exact = {o["ann_id"]: (o["x"], o["y"]) for o in objects}
        moved = [
            {o["ann_id"]: (o["x"] + j[k, 0], o["y"] + j[k, 1]) for k, o in enumerate(objects)}
            for j in jitters
        ]
        for sentence in ref["sentences"]:
            kind, reading = parse(sentence["sent"])
            for positions in [exact] + moved:
                named = evaluate(kind, reading, objects, positions, IMAGE_SIZE)
                assert named == {ref["ann_id"]}, (sentence["sent"], objects, positions)
            if kind != "attribute":  # the spatial part is needed: the words alone fit >= 2.
                assert sum(_fits(o, reading["target"]) for o in objects) >= 2, sentence["sent"]
            assert len(sentence["tokens"]) <= shapes.MAX_WORDS
            checked += 1
    assert checked >= 3000


def test_stored_specs_agree_with_the_text_and_the_checker(ref_root):
    root, _ = ref_root
    _, refs, scenes = _load(root)
    sentences = {s["sent_id"]: (s["sent"], r) for r in refs for s in r["sentences"]}
    margin = scenes["margin"]
    for scene in scenes["images"]:
        objects = scene["objects"]
        for expression in scene["expressions"]:
            sent, ref = sentences[expression["sent_id"]]
            assert sent == expression["sent"] and ref["ann_id"] == expression["ann_id"]
            spec = expression["spec"]
            kind, reading = parse(sent)
            assert spec["kind"] == kind and reading["target"] == spec["target"]
            target = [o["ann_id"] for o in objects].index(ref["ann_id"])
            for strict in (True, False):
                assert shapes.matching_objects(
                    objects, spec, image_size=IMAGE_SIZE, margin=margin, strict=strict
                ) == [target]


# ----------------------------------------------------------------------------------------------
# The semantic checker on hand-made scenes.


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        (dict(num_train_images=0), "num_train_images"),
        (dict(image_size=16), "image_size"),
        (dict(num_workers=0), "num_workers"),
        (dict(margin_fraction=0.3), "margin_fraction"),
        (dict(margin_fraction=0.0), "margin_fraction"),
    ],
)
def test_generator_rejects_bad_arguments(tmp_path, kwargs, problem):
    args = dict(num_train_images=1, num_val_images=0, num_test_images=0, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=problem):
        shapes.generate_shapes_ref(str(tmp_path), **args)


# ----------------------------------------------------------------------------------------------
# Scenes, masks and files.


def test_masks_are_the_visible_pixels(ref_root):
    root, _ = ref_root
    instances, _, scenes = _load(root)
    colors = {
        s["image_id"]: {o["ann_id"]: o["color"] for o in s["objects"]} for s in scenes["images"]
    }
    palette = np.asarray(list(shapes.COLORS.values()), np.float32)
    names = list(shapes.COLORS)
    by_image = {}
    for ann in instances["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for image in instances["images"]:
        pixels = np.asarray(
            Image.open(os.path.join(root, "images", image["file_name"])), np.float32
        )  # [H, W, 3]
        assert pixels.shape == (image["height"], image["width"], 3) == (IMAGE_SIZE, IMAGE_SIZE, 3)
        union = np.zeros(pixels.shape[:2], np.int32)
        for ann in by_image[image["id"]]:
            mask = _get_mask(ann, image).astype(bool)
            assert mask.any() and ann["area"] == mask.sum() and ann["iscrowd"] == 0
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            ]
            nearest = ((pixels[mask][:, None, :] - palette[None]) ** 2).sum(-1).argmin(-1)
            share = np.mean(nearest == names.index(colors[image["id"]][ann["id"]]))
            assert share >= 0.95, (image["file_name"], ann["id"], share)
            union += mask
        assert union.max() == 1  # visible masks never overlap
        # Objects are saturated colours, the background is not: the masks cover the colour.
        saturated = pixels.max(-1) - pixels.min(-1) > 70
        assert np.mean(saturated == (union == 1)) >= 0.99, image["file_name"]


def test_every_image_has_two_objects_of_one_shape(ref_root):
    root, _ = ref_root
    instances, _, _ = _load(root)
    per_image = {}
    for ann in instances["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann["category_id"])
    assert len(per_image) == len(instances["images"]) == sum(COUNTS.values())
    for categories in per_image.values():
        assert 2 <= len(categories) <= 6
        assert max(categories.count(c) for c in set(categories)) >= 2
    assert sorted(c["name"] for c in instances["categories"]) == sorted(shapes.SHAPES)


def test_splits_and_kinds(ref_root):
    root, summary = ref_root
    instances, refs, _ = _load(root)
    file_names = {im["id"]: im["file_name"] for im in instances["images"]}
    image_splits, counts = {}, {s: {k: 0 for k in shapes.KINDS} for s in shapes.SPLITS}
    for ref in refs:
        group = "test" if ref["split"] in ("testA", "testB") else ref["split"]
        assert image_splits.setdefault(ref["image_id"], group) == group  # one split an image
        assert file_names[ref["image_id"]].startswith(f"shapes_{group}_")
        assert ref["sent_ids"] == [s["sent_id"] for s in ref["sentences"]]
        for sentence in ref["sentences"]:
            kind, _ = parse(sentence["sent"])
            counts[ref["split"]][kind] += 1
    assert all(counts["testA"][k] == 0 for k in ("location", "ordinal", "relation"))
    assert counts["testB"]["attribute"] == 0
    for split in ("train", "val"):
        assert all(counts[split][k] > 0 for k in shapes.KINDS), counts[split]
    assert all(counts["testB"][k] > 0 for k in ("location", "ordinal", "relation"))
    for split in shapes.SPLITS:
        assert summary["splits"][split]["kinds"] == counts[split]
        assert summary["splits"][split]["refs"] == sum(r["split"] == split for r in refs)
    assert len({r["ref_id"] for r in refs}) == len(refs)
    sent_ids = [s["sent_id"] for r in refs for s in r["sentences"]]
    assert len(set(sent_ids)) == len(sent_ids)
    ann_images = {a["id"]: a["image_id"] for a in instances["annotations"]}
    cats = {a["id"]: a["category_id"] for a in instances["annotations"]}
    assert all(ann_images[r["ann_id"]] == r["image_id"] for r in refs)
    assert all(cats[r["ann_id"]] == r["category_id"] for r in refs)


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"global {module}.{name} in the refs pickle")


def _assert_plain(value):
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            _assert_plain(item)
    elif isinstance(value, list):
        for item in value:
            _assert_plain(item)
    else:
        assert type(value) in (str, int), type(value)


def test_refs_pickle_is_plain_protocol_2(ref_root):
    root, _ = ref_root
    with open(os.path.join(root, "shapes", "refs(shapes).p"), "rb") as f:
        data = f.read()
    assert data[:2] == b"\x80\x02"  # protocol 2
    refs = _NoGlobals(io.BytesIO(data)).load()
    _assert_plain(refs)
    # Canonical bytes: no value is shared by object identity (which varies with num_workers).
    assert pickle.dumps(json.loads(json.dumps(refs)), protocol=2) == data
    keys = {"ref_id", "ann_id", "image_id", "category_id", "split", "sentences", "sent_ids"}
    for ref in refs:
        assert set(ref) == keys
        for sentence in ref["sentences"]:
            assert set(sentence) == {"sent_id", "raw", "sent", "tokens"}
            assert sentence["tokens"] == sentence["sent"].split() and sentence["tokens"]


def test_coco_api_reads_the_masks(ref_root):
    from pycocotools.coco import COCO

    root, _ = ref_root
    coco = COCO(os.path.join(root, "shapes", "instances.json"))
    ann = coco.loadAnns(coco.getAnnIds())[7]
    expected = _get_mask(ann, coco.loadImgs(ann["image_id"])[0])
    # COCO's annToMask takes a list for polygons, so it reads the one RLE part of the list.
    (part,) = ann["segmentation"]
    np.testing.assert_array_equal(coco.annToMask(dict(ann, segmentation=part)), expected)


def _tree_bytes(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def test_determinism_and_workers(tmp_path):
    args = dict(
        num_train_images=40, num_val_images=3, num_test_images=4, image_size=48, progress=False
    )
    shapes.generate_shapes_ref(str(tmp_path / "a"), seed=7, num_workers=1, **args)
    shapes.generate_shapes_ref(str(tmp_path / "b"), seed=7, num_workers=2, **args)
    shapes.generate_shapes_ref(str(tmp_path / "c"), seed=8, num_workers=1, **args)
    a, b, c = (_tree_bytes(str(tmp_path / n)) for n in "abc")
    assert len(a) == 47 + 4 and a == b
    assert sorted(a) == sorted(c)
    assert all(a[k] != c[k] for k in a if k.endswith(".jpg"))
    assert a["shapes/refs(shapes).p"] != c["shapes/refs(shapes).p"]


def test_overwrite_guard_and_stale_images(tmp_path):
    args = dict(num_val_images=0, num_test_images=0, image_size=48, progress=False, num_workers=1)
    shapes.generate_shapes_ref(str(tmp_path), num_train_images=3, **args)
    with pytest.raises(ValueError, match="overwrite"):
        shapes.generate_shapes_ref(str(tmp_path), num_train_images=1, overwrite=False, **args)
    (tmp_path / "images" / "mine.png").write_bytes(b"not ours")
    shapes.generate_shapes_ref(str(tmp_path), num_train_images=1, **args)
    assert sorted(os.listdir(tmp_path / "images")) == ["mine.png", "shapes_train_000000.jpg"]


def test_refer_reader_loads_shapes_ref(ref_root):
    from cmsa_tf.data import refer

    root, summary = ref_root
    data = refer.ReferDataset(root, "shapes", "shapes")
    assert data.splits == ("train", "val", "testA", "testB")
    instances, _, _ = _load(root)
    masks = _masks(instances)
    for split in shapes.SPLITS:
        pairs = list(data.sentences(split))
        assert len(pairs) == summary["splits"][split]["expressions"]
        for ref, sentence in pairs[:25]:
            mask = data.mask(ref)
            np.testing.assert_array_equal(mask, masks[ref.ann_id])
            info = data.image_info(ref.image_id)
            assert os.path.isfile(os.path.join(root, "images", info.file_name))
            assert sentence.text() == " ".join(sentence.tokens)
            assert data.categories[ref.category_id] in shapes.SHAPES


def test_segmentations_are_in_the_stock_refer_layout(ref_root):
    from cmsa_tf.data import refer

    root, _ = ref_root
    instances, refs, _ = _load(root)
    images = {im["id"]: im for im in instances["images"]}
    for ann in instances["annotations"]:
        segmentation = ann["segmentation"]
        assert isinstance(segmentation, list) and len(segmentation) == 1
        (rle,) = segmentation
        assert set(rle) == {"size", "counts"} and isinstance(rle["counts"], str)
        image = images[ann["image_id"]]
        assert rle["size"] == [image["height"], image["width"]]
    # Every ref: the toolkit's getMask equals our reader's mask.
    masks = _masks(instances)
    data = refer.ReferDataset(root, "shapes", "shapes")
    assert len(data.refs) == len(refs)
    for ref in data.refs:
        np.testing.assert_array_equal(data.mask(ref), masks[ref.ann_id])
        assert masks[ref.ann_id].dtype == np.uint8 and masks[ref.ann_id].max() == 1


def test_bare_rle_dicts_of_earlier_versions_still_read(tmp_path):
    from cmsa_tf.data import refer

    root = str(tmp_path / "old")
    shapes.generate_shapes_ref(
        root,
        num_train_images=3,
        num_val_images=1,
        num_test_images=1,
        image_size=48,
        num_workers=1,
        progress=False,
    )
    instances, _, _ = _load(root)
    expected = _masks(instances)
    for ann in instances["annotations"]:
        ann["segmentation"] = ann["segmentation"][0]  # the layout before the list
    with open(os.path.join(root, "shapes", "instances.json"), "w") as f:
        json.dump(instances, f)
    data = refer.ReferDataset(root, "shapes", "shapes")
    assert data.refs
    for ref in data.refs:
        np.testing.assert_array_equal(data.mask(ref), expected[ref.ann_id])


def test_builder_writes_shapes_ref_tfrecords(tmp_path):
    import tensorflow as tf

    from cmsa_tf.data import build, schema

    root = str(tmp_path / "shapes_ref")
    summary = shapes.generate_shapes_ref(
        root,
        num_train_images=8,
        num_val_images=2,
        num_test_images=3,
        image_size=48,
        seed=1,
        num_workers=1,
        progress=False,
    )
    out = str(tmp_path / "records")
    manifest = build.build_tfrecords(
        root,
        "shapes",
        "shapes",
        os.path.join(root, "images"),
        out,
        strict=True,
        num_workers=1,
        progress=False,
    )
    instances, refs, _ = _load(root)
    masks = _masks(instances)  # as the stock REFER toolkit reads them
    sentences = {s["sent_id"]: (s["sent"], r) for r in refs for s in r["sentences"]}
    for split in shapes.SPLITS:
        files = [os.path.join(out, f) for f in manifest["splits"][split]["files"]]
        examples = [schema.parse_example(x) for x in tf.data.TFRecordDataset(files)]
        assert len(examples) == manifest["counts"][split] == summary["splits"][split]["expressions"]
        for example in examples:
            sent, ref = sentences[int(example[schema.SENTENCE_ID])]
            assert example[schema.EXPRESSION_RAW].numpy().decode() == sent
            assert int(example[schema.ANN_ID]) == ref["ann_id"] and ref["split"] == split
            mask = tf.io.decode_png(example[schema.MASK_ENCODED])[:, :, 0].numpy()
            np.testing.assert_array_equal(mask, masks[ref["ann_id"]])
            image = tf.io.decode_image(example[schema.IMAGE_ENCODED]).numpy()
            assert image.shape == (48, 48, 3)
    assert manifest["skipped"]["total"] == 0


# sha256sum lines of every file of a tiny ShapesRef, recorded with the generator before it was
# split into the cmsa_tf/data/shapes package: the output must stay byte-identical (instances.json
# once its segmentations are unwrapped from their one-element lists).
GOLDEN_SHA256 = dict(
    reversed(line.split("  "))
    for line in """
8ba980a03d696815a8e7aa8ec7fdbbc8b3e46a75ff0fefba4bd838d81889324d  images/shapes_test_000000.jpg
08b31d1bd4bba2f6a461183cc2505f4cbdcd808b45ab07864397f1bdc502617a  images/shapes_test_000001.jpg
42eff31b5e06cbbdb46a297e162134b6b9372e1eb82975cbc28c7dfc7b644d9e  images/shapes_train_000000.jpg
aa013c91ca14fdd48e8548b0cbe77e8cc77d0b61de5fab1592e804d798769549  images/shapes_train_000001.jpg
c89ac35ef96c38dd6047ad985207679da0a8e88aa5d7dc5331cb084e4b172955  images/shapes_train_000002.jpg
636232ef81dce3cffb516db416b26e0374b6fcacc4cac0bd42bb85b3eb4b9685  images/shapes_train_000003.jpg
d882a3942f26d14424ea16740120d08f969c8679e4a9cb38e02d141b3cdfa418  images/shapes_val_000000.jpg
914c161fd7c2908d58171097c7feb4f17f7d4b34cf9c343d4cbb42035bee8f6b  images/shapes_val_000001.jpg
8c6c6679381f1a99c7ef9a1a4d55d7ca95daa8aa28de3a4a5037fa000101c3d2  shapes/instances.json
f4bc9c405607e3ccedc45019fd8044900156fc9c1072af481717ac5c2b23cfdf  shapes/refs(shapes).p
541ee0fa233d05646ba50db4d6a386961ba8fcdd39b9692c2f46c4c750292955  shapes/scenes.json
542c6f6091a747de9bc8f0b094f156f93a246707da80bb143a4353fa2fff607b  shapes/summary.json
""".strip().splitlines()
)


def test_output_is_byte_identical_to_the_recorded_generation(tmp_path):
    root = str(tmp_path / "golden")
    shapes.generate_shapes_ref(
        root,
        num_train_images=4,
        num_val_images=2,
        num_test_images=2,
        image_size=48,
        seed=5,
        num_workers=1,
        progress=False,
    )
    files = _tree_bytes(root)
    # instances.json now wraps each segmentation in a list (the stock REFER layout); unwrapped,
    # its bytes are the recorded ones, so the list is the only change.
    instances = json.loads(files["shapes/instances.json"])
    for ann in instances["annotations"]:
        (ann["segmentation"],) = ann["segmentation"]
    files["shapes/instances.json"] = json.dumps(
        instances, sort_keys=True, separators=(",", ":")
    ).encode("utf-8")
    got = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    assert got == GOLDEN_SHA256
