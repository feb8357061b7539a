"""Writing one shard: a worker's task -> `<split>-NNNNN-of-NNNNN.tfrecord` and its manifest entry.

A task (planned by `planning.plan_split`) holds plain dicts only, so it pickles to a spawned
worker process. Bad input items are skipped with a reason from `SKIP_REASONS` (or raise
`BuildError` in a strict build); see `cmsa_tf.data.build` for the rules.
"""

import hashlib
import io
import os

import tensorflow as tf
from PIL import Image
from tensorflow.core.example import example_pb2

from cmsa_tf.data import refer, schema
from cmsa_tf.data.image_io import PIL_FORMATS
from cmsa_tf.data.manifest import fsync_dir

SKIP_REASONS = (
    "missing_image_info",  # the ref's image_id is not in instances.json
    "missing_annotation",  # the ref's ann_id is not in instances.json
    "missing_image",  # no file at image_root/file_name
    "unreadable_image",  # the file exists but cannot be read
    "undecodable_image",  # PIL cannot decode it
    "unsupported_image_format",  # decodable, but not JPEG / PNG / GIF / BMP
    "image_size_mismatch",  # decoded size differs from instances.json
    "bad_segmentation",  # the annotation cannot be decoded into a mask
    "empty_mask",  # the mask has no foreground pixel
    "empty_expression",  # the sentence has no token
)


class BuildError(ValueError):
    """A bad input item in a `strict` build."""


def shard_file_name(split: str, index: int, num_shards: int) -> str:
    """`<split>-<index>-of-<num_shards>.tfrecord`, five digits each."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def sha256_file(path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Skip(Exception):
    def __init__(self, reason, detail):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _load_image(path, image_info):
    """(bytes, format) of a checked image file; raises `_Skip`."""
    if not os.path.isfile(path):
        raise _Skip("missing_image", f"no file {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise _Skip("unreadable_image", f"{path}: {error}") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            pil_format = image.format
            image.load()  # full decode: catches truncated and corrupt files
            width, height = image.size
    except Exception as error:  # PIL raises many types for corrupt data
        raise _Skip("undecodable_image", f"{path}: {type(error).__name__}: {error}") from None
    if pil_format not in PIL_FORMATS:
        raise _Skip(
            "unsupported_image_format", f"{path} is {pil_format}; supported: {sorted(PIL_FORMATS)}"
        )
    if (height, width) != (image_info["height"], image_info["width"]):
        raise _Skip(
            "image_size_mismatch",
            f"{path} is {height}x{width}, instances.json says "
            f"{image_info['height']}x{image_info['width']}",
        )
    return data, PIL_FORMATS[pil_format]


def _encode_mask_png(mask):
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _prepare_ref(group, image_root, image_cache):
    """(image bytes, format, mask PNG) of a ref group; raises `_Skip`."""
    if group["image"] is None:
        raise _Skip("missing_image_info", f"image id {group['image_id']} is not in instances.json")
    if group["segmentation"] is None:
        raise _Skip(
            "missing_annotation", f"annotation id {group['ann_id']} is not in instances.json"
        )
    info = group["image"]
    path = os.path.join(image_root, info["file_name"])
    if path not in image_cache:
        image_cache.clear()  # refs of one image are usually neighbours; keep one image
        try:
            image_cache[path] = _load_image(path, info)
        except _Skip as skip:
            image_cache[path] = skip
    cached = image_cache[path]
    if isinstance(cached, _Skip):
        raise cached
    try:
        mask = refer.decode_segmentation(
            group["segmentation"],
            info["height"],
            info["width"],
            where=f"annotation {group['ann_id']}",
        )
    except refer.AnnotationError as error:
        raise _Skip("bad_segmentation", str(error)) from None
    if not mask.any():
        raise _Skip("empty_mask", f"annotation {group['ann_id']} covers no pixel")
    return cached[0], cached[1], _encode_mask_png(mask)


def _skip_record(task, group, sent_ids, skip):
    if task["strict"]:
        raise BuildError(
            f"{skip.reason} in split {task['split']!r}, ref {group['ref_id']} (sentences "
            f"{sent_ids}, image {group['file_name']!r}): {skip.detail}. Without strict mode this "
            "item would be skipped and listed in the manifest."
        )
    return {
        "split": task["split"],
        "ref_id": group["ref_id"],
        "sent_ids": sent_ids,
        "ann_id": group["ann_id"],
        "image_id": group["image_id"],
        "file": group["file_name"],
        "reason": skip.reason,
        "detail": skip.detail,
    }


def _deterministic(serialized):
    """Re-serializes an Example with sorted map keys.

    `tf.train.Features.feature` is a protobuf map, whose default serialization order may differ
    between processes; sorting it makes shards byte-identical whichever worker writes them.
    """
    return example_pb2.Example.FromString(serialized).SerializeToString(deterministic=True)


def _write_examples(task, writer):
    """Writes the examples of a shard task; returns (count, candidates, max_words, skipped)."""
    skipped, count, candidates, max_words = [], 0, 0, 0
    image_cache = {}
    for group in task["groups"]:
        candidates += len(group["sentences"])
        try:
            image_bytes, image_format, mask_png = _prepare_ref(
                group, task["image_root"], image_cache
            )
        except _Skip as skip:
            sent_ids = [s["sent_id"] for s in group["sentences"]]
            skipped.append(_skip_record(task, group, sent_ids, skip))
            continue
        for sentence in group["sentences"]:
            if not sentence["ids"]:
                skip = _Skip("empty_expression", f"sentence {sentence['text']!r} has no token")
                skipped.append(_skip_record(task, group, [sentence["sent_id"]], skip))
                continue
            writer.write(
                _deterministic(
                    schema.serialize_example(
                        image_encoded=image_bytes,
                        image_format=image_format,
                        height=group["image"]["height"],
                        width=group["image"]["width"],
                        mask_png=mask_png,
                        expression=sentence["text"],
                        ids=sentence["ids"],
                        image_id=group["image_id"],
                        ref_id=group["ref_id"],
                        ann_id=group["ann_id"],
                        sentence_id=sentence["sent_id"],
                    )
                )
            )
            count += 1
            max_words = max(max_words, len(sentence["ids"]))
    return count, candidates, max_words, skipped


def write_shard(task: dict) -> dict:
    """Writes one shard (`<name>.tmp`, fsync, rename); returns its manifest entry."""
    path = task["path"]
    tmp_path = path + ".tmp"
    try:
        with tf.io.TFRecordWriter(tmp_path) as writer:
            count, candidates, max_words, skipped = _write_examples(task, writer)
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    os.replace(tmp_path, path)
    fsync_dir(os.path.dirname(path))
    return {
        "file": os.path.basename(path),
        "count": count,
        "candidates": candidates,
        "bytes": os.path.getsize(path),
        "sha256": sha256_file(path),
        "max_words": max_words,
        "skipped": skipped,
        "fingerprint": task["fingerprint"],
    }
