"""`build_tfrecords`: a REFER root -> shards, vocabulary and manifest (see `cmsa_tf.data.build`)."""

import concurrent.futures
import hashlib
import multiprocessing
import os
from collections.abc import Sequence

import numpy as np
import tqdm
from absl import logging

from cmsa_tf.data import manifest as manifest_lib
from cmsa_tf.data import refer
from cmsa_tf.data import tokenizer as tokenizer_lib
from cmsa_tf.data.build import planning
from cmsa_tf.data.build import shards as shard_lib
from cmsa_tf.data.build.planning import BUILDER_VERSION
from cmsa_tf.data.build.summary import summarize
from cmsa_tf.data.manifest import MANIFEST_NAME, VOCAB_NAME

TEXT_FIELDS = ("sent", "raw")


def _check_positive(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def build_tfrecords(
    refer_root: str | os.PathLike,
    dataset: str,
    split_by: str,
    image_root: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    splits: str | Sequence[str] | None = None,
    num_shards: int | None = None,
    min_count: int = 1,
    vocab_file: str | os.PathLike | None = None,
    strict: bool = False,
    num_workers: int = 2,
    progress: bool = True,
    text_field: str = "sent",
    tokenizer: str = "default",
) -> dict:
    """Builds the TFRecords, vocabulary and manifest of a REFER dataset (see `cmsa_tf.data.build`).

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
        tokenizer: "default" (`cmsa_tf.data.tokenizer`) or "authors"
            (`cmsa_tf.data.authors_tokenizer`: their tokenisation and vocabulary format, ids =
            line numbers; needs `vocab_file`, which is copied byte for byte). The manifest
            records it; training and evaluation refuse a `config.data.tokenizer` that differs.

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
    if tokenizer not in tokenizer_lib.TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {tokenizer_lib.TOKENIZERS}, got {tokenizer!r}.")
    if tokenizer == "authors" and vocab_file is None:
        raise ValueError(
            "tokenizer='authors' needs vocab_file (the authors' vocabulary, e.g. "
            "vocabulary_Gref.txt): their ids are the line numbers of that file."
        )
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
        vocabulary = tokenizer_lib.load_vocabulary(vocab_file, tokenizer)
        source, vocab_min_count = f"copied from {os.path.abspath(os.fspath(vocab_file))}", None
    else:
        if "train" not in data.splits:
            raise ValueError(
                f"{data.refs_path} has no 'train' split to build the vocabulary from (splits: "
                f"{list(data.splits)}); pass vocab_file."
            )
        vocabulary = tokenizer_lib.Vocabulary.build(
            (sentence.text(text_field) for _, sentence in data.sentences("train")),
            min_count=min_count,
        )
        source, vocab_min_count = "built from the 'train' split", min_count
    if tokenizer == "authors":  # their line numbers are the ids: the file as it is
        with open(vocab_file, "rb") as f:
            vocab_bytes = f.read()
    else:
        vocab_bytes = vocabulary.to_bytes()
    manifest_lib.write_file_atomic(os.path.join(output_dir, VOCAB_NAME), vocab_bytes)
    vocab_entry = {
        "file": VOCAB_NAME,
        "size": len(vocabulary),
        "layout": getattr(vocabulary, "layout", "authors"),
        "sha256": hashlib.sha256(vocab_bytes).hexdigest(),
        "source": source,
        "min_count": vocab_min_count,
    }

    # Plan, and find the shards a previous run completed.
    tasks = []
    for split in splits:
        tasks.extend(
            planning.plan_split(
                data, split, vocabulary, text_field, image_root, output_dir, num_shards
            )
        )
    previous = planning.read_previous_manifest(output_dir) or {}
    same_setup = (
        previous.get("builder_version") == BUILDER_VERSION
        and previous.get("dataset") == dataset
        and previous.get("split_by") == split_by
        and previous.get("text_field") == text_field
        and previous.get("tokenizer", "default") == tokenizer
        and (previous.get("vocabulary") or {}).get("sha256") == vocab_entry["sha256"]
    )
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
        "tokenizer": tokenizer,
        "refer_root": os.path.abspath(os.fspath(refer_root)),
        "image_root": image_root,
        "vocabulary": vocab_entry,
        "splits": {},
    }
    # Splits built earlier into this directory with the same setup stay listed.
    carried = [
        s
        for s in old_splits
        if s not in splits
        and same_setup
        and all(
            os.path.isfile(os.path.join(output_dir, e.get("file", "")))
            for e in old_splits[s].get("shards") or []
        )
    ]
    for split in refer.sort_splits(set(splits) | set(carried)):
        shards = old_splits[split]["shards"] if split in carried else []
        manifest["splits"][split] = {"shards": shards}

    # Remove files of earlier, different shardings of the splits being built, and stale temps.
    current = {os.path.basename(t["path"]) for t in tasks}
    for name in sorted(os.listdir(output_dir)):
        base = name[:-4] if name.endswith(".tmp") else name
        if any(
            base.startswith(f"{split}-") and base.endswith(".tfrecord") for split in splits
        ) and (name != base or base not in current):
            logging.info("Removing stale %s", name)
            os.remove(os.path.join(output_dir, name))

    entries = {}
    pending = []
    for task in tasks:
        name = os.path.basename(task["path"])
        entry = old_entries.get(name)
        # A strict build redoes shards that skipped items, so that it fails on them.
        if planning.is_complete(entry, task) and not (strict and entry.get("skipped")):
            entries[name] = old_entries[name]
        else:
            task["strict"] = bool(strict)
            pending.append(task)
    if len(entries):
        logging.info(
            "%d of %d shards are complete from an earlier run; skipping them.",
            len(entries),
            len(tasks),
        )

    def write_manifest(complete):
        for split in splits:
            manifest["splits"][split]["shards"] = [
                entries[os.path.basename(t["path"])]
                for t in tasks
                if t["split"] == split and os.path.basename(t["path"]) in entries
            ]
        manifest["complete"] = complete
        summarize(manifest)
        manifest_lib.write_manifest(output_dir, manifest)

    def record(entry):
        entries[entry["file"]] = entry
        write_manifest(complete=False)

    total = sum(len(g["sentences"]) for t in pending for g in t["groups"])
    with tqdm.tqdm(
        total=total, unit="example", disable=not progress, desc=f"{dataset}({split_by})"
    ) as bar:
        workers = min(num_workers, len(pending))
        if workers <= 1:
            for task in pending:
                record(shard_lib.write_shard(task))
                bar.update(sum(len(g["sentences"]) for g in task["groups"]))
        else:
            context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {pool.submit(shard_lib.write_shard, task): task for task in pending}
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
        logging.info(
            "%s: %d examples in %d shards (%d skipped).",
            split,
            info["examples"],
            len(info["files"]),
            info["skipped"],
        )
    if manifest["skipped"]["total"]:
        logging.warning(
            "Skipped %d examples: %s (details in %s).",
            manifest["skipped"]["total"],
            ", ".join(f"{r}={n}" for r, n in manifest["skipped"]["by_reason"].items()),
            os.path.join(output_dir, MANIFEST_NAME),
        )
    return manifest
