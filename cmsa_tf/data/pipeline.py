"""TFRecords -> resized, padded, normalised batches (Model Garden style Decoder / Parser).

`Decoder` turns a serialized `tf.train.Example` (`cmsa_tf.data.schema`) into raw tensors, `Parser`
turns those into model inputs with the preprocessing of `cmsa_tf.data.preprocess`
(docs/design.md, "Preprocessing and the map back"), and `make_dataset` / `dataset_from_manifest`
assemble the `tf.data` pipeline over TFRecord files or one split of a manifest
(`cmsa_tf.data.manifest`), optionally with batches grouped by expression length
(`cmsa_tf.data.bucketing`).

No training augmentation by default: the authors used none, and a plain horizontal flip would be
wrong here because expressions say "left" / "right". `cmsa_tf.data.augment` has flips that
rewrite the words to match (`config.data.augment`), applied last in the `Parser`.

Output element of `make_dataset` (a dict; batched along a leading axis):

| key              | dtype   | shape       | meaning                                            |
|------------------|---------|-------------|----------------------------------------------------|
| `image`          | float32 | [S, S, 3]   | BGR, mean subtracted, pad = -mean                  |
| `words`          | int32   | [T]         | token ids, truncated to T, 0-padded at the end     |
| `mask`           | float32 | [S, S, 1]   | {0, 1}, pad = 0                                    |
| `orig_height`    | int32   | []          | original image height                              |
| `orig_width`     | int32   | []          | original image width                               |
| `scale`          | float32 | []          | `S / max(orig_height, orig_width)`                 |
| `pad_top`        | int32   | []          | rows of padding above the resized image            |
| `pad_left`       | int32   | []          | columns of padding left of the resized image       |
| `resized_height` | int32   | []          | height of the resized image inside the pad         |
| `resized_width`  | int32   | []          | width of the resized image inside the pad          |

The last seven are `preprocess.INFO_KEYS`. With `expressions_per_image=k` (training), a batch of B
holds `image` once per image, [B / k, S, S, 3], and `image_index` int32 [B], each expression's row
of it (`cmsa_tf.data.image_groups`). With `include_original=True` also: `image_bytes` and
`orig_mask_png` (string: the encoded original image and mask, so batches stay dense), `expression`
(string), `image_id`, `ref_id`, `ann_id`, `sentence_id` (int64).
"""

import os
from collections.abc import Callable, Sequence

import tensorflow as tf

from cmsa_tf.data import bucketing, image_groups, image_io, manifest, preprocess, schema
from cmsa_tf.data.bucketing import check_length_buckets  # also importable from here
from cmsa_tf.data.preprocess import DEFAULT_IMAGE_SIZE

DEFAULT_MAX_WORDS = 20

ORIGINAL_KEYS = (
    "image_bytes",
    "orig_mask_png",
    "expression",
    "image_id",
    "ref_id",
    "ann_id",
    "sentence_id",
)


def _check_max_words(max_words):
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise ValueError(f"max_words must be a positive Python int, got {max_words!r}.")


def pad_words(ids, max_words: int = DEFAULT_MAX_WORDS) -> tf.Tensor:
    """Token ids [N] -> int32 [max_words]: truncated, then 0-padded at the end."""
    _check_max_words(max_words)
    ids = tf.cast(tf.convert_to_tensor(ids), tf.int32)
    preprocess.check_rank(ids, 1, "ids", "[num_words]")
    ids = ids[:max_words]
    ids = tf.pad(ids, [[0, max_words - tf.shape(ids)[0]]])
    return tf.ensure_shape(ids, [max_words])  # [T]


# ----------------------------------------------------------------------------------------------
# Decoder and Parser.
# ----------------------------------------------------------------------------------------------


class Decoder:
    """Serialized `tf.train.Example` (schema.py) -> dict of raw tensors.

    Output keys: `image` uint8 [H, W, 3] RGB, `mask` uint8 [H, W, 1] in {0, 1} (any non-zero PNG
    value counts as 1), `ids` int64 [N], and the record's `image_bytes`, `mask_png`, `expression`,
    `image_id`, `ref_id`, `ann_id`, `sentence_id`.

    A record whose image or mask bytes are not an image, or whose sizes disagree with
    `image/height`, `image/width` or each other, fails with `tf.errors.InvalidArgumentError`
    naming the key and the record's ref / sentence ids.

    Example:
    >>> decoded = Decoder().decode(serialized)  # decoded["image"]: uint8 [H, W, 3]
    """

    def decode(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = schema.parse_example(serialized)
        encoded = parsed[schema.IMAGE_ENCODED]
        mask_png = parsed[schema.MASK_ENCODED]
        ref_id = parsed[schema.REF_ID]
        sentence_id = parsed[schema.SENTENCE_ID]
        where = tf.strings.format("(ref/id {}, sentence/id {})", (ref_id, sentence_id))

        image_ok = tf.debugging.Assert(
            image_io.is_supported_image(encoded),
            [
                tf.strings.join(
                    [
                        "Corrupt record ",
                        where,
                        ": image/encoded is not a JPEG, PNG, GIF or BMP file.",
                    ]
                )
            ],
        )
        mask_ok = tf.debugging.Assert(
            image_io.is_png(mask_png),
            [tf.strings.join(["Corrupt record ", where, ": mask/encoded is not a PNG file."])],
        )
        with tf.control_dependencies([image_ok]):
            image = image_io.decode_image(encoded)  # [H, W, 3]
        with tf.control_dependencies([mask_ok]):
            mask = image_io.decode_mask(mask_png)  # [H, W, 1] in {0, 1}

        image_shape = tf.shape(image, out_type=tf.int64)
        mask_shape = tf.shape(mask, out_type=tf.int64)
        size_ok = tf.debugging.Assert(
            tf.logical_and(
                tf.equal(image_shape[0], parsed[schema.IMAGE_HEIGHT]),
                tf.equal(image_shape[1], parsed[schema.IMAGE_WIDTH]),
            ),
            [
                tf.strings.format(
                    "Corrupt record (ref/id {}, sentence/id {}): image/encoded decodes to {}x{} "
                    "but image/height, image/width say {}x{}.",
                    (
                        ref_id,
                        sentence_id,
                        image_shape[0],
                        image_shape[1],
                        parsed[schema.IMAGE_HEIGHT],
                        parsed[schema.IMAGE_WIDTH],
                    ),
                )
            ],
        )
        mask_size_ok = tf.debugging.Assert(
            tf.reduce_all(tf.equal(mask_shape[:2], image_shape[:2])),
            [
                tf.strings.format(
                    "Corrupt record (ref/id {}, sentence/id {}): mask/encoded is {}x{} but the "
                    "image is {}x{}.",
                    (
                        ref_id,
                        sentence_id,
                        mask_shape[0],
                        mask_shape[1],
                        image_shape[0],
                        image_shape[1],
                    ),
                )
            ],
        )
        with tf.control_dependencies([size_ok, mask_size_ok]):
            image = tf.identity(image)
            mask = tf.identity(mask)
        return {
            "image": image,
            "mask": mask,
            "ids": parsed[schema.EXPRESSION_IDS],
            "image_bytes": encoded,
            "mask_png": mask_png,
            "expression": parsed[schema.EXPRESSION_RAW],
            "image_id": parsed[schema.IMAGE_ID],
            "ref_id": ref_id,
            "ann_id": parsed[schema.ANN_ID],
            "sentence_id": sentence_id,
        }


class Parser:
    """Decoded dict -> model inputs (the table in this module's docstring).

    Args:
        image_size: side `S` of the square model input (320 in the paper).
        max_words: number of word slots `T` (20 in the paper).
        include_original: add the encoded original image and mask and the record ids, for
            evaluation at the original resolution.
        preprocessing: "default" or "authors" (`preprocess.PREPROCESSING`: the authors' resize,
            uint8 quantisation and `> 0` masks).
        augment: a function applied last to the parsed example, e.g. `augment.Augmenter`
            (flips that rewrite the words; training only). None: none.

    Training and evaluation parse alike: the authors used no augmentation (and a horizontal flip
    would contradict "left" / "right" in the expressions).

    Example:
    >>> parse = Parser(image_size=320, max_words=20)
    >>> dataset = tf.data.TFRecordDataset(files).map(lambda s: parse(Decoder().decode(s)))

    Reference:
        The authors' preprocessing (docs/design.md, "Preprocessing and the map back");
        Model Garden's `official/vision/dataloaders/segmentation_input.py` for the Decoder /
        Parser split.
    """

    def __init__(
        self,
        image_size: int = DEFAULT_IMAGE_SIZE,
        max_words: int = DEFAULT_MAX_WORDS,
        include_original: bool = False,
        preprocessing: str = "default",
        augment: Callable[[dict], dict] | None = None,
    ):
        preprocess.check_size(image_size)
        _check_max_words(max_words)
        preprocess.check_preprocessing(preprocessing)
        self.image_size = image_size
        self.max_words = max_words
        self.include_original = include_original
        self.preprocessing = preprocessing
        self.augment = augment

    def __call__(self, decoded: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        size, preprocessing = self.image_size, self.preprocessing
        image, info = preprocess.preprocess_image(
            decoded["image"], size, preprocessing=preprocessing
        )  # [S, S, 3]
        mask, _ = preprocess.resize_and_pad_mask(
            decoded["mask"], size, preprocessing=preprocessing
        )  # [S, S, 1]
        outputs = {
            "image": image,
            "words": pad_words(decoded["ids"], self.max_words),  # [T]
            "mask": mask,
        }
        outputs.update(info)
        if self.include_original:
            outputs["image_bytes"] = decoded["image_bytes"]
            outputs["orig_mask_png"] = decoded["mask_png"]
            for key in ("expression", "image_id", "ref_id", "ann_id", "sentence_id"):
                outputs[key] = decoded[key]
        if self.augment is not None:
            outputs = self.augment(outputs)
        return outputs

    def parse_fn(self) -> Callable[[dict], dict]:
        """The per-example function for `Dataset.map` (the same for training and evaluation)."""
        return self.__call__


# ----------------------------------------------------------------------------------------------
# Dataset builders.
# ----------------------------------------------------------------------------------------------


def _list_files(file_pattern_or_files):
    if isinstance(file_pattern_or_files, (str, os.PathLike)):
        patterns = [os.fspath(file_pattern_or_files)]
    else:
        patterns = [os.fspath(p) for p in file_pattern_or_files]
    if not patterns:
        raise ValueError("file_pattern_or_files is empty; pass a glob pattern or a list of files.")
    files = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise ValueError(f"No TFRecord files match {pattern!r}.")
        files.extend(matched)
    return files


def make_dataset(
    file_pattern_or_files: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    max_words: int = DEFAULT_MAX_WORDS,
    batch_size: int,
    training: bool,
    shuffle_buffer: int = 1000,
    seed: int | None = None,
    deterministic: bool = False,
    repeat: bool | int | None = None,
    include_original: bool = False,
    input_context: tf.distribute.InputContext | None = None,
    drop_remainder: bool | None = None,
    skip_corrupt: bool = False,
    preprocessing: str = "default",
    augment: Callable[[dict], dict] | None = None,
    length_buckets: Sequence[int] | None = None,
    expressions_per_image: int = 1,
) -> tf.data.Dataset:
    """TFRecords -> batched dicts of model inputs (see the module docstring for the keys).

    Args:
        file_pattern_or_files: a glob pattern, a file, or a list of them.
        image_size: side `S` of the square input.
        max_words: word slots `T`.
        batch_size: the global batch size; with `input_context` each input pipeline batches
            `input_context.get_per_replica_batch_size(batch_size)`.
        training: shuffle files and records, repeat by default, drop the last partial batch.
        shuffle_buffer: records in the shuffle buffer (training only).
        seed: shuffle seed. With `deterministic=True` and no seed, 0 is used.
        deterministic: fixed element order (`options.deterministic = True`) and seeded shuffles,
            so two datasets built alike give identical batches. Evaluation datasets
            (`training=False`) always keep file and record order.
        repeat: `None` -> forever when training, once otherwise; `True` -> forever; `False` -> once;
            an int `n >= 1` -> `n` epochs.
        include_original: add the encoded original image / mask and the ids (evaluation). These
            string tensors cannot live on accelerators: use them with a plain dataset, not one
            distributed over GPUs.
        input_context: a `tf.distribute.InputContext` (from
            `strategy.distribute_datasets_from_function`): files are sharded by input pipeline
            (records, when there are fewer files than pipelines) and the batch is per replica.
        drop_remainder: `None` -> `training`.
        skip_corrupt: drop records whose image or mask fails to decode (a warning is logged for
            each, by `tf.data`'s `ignore_errors`) instead of raising. Off by default: a corrupt
            record stops the iteration with `tf.errors.InvalidArgumentError` naming it.
        preprocessing: "default" or "authors", as `Parser`.
        augment: as `Parser` (`cmsa_tf.data.augment`); training datasets only.
        length_buckets: None (every batch has T word slots), or increasing word-slot bounds,
            e.g. `(4, 8, 12, 16)`; bounds at or above `max_words` are dropped and `max_words`
            is the last one (`check_length_buckets`). Each expression goes
            to the smallest bucket that holds its words, batches are formed within a bucket
            and their `words` cut to that bucket's bound (`cmsa_tf.data.bucketing`).
        expressions_per_image: k > 1 (training only): each batch holds `batch_size / k` images
            with k expressions of each, `image` once per image and `image_index` [B] saying
            which (`cmsa_tf.data.image_groups`); the shuffle buffer then holds
            `shuffle_buffer / k` groups. 1: independent expressions.

    Returns:
        A `tf.data.Dataset` of dicts.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if (
        isinstance(shuffle_buffer, bool)
        or not isinstance(shuffle_buffer, int)
        or shuffle_buffer < 1
    ):
        raise ValueError(f"shuffle_buffer must be a positive int, got {shuffle_buffer!r}.")
    if repeat is None:
        repeat = bool(training)
    if repeat is True:
        epochs = -1
    elif repeat is False:
        epochs = 1
    elif isinstance(repeat, int) and repeat >= 1:
        epochs = repeat
    else:
        raise ValueError(f"repeat must be None, a bool or an int >= 1, got {repeat!r}.")
    if drop_remainder is None:
        drop_remainder = bool(training)
    grouped = expressions_per_image != 1
    if grouped and not training:
        raise ValueError("expressions_per_image > 1 groups training batches; pass training=True.")
    parser = Parser(
        image_size=image_size,
        max_words=max_words,
        include_original=include_original,
        preprocessing=preprocessing,
        augment=augment if training and not grouped else None,  # a group flips as one
    )
    files = _list_files(file_pattern_or_files)
    ordered = deterministic or not training
    if deterministic and seed is None:
        seed = 0

    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        num_pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
    else:
        num_pipelines, pipeline_id = 1, 0
    group = image_groups.check_expressions_per_image(expressions_per_image, batch_size)

    dataset = tf.data.Dataset.from_tensor_slices(files)
    shard_files = num_pipelines > 1 and len(files) >= num_pipelines
    if shard_files:
        dataset = dataset.shard(num_pipelines, pipeline_id)
    if training:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

    def read(path):  # one file's records, or its image groups ([group] strings)
        records = tf.data.TFRecordDataset(path, buffer_size=8 << 20)
        return image_groups.group_records(records, group) if grouped else records

    dataset = dataset.interleave(
        read,
        cycle_length=min(len(files), 16),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=ordered,
    )
    if num_pipelines > 1 and not shard_files:
        dataset = dataset.shard(num_pipelines, pipeline_id)
    if training:
        buffer = max(1, shuffle_buffer // group)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if epochs != 1:
        dataset = dataset.repeat(epochs)

    decoder = Decoder()
    parse = parser.parse_fn()
    if grouped:
        parse_element = image_groups.parse_group(parse, decoder, augment)
    else:
        parse_element = lambda serialized: parse(decoder.decode(serialized))  # noqa: E731
    # Decoding, parsing and augmenting are plain TensorFlow ops (no Python control flow on
    # tensors): AutoGraph's conversion of them, most of the time a training dataset took to build,
    # is skipped.
    parse_element = tf.autograph.experimental.do_not_convert(parse_element)
    dataset = dataset.map(parse_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
    if skip_corrupt:
        dataset = dataset.ignore_errors(log_warning=True)
    if length_buckets is None:
        dataset = dataset.batch(batch_size // group, drop_remainder=drop_remainder)
    else:
        dataset = bucketing.bucket_by_length(
            dataset,
            check_length_buckets(length_buckets, max_words),
            batch_size // group,
            drop_remainder,
        )
    if grouped:
        dataset = dataset.map(image_groups.flatten_groups)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)

    options = tf.data.Options()
    options.deterministic = ordered
    options.experimental_optimization.map_parallelization = True
    return dataset.with_options(options)


def dataset_from_manifest(manifest_path_or_dir, split: str, **kwargs) -> tf.data.Dataset:
    """`make_dataset` over one split of a TFRecord directory's `manifest.json`.

    Args:
        manifest_path_or_dir: the manifest file or the directory holding `manifest.json`.
        split: e.g. `"train"`, `"val"`, `"testA"`.
        **kwargs: keyword arguments of `make_dataset` (`batch_size` and `training` required).

    Raises:
        ValueError: from `manifest.split_files` (no manifest, bad JSON, unknown split).
    """
    return make_dataset(manifest.split_files(manifest_path_or_dir, split), **kwargs)
