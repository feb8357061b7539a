"""The TFRecord manifest: the one place `manifest.json` is named, written and read.

`cmsa_tf.data.build` writes `<output_dir>/manifest.json` beside the shards and `vocab.txt`
(its fields are listed in `cmsa_tf.data.build`'s docstring). Everything else finds the shards of a
split (`split_files`) and the vocabulary (`vocab_path`, `vocab_size`) through this module. Each
function takes the manifest file itself or the directory holding it; relative file names in the
manifest are resolved against that directory.
"""

import json
import os

import tensorflow as tf

MANIFEST_NAME = "manifest.json"
VOCAB_NAME = "vocab.txt"


def manifest_path(path_or_dir) -> str:
    """The path of the manifest: `path_or_dir` itself, or `<path_or_dir>/manifest.json`."""
    path = os.fspath(path_or_dir)
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, MANIFEST_NAME)
    return path


def _resolve(directory, name):
    return name if os.path.isabs(name) or "://" in name else os.path.join(directory, name)


def read_manifest(path_or_dir) -> dict:
    """Reads a manifest written by `cmsa_tf.data.build`.

    Args:
        path_or_dir: the manifest file or the directory holding `manifest.json`.

    Returns:
        The manifest dict. When it names a vocabulary file, `vocab_file` (its absolute path) and
        `vocab_size` (its number of tokens) are added.

    Raises:
        ValueError: naming the path, when there is no manifest, it is not valid JSON, or it has no
            `splits` dict.
    """
    path = manifest_path(path_or_dir)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"No TFRecord manifest at {path!r}; run cmsa_tf.data.build first.")
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    try:
        manifest = json.loads(text)
    except ValueError as error:
        raise ValueError(
            f"The TFRecord manifest {path!r} is not valid JSON ({error}); rebuild it with "
            "cmsa_tf.data.build."
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise ValueError(
            f"Manifest {path!r} has no 'splits' dict; rebuild it with cmsa_tf.data.build."
        )
    vocabulary = manifest.get("vocabulary")
    if isinstance(vocabulary, dict) and vocabulary.get("file"):
        vocab_file = _resolve(os.path.dirname(path), vocabulary["file"])
        manifest["vocab_file"] = vocab_file
        manifest["vocab_size"] = vocabulary.get("size") or _count_lines(vocab_file, path)
    return manifest


def _count_lines(vocab_file, path):
    if not tf.io.gfile.exists(vocab_file):
        raise ValueError(
            f"The vocabulary {vocab_file!r} named by the manifest {path!r} is missing."
        )
    with tf.io.gfile.GFile(vocab_file) as f:
        return sum(1 for _ in f)


def split_files(path_or_dir, split: str) -> list[str]:
    """The TFRecord files of `split`, as paths (relative names resolved to the manifest's dir).

    Raises:
        ValueError: the manifest cannot be read (see `read_manifest`), has no split `split`
            (the message lists the known splits) or lists no file for it.
    """
    path = manifest_path(path_or_dir)
    splits = read_manifest(path)["splits"]
    if split not in splits:
        raise ValueError(
            f"Split {split!r} is not in the manifest {path!r}; available splits: {sorted(splits)}."
        )
    info = splits[split]
    files = (info.get("files") if isinstance(info, dict) else None) or []
    if not files:
        raise ValueError(f"Split {split!r} lists no files in the manifest {path!r}.")
    directory = os.path.dirname(path)
    return [_resolve(directory, f) for f in files]


def _with_vocabulary(path_or_dir):
    manifest = read_manifest(path_or_dir)
    if "vocab_file" not in manifest:
        raise ValueError(
            f"The manifest {manifest_path(path_or_dir)!r} names no vocabulary file "
            "(vocabulary.file)."
        )
    return manifest


def vocab_path(path_or_dir) -> str:
    """The path of the vocabulary file the manifest names.

    Raises:
        ValueError: the manifest cannot be read or names no vocabulary file.
    """
    return _with_vocabulary(path_or_dir)["vocab_file"]


def vocab_size(path_or_dir) -> int:
    """The number of tokens of the manifest's vocabulary (its recorded size, else its lines).

    Raises:
        ValueError: the manifest cannot be read or names no vocabulary file.
    """
    return int(_with_vocabulary(path_or_dir)["vocab_size"])


def tokenizer(path_or_dir) -> str:
    """The tokenizer the TFRecords' word ids come from (`tokenizer.TOKENIZERS`); "default" for a
    manifest written before the builder recorded it."""
    return str(read_manifest(path_or_dir).get("tokenizer", "default"))


def check_tokenizer(path_or_dir, expected: str) -> None:
    """Refuses TFRecords tokenized otherwise than `expected` (`config.data.tokenizer`).

    Raises:
        ValueError: naming both tokenizers and the manifest, when they differ.
    """
    recorded = tokenizer(path_or_dir)
    if recorded != expected:
        raise ValueError(
            f"config.data.tokenizer is {expected!r} but the TFRecords of "
            f"{manifest_path(path_or_dir)!r} hold word ids of the {recorded!r} tokenizer: "
            f"rebuild them with `python -m cmsa_tf.data.build --tokenizer={expected} ...` or set "
            f"--config.data.tokenizer={recorded}."
        )


def write_file_atomic(path, data: bytes) -> None:
    """Writes bytes to `path` via `<path>.tmp`, fsync and rename; no-op if already identical.

    A reader never sees a half-written file, and an identical rewrite keeps the file's mtime.
    """
    path = os.fspath(path)
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
    fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(path) -> None:
    """fsyncs a directory (so a rename in it is durable); silently skipped where unsupported."""
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


def manifest_bytes(manifest: dict) -> bytes:
    """The manifest as written: indented UTF-8 JSON with a final newline."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_manifest(output_dir, manifest: dict) -> str:
    """Writes `<output_dir>/manifest.json` atomically (`write_file_atomic`); returns its path."""
    path = os.path.join(os.fspath(output_dir), MANIFEST_NAME)
    write_file_atomic(path, manifest_bytes(manifest))
    return path
