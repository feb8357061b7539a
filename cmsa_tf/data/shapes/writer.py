"""`generate_shapes_ref`: renders the splits (in worker processes) and writes the REFER files.

The layout is the stock REFER toolkit's (`refer.py` of lichengunc/refer): `<root>/shapes/
instances.json` (COCO `images`, `annotations`, `categories`) and `<root>/shapes/refs(shapes).p`
(a protocol-2 pickle of the refs). Each annotation's `segmentation` is a list holding one
compressed RLE dict (`[{"size": [H, W], "counts": "..."}]`): the toolkit's `REFER.getMask` indexes
`segmentation[0]` and hands the list to pycocotools, which unions its parts. (pycocotools'
`COCO.annToMask` reads a list as polygons: give it the part, `segmentation[0]`.)
"""

import json
import multiprocessing
import os
import pickle
import re

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from cmsa_tf.data.shapes.constants import (
    CATEGORY_IDS,
    DATASET,
    IMAGE_SPLITS,
    KINDS,
    SHAPES,
    SPLIT_BY,
    SPLITS,
)
from cmsa_tf.data.shapes.render import encode_jpeg
from cmsa_tf.data.shapes.scene import generate_scene

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_CHUNK_SIZE = 32


_FILE_PATTERN = re.compile(r"shapes_(train|val|test)_(\d{6})\.jpg")


def _file_name(split, index):
    return f"shapes_{split}_{index:06d}.jpg"


def _generate_chunk(task):
    """Worker: renders images [start, stop) of a split, writes them, returns their records."""
    split, start, stop, seed, image_size, margin_fraction, image_dir = task
    records = []
    for index in range(start, stop):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODES[split], index]))
        scene = generate_scene(rng, image_size, margin_fraction)
        file_name = _file_name(split, index)
        with open(os.path.join(image_dir, file_name), "wb") as f:
            f.write(encode_jpeg(scene["image"]))
        objects = []
        for obj, mask, expressions in zip(scene["objects"], scene["masks"], scene["expressions"]):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            objects.append(
                {
                    **obj,
                    "rle": {
                        "size": [int(v) for v in rle["size"]],
                        "counts": rle["counts"].decode("ascii"),
                    },
                    "area": int(mask.sum()),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "expressions": expressions,
                }
            )
        records.append({"split": split, "index": index, "file_name": file_name, "objects": objects})
    return records


def _write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _json_bytes(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def generate_shapes_ref(
    output_dir: str | os.PathLike,
    *,
    num_train_images: int = 2600,
    num_val_images: int = 170,
    num_test_images: int = 400,
    image_size: int = 160,
    seed: int = 0,
    num_workers: int = 2,
    progress: bool = True,
    margin_fraction: float = 0.06,
    overwrite: bool = True,
) -> dict:
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
        margin_fraction: geometric tolerance as a fraction of `image_size` (`cmsa_tf.data.shapes`).
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
    counts = {
        "train": int(num_train_images),
        "val": int(num_val_images),
        "test": int(num_test_images),
    }
    image_dir = os.path.join(output_dir, "images")
    ann_dir = os.path.join(output_dir, DATASET)
    instances_path = os.path.join(ann_dir, "instances.json")
    if os.path.exists(instances_path) and not overwrite:
        raise ValueError(
            f"output_dir {output_dir!r} already holds {instances_path}; pass "
            "overwrite=True to replace it."
        )
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
            tasks.append(
                (split, start, stop, int(seed), int(image_size), float(margin_fraction), image_dir)
            )
    total = sum(counts.values())
    records = []
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
        images.append(
            {
                "id": image_id,
                "file_name": record["file_name"],
                "height": image_size,
                "width": image_size,
            }
        )
        scene = {
            "image_id": image_id,
            "file_name": record["file_name"],
            "split": record["split"],
            "objects": [],
            "expressions": [],
        }
        for obj in record["objects"]:
            ann_id += 1
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": CATEGORY_IDS[obj["shape"]],
                    # A list of parts, as the REFER toolkit's `getMask` and COCO expect.
                    "segmentation": [obj["rle"]],
                    "area": obj["area"],
                    "bbox": obj["bbox"],
                    "iscrowd": 0,
                }
            )
            scene["objects"].append(
                {key: obj[key] for key in ("shape", "color", "size", "x", "y", "scale", "angle")}
                | {"ann_id": ann_id}
            )
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
                    sentences.append(
                        {
                            "sent_id": sent_id,
                            "raw": sentence,
                            "sent": sentence,
                            "tokens": sentence.split(),
                        }
                    )
                    scene["expressions"].append(
                        {
                            "sent_id": sent_id,
                            "ref_id": ref_id,
                            "ann_id": ann_id,
                            "sent": sentence,
                            "spec": spec,
                        }
                    )
                    splits[ref_split]["expressions"] += 1
                    splits[ref_split]["kinds"][spec["kind"]] += 1
                splits[ref_split]["refs"] += 1
                refs.append(
                    {
                        "ref_id": ref_id,
                        "ann_id": ann_id,
                        "image_id": image_id,
                        "category_id": CATEGORY_IDS[obj["shape"]],
                        "split": ref_split,
                        "sentences": sentences,
                        "sent_ids": [s["sent_id"] for s in sentences],
                    }
                )
        scenes.append(scene)

    categories = [{"id": CATEGORY_IDS[s], "name": s, "supercategory": "shape"} for s in SHAPES]
    instances = {"images": images, "annotations": annotations, "categories": categories}
    summary = {
        "images": counts,
        "objects": ann_id,
        "splits": splits,
        "image_size": image_size,
        "seed": seed,
    }
    margin = margin_fraction * image_size
    _write_bytes(instances_path, _json_bytes(instances))
    # Pickle memoizes by object identity, which differs between worker counts: a JSON round trip
    # gives every value a fresh object, so equal refs always pickle to equal bytes.
    refs = json.loads(json.dumps(refs))
    _write_bytes(os.path.join(ann_dir, f"refs({SPLIT_BY}).p"), pickle.dumps(refs, protocol=2))
    _write_bytes(
        os.path.join(ann_dir, "scenes.json"),
        _json_bytes({"image_size": image_size, "margin": margin, "images": scenes}),
    )
    _write_bytes(os.path.join(ann_dir, "summary.json"), _json_bytes(summary))
    return summary
