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

Tokenizer (`--tokenizer`, recorded in the manifest): "default" (`cmsa_tf.data.tokenizer`) or
"authors" (`cmsa_tf.data.authors_tokenizer`: their tokenisation, and `--vocab_file` read in their
format, ids = line numbers, copied byte for byte as `vocab.txt`), e.g. for their G-Ref model:
`--tokenizer=authors --vocab_file=vocabulary_Gref.txt`. Training, evaluation and the export refuse
TFRecords whose tokenizer is not `config.data.tokenizer`.

Manifest (JSON): `dataset`, `split_by`, `text_field`, `tokenizer`, `complete`, `vocabulary`
{file, size, sha256, layout, source, min_count}, `counts` {split: examples}, `max_words`
(longest written expression, in tokens), `splits` {split: {files, examples, candidates, skipped,
max_words, shards [{file, count, candidates, bytes, sha256, fingerprint, max_words, skipped
[...]}]}}, `skipped` {total, by_reason, items [{split, ref_id, sent_ids, ann_id, image_id, file,
reason, detail}]}. `counts` and `skipped` count examples ((ref, sentence) pairs). It is written
and read through `cmsa_tf.data.manifest`.

Modules: `planning` (the shard tasks, fingerprints, what an earlier run left), `shards` (a worker
writing one shard, the skip reasons), `summary` (the manifest's totals), `builder`
(`build_tfrecords`), `__main__` (the command line).
"""

from cmsa_tf.data.build.builder import TEXT_FIELDS, build_tfrecords
from cmsa_tf.data.build.planning import BUILDER_VERSION, EXAMPLES_PER_SHARD
from cmsa_tf.data.build.shards import SKIP_REASONS, BuildError, shard_file_name

__all__ = [
    "BUILDER_VERSION",
    "EXAMPLES_PER_SHARD",
    "SKIP_REASONS",
    "TEXT_FIELDS",
    "BuildError",
    "build_tfrecords",
    "shard_file_name",
]
