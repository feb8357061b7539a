"""REFER root -> sharded TFRecords (one example per (ref, sentence)) + vocabulary + manifest.

Usage:
    python -m cmsa_tf.data.build --refer_root=data/refer --dataset=refcoco --split_by=unc \\
        --image_root=data/coco/train2014 --output_dir=data/tfrecords/refcoco_unc

Writes into `output_dir`:

    vocab.txt                                  built from the train split (or --vocab_file)
    <split>-00000-of-000NN.tfrecord ...        the schema of `cmsa_tf.data.schema`
    manifest.json                              what was built (below)

Examples. Refs are taken in ref_id order, each ref's sentences in file order; the list of a split
is cut into `num_shards` contiguous shards. The image bytes are copied from the file as they are
(never re-encoded); the mask is the union of the annotation's parts (pycocotools) as a {0, 1}
PNG; `expression/raw` holds the text that was tokenized (REFER's cleaned `sent`, as the authors
used, or `raw` with `text_field="raw"`) and `expression/ids` its untruncated ids.

Bad input never stops a build unless `strict`: a ref whose image is missing, undecodable, of a
format the pipeline cannot decode, or of another size than instances.json says, whose
annotation is missing or cannot be decoded, or whose mask is empty, and a sentence without any
token, are skipped; the manifest lists every skipped item with its reason and counts per reason.
With `strict` the first one raises `BuildError`.

Shards are written as `<name>.tmp`, fsynced, then renamed, by a pool of worker processes
(`spawn`, one shard a task). The manifest is rewritten after every shard. A shard is complete
when the manifest has an entry for it whose `fingerprint` (sha256 of everything the shard is
made from: its refs, sentences, ids, annotations, the image files' sizes and modification times,
the builder version) equals the new one and the file's size and sha256 equal the recorded ones;
a re-run skips such shards, so an interrupted build resumes and a repeated build rewrites nothing.
Output is deterministic: the same inputs give byte-identical files, whatever `num_workers`.

Manifest (JSON): `dataset`, `split_by`, `text_field`, `complete`, `vocabulary` {file, size,
sha256, layout, source, min_count}, `counts` {split: examples}, `max_words` (longest written
expression, in tokens), `splits` {split: {files, examples, candidates, skipped, max_words,
shards [{file, count, candidates, bytes, sha256, fingerprint, max_words, skipped [...]}]}},
`skipped` {total, by_reason, items [{split, ref_id, sent_ids, ann_id, image_id, file, reason,
detail}]}. `counts` and `skipped` count examples ((ref, sentence) pairs).
"""

import concurrent.futures
import hashlib
import io
import json
import math
import multiprocessing
import os

import numpy as np
import tqdm
from absl import app, flags, logging
from PIL import Image

from cmsa_tf.data import refer, schema, tokenizer

BUILDER_VERSION = 1
MANIFEST_NAME = "manifest.json"
VOCAB_NAME = "vocab.txt"
EXAMPLES_PER_SHARD = 1000
TEXT_FIELDS = ("sent", "raw")
# PIL format name -> schema `image/format`; the formats the input pipeline decodes.
IMAGE_FORMATS = {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "BMP": "bmp"}

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


def shard_file_name(split, index, num_shards):
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path, data):
    """Writes bytes to `path` via `<path>.tmp`, fsync and rename; no-op if already identical."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return
    tmp_path = path + ".tmp"
    with open(tmp_path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_path, path)
    _fsync_dir(os.path.dirname(path) or ".")


def _json_bytes(obj):
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------------------------
# Worker: one shard.


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
    if pil_format not in IMAGE_FORMATS:
        raise _Skip("unsupported_image_format",
                    f"{path} is {pil_format}; supported: {sorted(IMAGE_FORMATS)}")
    if (height, width) != (image_info["height"], image_info["width"]):
        raise _Skip("image_size_mismatch",
                    f"{path} is {height}x{width}, instances.json says "
                    f"{image_info['height']}x{image_info['width']}")
    return data, IMAGE_FORMATS[pil_format]


def _encode_mask_png(mask):
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _prepare_ref(group, image_root, image_cache):
    """(image bytes, format, mask PNG) of a ref group; raises `_Skip`."""
    if group["image"] is None:
        raise _Skip("missing_image_info", f"image id {group['image_id']} is not in instances.json")
    if group["segmentation"] is None:
        raise _Skip("missing_annotation", f"annotation id {group['ann_id']} is not in instances.json")
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
        mask = refer.decode_segmentation(group["segmentation"], info["height"], info["width"],
                                         where=f"annotation {group['ann_id']}")
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
            "item would be skipped and listed in the manifest.")
    return {
        "split": task["split"], "ref_id": group["ref_id"], "sent_ids": sent_ids,
        "ann_id": group["ann_id"], "image_id": group["image_id"], "file": group["file_name"],
        "reason": skip.reason, "detail": skip.detail,
    }


def _deterministic(serialized):
    """Re-serializes an Example with sorted map keys.

    `tf.train.Features.feature` is a protobuf map, whose default serialization order may differ
    between processes; sorting it makes shards byte-identical whichever worker writes them.
    """
    from tensorflow.core.example import example_pb2  # pylint: disable=import-outside-toplevel

    return example_pb2.Example.FromString(serialized).SerializeToString(deterministic=True)


def _write_examples(task, writer):
    """Writes the examples of a shard task; returns (count, candidates, max_words, skipped)."""
    skipped, count, candidates, max_words = [], 0, 0, 0
    image_cache = {}
    for group in task["groups"]:
        candidates += len(group["sentences"])
        try:
            image_bytes, image_format, mask_png = _prepare_ref(group, task["image_root"], image_cache)
        except _Skip as skip:
            sent_ids = [s["sent_id"] for s in group["sentences"]]
            skipped.append(_skip_record(task, group, sent_ids, skip))
            continue
        for sentence in group["sentences"]:
            if not sentence["ids"]:
                skip = _Skip("empty_expression", f"sentence {sentence['text']!r} has no token")
                skipped.append(_skip_record(task, group, [sentence["sent_id"]], skip))
                continue
            writer.write(_deterministic(schema.serialize_example(
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
            )))
            count += 1
            max_words = max(max_words, len(sentence["ids"]))
    return count, candidates, max_words, skipped


def _write_shard(task):
    """Writes one shard (`<name>.tmp`, fsync, rename); returns its manifest entry."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

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
    _fsync_dir(os.path.dirname(path))
    return {
        "file": os.path.basename(path),
        "count": count,
        "candidates": candidates,
        "bytes": os.path.getsize(path),
        "sha256": _sha256_file(path),
        "max_words": max_words,
        "skipped": skipped,
        "fingerprint": task["fingerprint"],
    }


# ----------------------------------------------------------------------------------------------
# Planning.


def _image_stat(path):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _plan_split(data, split, vocabulary, text_field, image_root, output_dir, num_shards):
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
        for ref, text, ids, sent_id in items[bounds[index]:bounds[index + 1]]:
            if not groups or groups[-1]["ref_id"] != ref.ref_id:
                image = data.images.get(ref.image_id)
                ann = data.annotations.get(ref.ann_id)
                groups.append({
                    "ref_id": ref.ref_id, "ann_id": ref.ann_id, "image_id": ref.image_id,
                    "file_name": image.file_name if image else None,
                    "image": _image_dict(image),
                    "segmentation": ann.segmentation if ann else None,
                    "sentences": [],
                })
            groups[-1]["sentences"].append({"sent_id": sent_id, "text": text, "ids": ids})
        files = sorted({g["file_name"] for g in groups if g["file_name"]})
        task = {
            "split": split, "index": index, "num_shards": num_shards,
            "path": os.path.join(output_dir, shard_file_name(split, index, num_shards)),
            "image_root": image_root, "groups": groups, "strict": False,
        }
        fingerprint_input = {
            "builder_version": BUILDER_VERSION, "dataset": data.dataset, "split_by": data.split_by,
            "text_field": text_field, "split": split, "index": index, "num_shards": num_shards,
            "groups": groups,
            "images": {f: _image_stat(os.path.join(image_root, f)) for f in files},
        }
        task["fingerprint"] = hashlib.sha256(
            json.dumps(fingerprint_input, sort_keys=True, ensure_ascii=True).encode("ascii")).hexdigest()
        tasks.append(task)
    return tasks


def _image_dict(image):
    """ImageInfo -> plain dict (None stays None), for worker tasks."""
    if image is None:
        return None
    return {"file_name": image.file_name, "height": image.height, "width": image.width}


def _is_complete(entry, task):
    """Whether a previous manifest entry describes this task's shard, present and intact."""
    if not entry or entry.get("fingerprint") != task["fingerprint"]:
        return False
    path = task["path"]
    return (os.path.isfile(path) and os.path.getsize(path) == entry.get("bytes")
            and _sha256_file(path) == entry.get("sha256"))


def _read_manifest(output_dir):
    path = os.path.join(output_dir, MANIFEST_NAME)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            manifest = json.load(f)
    except ValueError:
        logging.warning("Ignoring unreadable manifest %s; every shard will be rebuilt.", path)
        return None
    return manifest if isinstance(manifest, dict) else None


def _check_positive(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _summarize(manifest):
    """Fills the per-split and overall totals of a manifest from its shard entries."""
    by_reason = {}
    items = []
    for split, info in manifest["splits"].items():
        shards = info["shards"]
        manifest["splits"][split] = {
            "files": [s["file"] for s in shards],
            "examples": sum(s["count"] for s in shards),
            "candidates": sum(s["candidates"] for s in shards),
            "skipped": sum(len(i["sent_ids"]) for s in shards for i in s["skipped"]),
            "max_words": max([s["max_words"] for s in shards], default=0),
            "shards": shards,
        }
        for shard in shards:
            for item in shard["skipped"]:
                by_reason[item["reason"]] = by_reason.get(item["reason"], 0) + len(item["sent_ids"])
                items.append(item)
    manifest["counts"] = {split: info["examples"] for split, info in manifest["splits"].items()}
    manifest["max_words"] = max([i["max_words"] for i in manifest["splits"].values()], default=0)
    manifest["skipped"] = {
        "total": sum(by_reason.values()),
        "by_reason": {reason: by_reason[reason] for reason in SKIP_REASONS if reason in by_reason},
        "items": items,
    }
    return manifest


# ----------------------------------------------------------------------------------------------
# The build.


def build_tfrecords(
    refer_root,
    dataset,
    split_by,
    image_root,
    output_dir,
    *,
    splits=None,
    num_shards=None,
    min_count=1,
    vocab_file=None,
    strict=False,
    num_workers=2,
    progress=True,
    text_field="sent",
):
    """Builds the TFRecords, vocabulary and manifest of a REFER dataset (see the module docstring).

    Args:
        refer_root: folder with `<dataset>/instances.json` and `<dataset>/refs(<split_by>).p`.
        dataset: refcoco, refcoco+, refcocog, refclef or shapes.
        split_by: unc, google, umd, berkeley or shapes (as valid for `dataset`).
        image_root: folder holding the images under their instances.json `file_name`.
        output_dir: where the files go (created if needed).
        splits: splits to write (list or comma-separated string); default all present.
        num_shards: shards per split; default one per `EXAMPLES_PER_SHARD` examples. Capped at
            the number of examples of the split.
        min_count: keep tokens seen at least this often in the train split.
        vocab_file: use this vocabulary (ours or the authors' format) instead of building one.
        strict: raise `BuildError` on the first bad item instead of skipping it.
        num_workers: worker processes (1 writes in this process).
        progress: show a tqdm progress bar over examples.
        text_field: "sent" (REFER's cleaned sentence, as the authors) or "raw".

    Returns:
        The manifest dict (also written to `<output_dir>/manifest.json`).

    Raises:
        ValueError: unknown dataset / split_by, a split not in the refs file, bad arguments.
        BuildError: a bad item in a `strict` build.

    With `num_workers > 1` the workers are `spawn`ed: a script calling this must guard its
    top level with `if __name__ == "__main__":`.
    """
    refer.check_dataset(dataset, split_by)
    num_shards = _check_positive(num_shards, "num_shards", allow_none=True)
    min_count = _check_positive(min_count, "min_count")
    num_workers = _check_positive(num_workers, "num_workers")
    if text_field not in TEXT_FIELDS:
        raise ValueError(f"text_field must be one of {TEXT_FIELDS}, got {text_field!r}.")
    image_root = os.path.abspath(os.fspath(image_root))
    if not os.path.isdir(image_root):
        raise ValueError(f"image_root {image_root!r} is not a directory.")
    output_dir = os.path.abspath(os.fspath(output_dir))

    data = refer.ReferDataset(refer_root, dataset, split_by)
    if splits is None:
        splits = list(data.splits)
    else:
        if isinstance(splits, str):
            splits = [s.strip() for s in splits.split(",") if s.strip()]
        splits = list(dict.fromkeys(splits))
        if not splits:
            raise ValueError("splits is empty; leave it out to build every split.")
        for split in splits:
            data.check_split(split)
        splits = refer.sort_splits(splits)

    # Vocabulary.
    os.makedirs(output_dir, exist_ok=True)
    if vocab_file is not None:
        vocabulary = tokenizer.Vocabulary.from_file(vocab_file)
        source, vocab_min_count = f"copied from {os.path.abspath(os.fspath(vocab_file))}", None
    else:
        if "train" not in data.splits:
            raise ValueError(
                f"{data.refs_path} has no 'train' split to build the vocabulary from (splits: "
                f"{list(data.splits)}); pass vocab_file.")
        vocabulary = tokenizer.Vocabulary.build(
            (sentence.text(text_field) for _, sentence in data.sentences("train")), min_count=min_count)
        source, vocab_min_count = "built from the 'train' split", min_count
    vocab_bytes = vocabulary.to_bytes()
    _write_atomic(os.path.join(output_dir, VOCAB_NAME), vocab_bytes)
    vocab_entry = {
        "file": VOCAB_NAME, "size": len(vocabulary), "layout": vocabulary.layout,
        "sha256": hashlib.sha256(vocab_bytes).hexdigest(), "source": source,
        "min_count": vocab_min_count,
    }

    # Plan, and find the shards a previous run completed.
    tasks = []
    for split in splits:
        tasks.extend(_plan_split(data, split, vocabulary, text_field, image_root, output_dir, num_shards))
    previous = _read_manifest(output_dir) or {}
    same_setup = (previous.get("builder_version") == BUILDER_VERSION
                  and previous.get("dataset") == dataset and previous.get("split_by") == split_by
                  and previous.get("text_field") == text_field
                  and (previous.get("vocabulary") or {}).get("sha256") == vocab_entry["sha256"])
    old_entries = {}
    old_splits = previous.get("splits") if isinstance(previous.get("splits"), dict) else {}
    for info in old_splits.values():
        for entry in info.get("shards") or []:
            if isinstance(entry, dict) and "file" in entry:
                old_entries[entry["file"]] = entry

    manifest = {
        "format_version": 1,
        "builder_version": BUILDER_VERSION,
        "complete": False,
        "dataset": dataset,
        "split_by": split_by,
        "text_field": text_field,
        "refer_root": os.path.abspath(os.fspath(refer_root)),
        "image_root": image_root,
        "vocabulary": vocab_entry,
        "splits": {},
    }
    # Splits built earlier into this directory with the same setup stay listed.
    carried = [
        s for s in old_splits
        if s not in splits and same_setup and all(
            os.path.isfile(os.path.join(output_dir, e.get("file", "")))
            for e in old_splits[s].get("shards") or [])
    ]
    for split in refer.sort_splits(set(splits) | set(carried)):
        shards = old_splits[split]["shards"] if split in carried else []
        manifest["splits"][split] = {"shards": shards}

    # Remove files of earlier, different shardings of the splits being built, and stale temps.
    current = {os.path.basename(t["path"]) for t in tasks}
    for name in sorted(os.listdir(output_dir)):
        base = name[:-4] if name.endswith(".tmp") else name
        if any(base.startswith(f"{split}-") and base.endswith(".tfrecord") for split in splits) and (
                name != base or base not in current):
            logging.info("Removing stale %s", name)
            os.remove(os.path.join(output_dir, name))

    entries = {}
    pending = []
    for task in tasks:
        name = os.path.basename(task["path"])
        entry = old_entries.get(name)
        # A strict build redoes shards that skipped items, so that it fails on them.
        if _is_complete(entry, task) and not (strict and entry.get("skipped")):
            entries[name] = old_entries[name]
        else:
            task["strict"] = bool(strict)
            pending.append(task)
    if len(entries):
        logging.info("%d of %d shards are complete from an earlier run; skipping them.",
                     len(entries), len(tasks))

    def write_manifest(complete):
        for split in splits:
            manifest["splits"][split]["shards"] = [
                entries[os.path.basename(t["path"])] for t in tasks
                if t["split"] == split and os.path.basename(t["path"]) in entries]
        manifest["complete"] = complete
        _summarize(manifest)
        _write_atomic(os.path.join(output_dir, MANIFEST_NAME), _json_bytes(manifest))

    def record(entry):
        entries[entry["file"]] = entry
        write_manifest(complete=False)

    total = sum(len(g["sentences"]) for t in pending for g in t["groups"])
    with tqdm.tqdm(total=total, unit="example", disable=not progress,
                   desc=f"{dataset}({split_by})") as bar:
        workers = min(num_workers, len(pending))
        if workers <= 1:
            for task in pending:
                record(_write_shard(task))
                bar.update(sum(len(g["sentences"]) for g in task["groups"]))
        else:
            context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {pool.submit(_write_shard, task): task for task in pending}
                try:
                    for future in concurrent.futures.as_completed(futures):
                        task = futures[future]
                        record(future.result())
                        bar.update(sum(len(g["sentences"]) for g in task["groups"]))
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise

    write_manifest(complete=True)
    for split in manifest["splits"]:
        info = manifest["splits"][split]
        logging.info("%s: %d examples in %d shards (%d skipped).", split, info["examples"],
                     len(info["files"]), info["skipped"])
    if manifest["skipped"]["total"]:
        logging.warning("Skipped %d examples: %s (details in %s).", manifest["skipped"]["total"],
                        ", ".join(f"{r}={n}" for r, n in manifest["skipped"]["by_reason"].items()),
                        os.path.join(output_dir, MANIFEST_NAME))
    return manifest


# ----------------------------------------------------------------------------------------------
# Command line.


def define_flags(flag_values=flags.FLAGS):
    """Defines the command-line flags (called by `__main__` only, so importing defines nothing)."""
    flags.DEFINE_string("refer_root", None, "Folder with <dataset>/instances.json and refs(<split_by>).p.",
                        flag_values=flag_values)
    flags.DEFINE_string("dataset", None, f"One of {sorted(refer.VALID_SPLIT_BY)}.", flag_values=flag_values)
    flags.DEFINE_string("split_by", None, "unc, google, umd, berkeley or shapes.", flag_values=flag_values)
    flags.DEFINE_string("image_root", None, "Folder holding the images (instances.json file_name).",
                        flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, "Where TFRecords, vocab.txt and manifest.json go.",
                        flag_values=flag_values)
    flags.DEFINE_list("splits", None, "Splits to build (default: all present).", flag_values=flag_values)
    flags.DEFINE_integer("num_shards", None, f"Shards per split (default: one per {EXAMPLES_PER_SHARD} "
                         "examples).", flag_values=flag_values)
    flags.DEFINE_integer("min_count", 1, "Minimum train-split count of a vocabulary token.",
                         flag_values=flag_values)
    flags.DEFINE_string("vocab_file", None, "Reuse this vocabulary instead of building one.",
                        flag_values=flag_values)
    flags.DEFINE_bool("strict", False, "Fail on the first bad item instead of skipping it.",
                      flag_values=flag_values)
    flags.DEFINE_integer("num_workers", 2, "Worker processes.", flag_values=flag_values)
    flags.DEFINE_enum("text_field", "sent", list(TEXT_FIELDS), "Sentence field to tokenize and store.",
                      flag_values=flag_values)
    flags.DEFINE_bool("progress", True, "Show a progress bar.", flag_values=flag_values)
    for name in ("refer_root", "dataset", "split_by", "image_root", "output_dir"):
        flags.mark_flag_as_required(name, flag_values=flag_values)
    flags.register_multi_flags_validator(["dataset", "split_by"], _check_dataset_flags,
                                         flag_values=flag_values)


def _check_dataset_flags(values):
    if values["dataset"] is None or values["split_by"] is None:
        return True  # reported as missing required flags
    try:
        refer.check_dataset(values["dataset"], values["split_by"])
    except ValueError as error:
        raise flags.ValidationError(str(error)) from None
    return True


def run_from_flags(flag_values=flags.FLAGS):
    """Calls `build_tfrecords` with the parsed flags; returns the manifest."""
    from cmsa_tf.data import build  # pylint: disable=import-outside-toplevel

    # Through the imported module, so that worker processes find the functions by name.
    return build.build_tfrecords(
        flag_values.refer_root, flag_values.dataset, flag_values.split_by, flag_values.image_root,
        flag_values.output_dir, splits=flag_values.splits, num_shards=flag_values.num_shards,
        min_count=flag_values.min_count, vocab_file=flag_values.vocab_file,
        strict=flag_values.strict, num_workers=flag_values.num_workers,
        progress=flag_values.progress, text_field=flag_values.text_field)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    manifest = run_from_flags(flags.FLAGS)
    print(json.dumps({"counts": manifest["counts"], "skipped": manifest["skipped"]["by_reason"],
                      "vocabulary_size": manifest["vocabulary"]["size"],
                      "max_words": manifest["max_words"]}, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
