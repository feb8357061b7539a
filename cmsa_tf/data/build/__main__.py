r"""Command line of the TFRecord builder: `python -m cmsa_tf.data.build --refer_root=... ...`.

    python -m cmsa_tf.data.build --refer_root=data/refer --dataset=refcoco --split_by=unc \
        --image_root=data/coco/train2014 --output_dir=data/tfrecords/refcoco_unc

Calls `cmsa_tf.data.build.build_tfrecords` with the flags and prints the counts, the skipped
examples by reason, the vocabulary size and the longest expression.
"""

import json

from absl import app, flags

from cmsa_tf.data import refer
from cmsa_tf.data.build import EXAMPLES_PER_SHARD, TEXT_FIELDS, build_tfrecords
from cmsa_tf.data.tokenizer import TOKENIZERS

flags.DEFINE_string(
    "refer_root", None, "Folder with <dataset>/instances.json and refs(<split_by>).p."
)
flags.DEFINE_string("dataset", None, f"One of {sorted(refer.VALID_SPLIT_BY)}.")
flags.DEFINE_string("split_by", None, "unc, google, umd, berkeley or shapes.")
flags.DEFINE_string("image_root", None, "Folder holding the images (instances.json file_name).")
flags.DEFINE_string("output_dir", None, "Where TFRecords, vocab.txt and manifest.json go.")
flags.DEFINE_list("splits", None, "Splits to build (default: all present).")
flags.DEFINE_integer(
    "num_shards", None, f"Shards per split (default: one per {EXAMPLES_PER_SHARD} examples)."
)
flags.DEFINE_integer("min_count", 1, "Minimum train-split count of a vocabulary token.")
flags.DEFINE_string(
    "vocab_file",
    None,
    "Reuse this vocabulary instead of building one (needed by --tokenizer=authors).",
)
flags.DEFINE_enum(
    "tokenizer",
    "default",
    list(TOKENIZERS),
    "Tokenizer and vocabulary format: 'authors' reads --vocab_file as the authors' code does "
    "(ids = line numbers) and tokenizes as theirs; train with the same config.data.tokenizer.",
)
flags.DEFINE_bool("strict", False, "Fail on the first bad item instead of skipping it.")
flags.DEFINE_integer("num_workers", 2, "Worker processes.")
flags.DEFINE_enum("text_field", "sent", list(TEXT_FIELDS), "Sentence field to tokenize and store.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
for _name in ("refer_root", "dataset", "split_by", "image_root", "output_dir"):
    flags.mark_flag_as_required(_name)


@flags.multi_flags_validator(["dataset", "split_by"])
def _check_dataset_flags(values):
    if values["dataset"] is None or values["split_by"] is None:
        return True  # reported as missing required flags
    try:
        refer.check_dataset(values["dataset"], values["split_by"])
    except ValueError as error:
        raise flags.ValidationError(str(error)) from None
    return True


FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    manifest = build_tfrecords(
        FLAGS.refer_root,
        FLAGS.dataset,
        FLAGS.split_by,
        FLAGS.image_root,
        FLAGS.output_dir,
        splits=FLAGS.splits,
        num_shards=FLAGS.num_shards,
        min_count=FLAGS.min_count,
        vocab_file=FLAGS.vocab_file,
        strict=FLAGS.strict,
        num_workers=FLAGS.num_workers,
        progress=FLAGS.progress,
        text_field=FLAGS.text_field,
        tokenizer=FLAGS.tokenizer,
    )
    summary = {
        "counts": manifest["counts"],
        "skipped": manifest["skipped"]["by_reason"],
        "vocabulary_size": manifest["vocabulary"]["size"],
        "max_words": manifest["max_words"],
        "tokenizer": manifest["tokenizer"],
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app.run(main)
