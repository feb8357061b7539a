r"""How many ShapesRef expressions a bag of words cannot tell apart, and what word order gains.

Definitions, per expression `e` of a split (kinds from `scenes.json`):

- *duplicate bag*: the same image has another expression, in any split, with the same multiset of
  words and a different target (none do: the generator never writes both readings);
- *two readings*: a reordering of `e`'s words is another expression. Only relations reorder so:
  "the square left of the blue star" and "the blue star left of the square" are one bag of words
  (the article before the target is optional, the one before the anchor fixed);
- *ambiguous as a bag of words*: the swapped reading (anchor and target exchanged) is a valid
  expression of the image, i.e. its anchor (`e`'s target description) names one object, and it
  fits an object other than `e`'s target (lenient reading of
  `cmsa_tf.data.shapes.checker.matching_objects`). A model that sees the words without their
  order then gets one input for two answers.

ShapesRef writes a relation only when its target description fits two or more objects and its
anchor description exactly one, so the swapped reading never has a valid anchor: the bag is
resolvable from the image (which description is unique). The word-order gain is therefore
measured on the expressions with two readings.

With `--workdirs`, each trained run (its config.json and latest checkpoint) is evaluated on the
split, and the overall IoU is reported on all expressions, on the ambiguous ones and on the rest:

  python benchmarks/word_order.py --refer_root=data/shapes_ref --split=testB
  python benchmarks/word_order.py --refer_root=data/shapes_ref --split=testB \
      --workdirs=workdir/none_s0,workdir/bilstm_s0
"""

import argparse
import collections
import json
import os

import numpy as np


def _swapped(spec):
    return {**spec, "target": spec["anchor"], "anchor": spec["target"]}


def ambiguous_expressions(refer_root: str) -> tuple[dict, dict, dict]:
    """`(kind_of, duplicate, ambiguous)`: sent_id -> kind, and sent_id -> bool for the two
    definitions of the module docstring."""
    from cmsa_tf.data.shapes.checker import matching_objects, objects_fitting

    with open(os.path.join(refer_root, "shapes", "scenes.json")) as f:
        scenes = json.load(f)
    size, margin = scenes["image_size"], scenes["margin"]
    kind_of, duplicate, ambiguous = {}, {}, {}
    for scene in scenes["images"]:
        targets = collections.defaultdict(set)  # bag of words -> target ann_ids in the image
        for expression in scene["expressions"]:
            targets[tuple(sorted(expression["sent"].split()))].add(expression["ann_id"])
        index_of = {obj["ann_id"]: i for i, obj in enumerate(scene["objects"])}
        for expression in scene["expressions"]:
            sent_id, spec = expression["sent_id"], expression["spec"]
            kind_of[sent_id] = spec["kind"]
            duplicate[sent_id] = len(targets[tuple(sorted(expression["sent"].split()))]) > 1
            ambiguous[sent_id] = False
            if spec["kind"] == "relation":
                swapped = _swapped(spec)
                if len(objects_fitting(scene["objects"], swapped["anchor"])) == 1:
                    others = matching_objects(
                        scene["objects"], swapped, image_size=size, margin=margin, strict=False
                    )
                    target = index_of[expression["ann_id"]]
                    ambiguous[sent_id] = any(i != target for i in others)
    return kind_of, duplicate, ambiguous


def split_sentence_ids(refer_root: str, split: str) -> list[int]:
    from cmsa_tf.data import refer

    data = refer.ReferDataset(refer_root, "shapes", "shapes")
    return [sentence.sent_id for _, sentence in data.sentences(split)]


def share_table(refer_root: str, split: str) -> str:
    kind_of, duplicate, ambiguous = ambiguous_expressions(refer_root)
    rows = collections.defaultdict(lambda: np.zeros(4, int))
    for sent_id in split_sentence_ids(refer_root, split):
        two = kind_of[sent_id] == "relation"
        for kind in (kind_of[sent_id], "all"):
            rows[kind] += [1, duplicate[sent_id], two, ambiguous[sent_id]]
    lines = [
        f"| {split} kind | expressions | duplicate bag | two readings (share) "
        "| ambiguous as a bag of words (share) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for kind in [*sorted(k for k in rows if k != "all"), "all"]:
        total, dup, two, amb = rows[kind]
        lines.append(
            f"| {kind} | {total} | {dup} | {two} ({two / max(total, 1):.1%}) "
            f"| {amb} ({amb / max(total, 1):.1%}) |"
        )
    return "\n".join(lines)


def evaluate_workdir(workdir: str, split: str, kind_of: dict) -> dict:
    """Overall IoU of `workdir`'s latest checkpoint on all expressions, on those with two
    readings (relations) and on the others."""
    import ml_collections

    from cmsa_tf.data import manifest
    from cmsa_tf.evaluation.evaluator import iterate_predictions
    from cmsa_tf.models.restore import build_and_restore

    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    model, _, step = build_and_restore(config, workdir=workdir)
    files = manifest.split_files(config.data.tfrecord_dir, split)
    sums = {name: np.zeros(2) for name in ("all", "two_readings", "other")}
    for item in iterate_predictions(model, files, config, progress=False):
        prediction = item["probabilities"] >= config.eval.threshold
        truth = item["ground_truth"]
        iu = np.array([np.sum(prediction & truth), np.sum(prediction | truth)], np.float64)
        group = "two_readings" if kind_of[item["sentence_id"]] == "relation" else "other"
        sums["all"] += iu
        sums[group] += iu
    return {"step": step, **{k: v[0] / max(v[1], 1.0) for k, v in sums.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refer_root", default="data/shapes_ref")
    parser.add_argument("--split", default="testB")
    parser.add_argument("--workdirs", default="", help="Comma-separated trained run directories.")
    args = parser.parse_args()
    print(share_table(args.refer_root, args.split))
    if not args.workdirs:
        return
    kind_of, _, _ = ambiguous_expressions(args.refer_root)
    print(f"\n| run | step | {args.split} overall IoU | two readings | other |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for workdir in args.workdirs.split(","):
        r = evaluate_workdir(workdir, args.split, kind_of)
        name = os.path.basename(os.path.normpath(workdir))
        print(
            f"| {name} | {r['step']} | {100 * r['all']:.2f} | {100 * r['two_readings']:.2f} "
            f"| {100 * r['other']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
