"""Planning a build: the shard tasks of a split, their fingerprints, and what an earlier run left.

Refs are taken in ref_id order, each ref's sentences in file order; the list of a split is cut
into `num_shards` contiguous shards (one per `EXAMPLES_PER_SHARD` examples by default). A task's
`fingerprint` is the sha256 of everything its shard is made from, so a shard whose manifest entry
has the same fingerprint, size and sha256 is complete and is not rewritten.
"""

import hashlib
import json
import math
import os

from absl import logging

from cmsa_tf.data import manifest as manifest_lib
from cmsa_tf.data.build.shards import sha256_file, shard_file_name

BUILDER_VERSION = 1
EXAMPLES_PER_SHARD = 1000


def _image_stat(path):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def plan_split(data, split, vocabulary, text_field, image_root, output_dir, num_shards):
    """The shard tasks of one split."""
    items = []  # (ref, sentence text, ids, sent_id), in order
    for ref, sentence in data.sentences(split):
        text = sentence.text(text_field)
        items.append((ref, text, vocabulary.encode(text), sentence.sent_id))
    if num_shards is None:
        num_shards = max(1, math.ceil(len(items) / EXAMPLES_PER_SHARD))
    num_shards = max(1, min(num_shards, len(items)))
    bounds = [index * len(items) // num_shards for index in range(num_shards + 1)]
    tasks = []
    for index in range(num_shards):
        groups = []
        for ref, text, ids, sent_id in items[bounds[index] : bounds[index + 1]]:
            if not groups or groups[-1]["ref_id"] != ref.ref_id:
                image = data.images.get(ref.image_id)
                ann = data.annotations.get(ref.ann_id)
                groups.append(
                    {
                        "ref_id": ref.ref_id,
                        "ann_id": ref.ann_id,
                        "image_id": ref.image_id,
                        "file_name": image.file_name if image else None,
                        "image": _image_dict(image),
                        "segmentation": ann.segmentation if ann else None,
                        "sentences": [],
                    }
                )
            groups[-1]["sentences"].append({"sent_id": sent_id, "text": text, "ids": ids})
        files = sorted({g["file_name"] for g in groups if g["file_name"]})
        task = {
            "split": split,
            "index": index,
            "num_shards": num_shards,
            "path": os.path.join(output_dir, shard_file_name(split, index, num_shards)),
            "image_root": image_root,
            "groups": groups,
            "strict": False,
        }
        fingerprint_input = {
            "builder_version": BUILDER_VERSION,
            "dataset": data.dataset,
            "split_by": data.split_by,
            "text_field": text_field,
            "split": split,
            "index": index,
            "num_shards": num_shards,
            "groups": groups,
            "images": {f: _image_stat(os.path.join(image_root, f)) for f in files},
        }
        task["fingerprint"] = hashlib.sha256(
            json.dumps(fingerprint_input, sort_keys=True, ensure_ascii=True).encode("ascii")
        ).hexdigest()
        tasks.append(task)
    return tasks


def _image_dict(image):
    """ImageInfo -> plain dict (None stays None), for worker tasks."""
    if image is None:
        return None
    return {"file_name": image.file_name, "height": image.height, "width": image.width}


def is_complete(entry, task):
    """Whether a previous manifest entry describes this task's shard, present and intact."""
    if not entry or entry.get("fingerprint") != task["fingerprint"]:
        return False
    path = task["path"]
    return (
        os.path.isfile(path)
        and os.path.getsize(path) == entry.get("bytes")
        and sha256_file(path) == entry.get("sha256")
    )


def read_previous_manifest(output_dir):
    """The manifest an earlier build left in `output_dir`, or None (missing or unreadable)."""
    if not os.path.isfile(manifest_lib.manifest_path(output_dir)):
        return None
    try:
        return manifest_lib.read_manifest(output_dir)
    except ValueError as error:
        logging.warning("Ignoring unreadable manifest (%s); every shard will be rebuilt.", error)
        return None
