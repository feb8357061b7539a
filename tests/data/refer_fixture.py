"""A tiny REFER root for tests, and a writer of Python-2 style protocol-2 pickles.

`write_refer_root(root)` writes `root/refcoco/instances.json`, `root/refcoco/refs(unc).p` (a
Python-2 style pickle: keys as Python 2 `str`, some values as `unicode`) and `root/images/`, and
returns a dict describing what it wrote (including the mask each annotation must decode to).

Contents (ref_id: annotation, split, what it tests):

    1: 101 train  polygon on a JPEG
    2: 102 train  two polygons (the mask is their union)
    3: 103 train  compressed RLE (string counts) on a PNG
    4: 104 val    uncompressed RLE (list counts)
    5: 105 val    polygon on a grayscale JPEG; one sentence without any token
    6: 106 testA  an all-zero RLE (empty mask)
    7: 107 testA  an undecodable image file
    8: 108 testB  an image file that does not exist
    9: 101 testB  polygon (same annotation as ref 1)

Tests use it through the fixtures in tests/data/conftest.py.
"""

import io
import json
import os
import struct
import warnings

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

DATASET = "refcoco"
SPLIT_BY = "unc"


class Py2Unicode(str):
    """A `str` that `py2_pickle_dumps` writes as Python 2 `unicode` (BINUNICODE)."""


def py2_pickle_dumps(obj):
    """Pickles plain data the way Python 2's cPickle does at protocol 2.

    `str` and `bytes` become Python 2 `str` (SHORT_BINSTRING / BINSTRING, UTF-8 bytes),
    `Py2Unicode` becomes `unicode`; ints, floats, None, bools, lists, tuples and dicts as usual,
    with memo puts after containers as cPickle writes them.
    """
    out = bytearray(b"\x80\x02")  # PROTO 2
    memo = [0]

    def put():
        index = memo[0]
        memo[0] += 1
        out.extend(b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index))

    def emit(value):
        if value is None:
            out.extend(b"N")
        elif value is True:
            out.extend(b"\x88")
        elif value is False:
            out.extend(b"\x89")
        elif isinstance(value, int):
            if 0 <= value < 256:
                out.extend(b"K" + bytes([value]))
            elif 0 <= value < 65536:
                out.extend(b"M" + struct.pack("<H", value))
            elif -(2**31) <= value < 2**31:
                out.extend(b"J" + struct.pack("<i", value))
            else:  # Python 2 long
                size = (value.bit_length() + 8) // 8
                out.extend(b"\x8a" + bytes([size]) + value.to_bytes(size, "little", signed=True))
        elif isinstance(value, float):
            out.extend(b"G" + struct.pack(">d", value))
        elif isinstance(value, Py2Unicode):
            data = value.encode("utf-8")
            out.extend(b"X" + struct.pack("<I", len(data)) + data)
            put()
        elif isinstance(value, (str, bytes)):
            data = value.encode("utf-8") if isinstance(value, str) else value
            if len(data) < 256:
                out.extend(b"U" + bytes([len(data)]) + data)
            else:
                out.extend(b"T" + struct.pack("<i", len(data)) + data)
            put()
        elif isinstance(value, list):
            out.extend(b"]")
            put()
            if value:
                out.extend(b"(")
                for item in value:
                    emit(item)
                out.extend(b"e")  # APPENDS
        elif isinstance(value, tuple):
            out.extend(b"(")
            for item in value:
                emit(item)
            out.extend(b"t")
            put()
        elif isinstance(value, dict):
            out.extend(b"}")
            put()
            if value:
                out.extend(b"(")
                for key, item in value.items():
                    emit(key)
                    emit(item)
                out.extend(b"u")  # SETITEMS
        else:
            raise TypeError(f"py2_pickle_dumps cannot write {type(value).__name__}.")

    emit(obj)
    out.extend(b".")
    return bytes(out)


def uncompressed_rle(mask):
    """COCO uncompressed RLE (column-major run lengths, starting with zeros) of a {0,1} mask."""
    flat = np.asarray(mask, np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def compressed_rle(mask):
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def reference_mask(segmentation, height, width):
    """What pycocotools makes of a segmentation (union of its parts), uint8 [H, W]."""
    if isinstance(segmentation, list):  # polygons
        rles = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation["counts"], list):
        rles = [mask_utils.frPyObjects(segmentation, height, width)]
    else:
        rles = [{"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}]
    with warnings.catch_warnings():  # pycocotools predates NumPy 2's `copy` keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rles).max(axis=2).astype(np.uint8)


def _ellipse(height, width, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:height, 0:width]
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0).astype(np.uint8)


def _image_bytes(rng, height, width, fmt, mode="RGB"):
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def write_refer_root(root):
    """Writes the REFER root described in the module docstring under `root`.

    Returns:
        dict with `refer_root`, `image_root`, `dataset`, `split_by`, `images` {id: (file, h, w)},
        `segmentations` {ann_id: segmentation}, `masks` {ann_id: expected uint8 [H, W]},
        `refs` (the list pickled, as plain Python data), `bad` {ref_id: skip reason}.
    """
    root = os.fspath(root)
    rng = np.random.default_rng(7)
    image_dir = os.path.join(root, "images")
    data_dir = os.path.join(root, DATASET)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(data_dir, exist_ok=True)

    images = {
        1: ("img_a.jpg", 32, 40),
        2: ("img_b.png", 40, 48),
        3: ("img_c.jpg", 36, 36),
        4: ("corrupt.jpg", 30, 30),
        5: ("missing.jpg", 30, 30),
    }
    files = {
        "img_a.jpg": _image_bytes(rng, 32, 40, "JPEG"),
        "img_b.png": _image_bytes(rng, 40, 48, "PNG"),
        "img_c.jpg": _image_bytes(rng, 36, 36, "JPEG", mode="L"),
        "corrupt.jpg": b"\xff\xd8\xff\xe0" + bytes(rng.integers(0, 256, size=64, dtype=np.uint8)),
    }
    for name, data in files.items():
        with open(os.path.join(image_dir, name), "wb") as f:
            f.write(data)

    blob_b = _ellipse(40, 48, 18, 25, 9, 14)
    blob_b[30:36, 5:12] = 1  # a second, separate part
    blob_uncompressed = _ellipse(40, 48, 20, 10, 12, 6)
    segmentations = {
        101: [[4.0, 4.0, 30.0, 6.0, 12.0, 26.0]],
        102: [
            [2.0, 2.0, 10.0, 2.0, 10.0, 10.0, 2.0, 10.0],
            [20.0, 15.0, 35.0, 15.0, 35.0, 28.0, 20.0, 28.0],
        ],
        103: compressed_rle(blob_b),
        104: uncompressed_rle(blob_uncompressed),
        105: [[5.5, 5.5, 30.5, 5.5, 30.5, 30.5, 5.5, 30.5]],
        106: compressed_rle(np.zeros([36, 36], np.uint8)),
        107: [[1.0, 1.0, 20.0, 1.0, 20.0, 20.0]],
        108: [[1.0, 1.0, 20.0, 1.0, 20.0, 20.0]],
    }
    ann_images = {101: 1, 102: 1, 103: 2, 104: 2, 105: 3, 106: 3, 107: 4, 108: 5}
    instances = {
        "images": [
            {"id": i, "file_name": f, "height": h, "width": w} for i, (f, h, w) in images.items()
        ],
        "annotations": [
            {
                "id": a,
                "image_id": ann_images[a],
                "category_id": 1,
                "segmentation": seg,
                "iscrowd": 0,
                "area": 1.0,
                "bbox": [0.0, 0.0, 1.0, 1.0],
            }
            for a, seg in segmentations.items()
        ],
        "categories": [{"id": 1, "name": "thing", "supercategory": "thing"}],
    }
    with open(os.path.join(data_dir, "instances.json"), "w", encoding="utf-8") as f:
        json.dump(instances, f)

    def sentences(first_id, texts):
        return [
            {
                "sent_id": first_id + i,
                "raw": Py2Unicode(text),
                "sent": text.lower(),
                "tokens": text.lower().split(),
            }
            for i, text in enumerate(texts)
        ]

    refs = [
        (1, 101, "train", ["The man, left.", "red triangle on the LEFT"]),
        (2, 102, "train", ["two squares!", "both boxes on the left"]),
        (3, 103, "train", ["the blob in the middle"]),
        (4, 104, "val", ["the uncompressed blob", "blob, right..."]),
        (5, 105, "val", ["gray square", " . "]),
        (6, 106, "testA", ["nothing here"]),
        (7, 107, "testA", ["broken picture"]),
        (8, 108, "testB", ["lost image"]),
        (9, 101, "testB", ["The triangle (again)"]),
    ]
    ref_records = []
    for ref_id, ann_id, split, texts in refs:
        sents = sentences(ref_id * 10, texts)
        ref_records.append(
            {
                "ref_id": ref_id,
                "ann_id": ann_id,
                "image_id": ann_images[ann_id],
                "split": split,
                "category_id": 1,
                "sent_ids": [s["sent_id"] for s in sents],
                "sentences": sents,
                "file_name": "COCO_train2014_%012d_%d.jpg" % (ann_images[ann_id], ann_id),
            }
        )
    # Written out of ref_id order: the reader sorts.
    order = [4, 0, 8, 2, 1, 6, 3, 5, 7]
    with open(os.path.join(data_dir, f"refs({SPLIT_BY}).p"), "wb") as f:
        f.write(py2_pickle_dumps([ref_records[i] for i in order]))

    masks = {}
    for ann_id, seg in segmentations.items():
        _, height, width = images[ann_images[ann_id]]
        masks[ann_id] = reference_mask(seg, height, width)
    return {
        "refer_root": root,
        "image_root": image_dir,
        "dataset": DATASET,
        "split_by": SPLIT_BY,
        "images": images,
        "ann_images": ann_images,
        "segmentations": segmentations,
        "masks": masks,
        "rle_masks": {103: blob_b, 104: blob_uncompressed},
        "refs": ref_records,
        "bad": {6: "empty_mask", 7: "undecodable_image", 8: "missing_image"},
        "empty_expression_sent_ids": [51],
    }
