"""Training batches of image groups: several expressions of one image share its backbone pass.

A ShapesRef image carries about 9 expressions and a RefCOCO image about 7; a batch of B
independent expressions runs the backbone B times, on B images. With `expressions_per_image=k`
(`config.data.expressions_per_image`), a batch holds B / k images and k expressions of each, and
the model runs the backbone once per image (`CMSASegmenter`'s `image_index` input): the step
costs the head's B expressions plus the backbone's B / k images.

How the groups are formed, per TFRecord file (the builder writes an image's records one after
another, `cmsa_tf.data.build`): consecutive records of one image are cut into groups of k
(`group_records`). The last group of a run with fewer than k left is completed with the run's
first records (cycled when the run itself is shorter than k), so no expression is dropped and no
slot is padding; those few expressions appear twice in that pass. Memory holds at most one group
and k - 1 records per file. Records of one image that are not consecutive in the file form
separate runs: correct, with less sharing.

Groups, not records, are then shuffled, parsed (`parse_group`: the image and its flips are
shared by the group, each expression keeps its own words and mask), batched B / k at a time and
flattened (`flatten_groups`) into the element of `pipeline.make_dataset` plus `image_index`.

Output element after `flatten_groups` (B expressions, G = B / k images):

| key           | dtype   | shape         | meaning                                        |
|---------------|---------|---------------|------------------------------------------------|
| `image`       | float32 | [G, S, S, 3]  | each image once                                |
| `image_index` | int32   | [B]           | row of `image` that each expression refers to  |
| `words`       | int32   | [B, T]        | as in `pipeline.make_dataset`                  |
| `mask`        | float32 | [B, S, S, 1]  | as in `pipeline.make_dataset`                  |
| info keys     |         | [B]           | `preprocess.INFO_KEYS`, per expression         |

Example:
>>> groups = group_records(tf.data.TFRecordDataset(path), size=4)  # [4] serialized records
>>> parsed = groups.map(parse_group(parser, Decoder()))  # image [S, S, 3], words [4, T], ...
>>> batches = parsed.batch(4).map(flatten_groups)  # image [4, S, S, 3], words [16, T], ...
"""

from collections.abc import Callable

import tensorflow as tf

from cmsa_tf.data import schema

_IMAGE_ID_SPEC = {schema.IMAGE_ID: schema.FEATURE_SPEC[schema.IMAGE_ID]}


def check_expressions_per_image(size, batch_size: int) -> int:
    """`size` as a positive int dividing `batch_size`; a clear error otherwise."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"expressions_per_image must be a positive int, got {size!r}.")
    if batch_size % size:
        raise ValueError(
            f"expressions_per_image={size} must divide the batch size per replica "
            f"({batch_size}): a batch holds batch_size / expressions_per_image whole images."
        )
    return size


def group_records(records: tf.data.Dataset, size: int) -> tf.data.Dataset:
    """Serialized records of one file -> groups of `size` records of one image, `[size]` strings.

    Consecutive records with the same `image/id` form a run, cut into groups of `size`; a run's
    last partial group is completed with the run's first records (cycled if the run is shorter).
    """
    if size == 1:
        return records.map(lambda record: tf.reshape(record, [1]))
    # A record that cannot be a real one (image/id -2, no bytes) flushes the file's last run.
    end = tf.data.Dataset.from_tensors((tf.constant(-2, tf.int64), tf.constant(b"")))
    keyed = records.map(
        lambda r: (tf.io.parse_single_example(r, _IMAGE_ID_SPEC)[schema.IMAGE_ID], r)
    ).concatenate(end)
    empty = tf.fill([size], tf.constant(b""))
    positions = tf.range(size)
    state = (
        tf.constant(-3, tf.int64),  # image id of the current run
        tf.constant(0),  # records in the current run
        empty,  # the run's first records (size - 1 of them are ever needed)
        empty,  # the group being filled
        tf.constant(0),  # records in it
    )

    def step(state, element):
        run_image, run_length, head, group, filled = state
        image_id, record = element
        same = tf.equal(image_id, run_image)
        # The finished run's partial group, completed from the run's first records.
        from_head = tf.gather(
            head, tf.math.floormod(positions - filled, tf.maximum(tf.minimum(run_length, size), 1))
        )
        completed = tf.where(positions < filled, group, from_head)
        flush = tf.logical_and(tf.logical_not(same), filled > 0)

        run_length = tf.where(same, run_length + 1, 1)
        at_head = tf.equal(positions, run_length - 1)
        head = tf.where(tf.logical_and(at_head, run_length <= size), record, head)
        filled = tf.where(same, filled, 0)
        group = tf.where(tf.equal(positions, filled), record, group)
        filled = filled + 1
        full = tf.equal(filled, size)
        out = tf.where(flush, completed, group)
        filled = tf.where(full, 0, filled)
        return (image_id, run_length, head, group, filled), (tf.logical_or(flush, full), out)

    return (
        keyed.scan(state, step)
        .filter(lambda emit, group: emit)
        .map(lambda emit, group: tf.ensure_shape(group, [size]))
    )


def parse_group(
    parse: Callable[[dict], dict],
    decoder,
    augment: Callable[[dict], dict] | None = None,
) -> Callable[[tf.Tensor], dict]:
    """The `Dataset.map` function of a group: `[k]` serialized records -> one parsed group.

    Each record goes through `decoder.decode` and `parse` (a `pipeline.Parser` without
    augmentation); the group keeps the first record's image and stacks the rest per expression:
    `image` [S, S, 3], `words` [k, T], `mask` [k, S, S, 1], info keys [k]. `augment` (e.g.
    `augment.Augmenter`) then flips the image and every mask alike and rewrites every row of
    words. The records must show one image (`image/id`), else `InvalidArgumentError`.
    """

    def parse_one_group(records):
        size = records.shape[0]
        decoded = [decoder.decode(records[i]) for i in range(size)]
        examples = [parse(d) for d in decoded]
        image_ids = tf.stack([d["image_id"] for d in decoded])  # [k]
        same = tf.debugging.assert_equal(
            image_ids,
            tf.fill([size], image_ids[0]),
            message="image group: records of different images (image/id) in one group",
        )
        with tf.control_dependencies([same]):
            group = {"image": tf.identity(examples[0]["image"])}  # [S, S, 3]
        for key in examples[0]:
            if key != "image":
                group[key] = tf.stack([e[key] for e in examples])  # [k, ...]
        return augment(group) if augment is not None else group

    return parse_one_group


def flatten_groups(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """A batch of G groups of k -> B = G * k expressions over G images, with `image_index`."""
    words = batch["words"]  # [G, k, T]
    groups, size = tf.shape(words)[0], tf.shape(words)[1]
    flat = {
        key: tf.reshape(value, tf.concat([[groups * size], tf.shape(value)[2:]], 0))
        for key, value in batch.items()
        if key != "image"
    }  # [B, ...]
    flat["image"] = batch["image"]  # [G, S, S, 3]
    flat["image_index"] = tf.repeat(tf.range(groups, dtype=tf.int32), size)  # [B]
    return flat
