r"""Where a trained ShapesRef model fails: overall IoU per expression kind, wrong objects vs masks.

ShapesRef writes four kinds of expressions (`scenes.json`, `cmsa_tf.data.shapes`): attribute
("the big blue triangle"), location ("the square at the top left"), ordinal ("the second circle
from the left") and relation ("the square left of the blue star"). For each kind of one split this
scores a trained run (its `config.json` and latest checkpoint, without DenseCRF) and separates two
failures:

- *missed*: the expressions whose IoU is below `--miss_iou` (0.2): the model segmented another
  object, or nothing;
- *mean IoU of the rest*: how good the masks are where the object was found, to compare with the
  ceiling of the score map's resolution (`benchmarks/resolution_ceiling.py`).

  python benchmarks/shapes_kinds.py --workdir=workdir/shapes --split=val
"""

import argparse
import collections
import json
import os

import numpy as np

DEFAULT_MISS_IOU = 0.2


def expression_kinds(refer_root: str) -> dict:
    """sent_id -> kind (`attribute`, `location`, `ordinal`, `relation`), from `scenes.json`."""
    path = os.path.join(refer_root, "shapes", "scenes.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No ShapesRef scenes file at {path}: --refer_root must be the directory "
            "`python -m cmsa_tf.data.shapes --output_dir=...` wrote."
        )
    with open(path) as f:
        scenes = json.load(f)
    return {e["sent_id"]: e["spec"]["kind"] for s in scenes["images"] for e in s["expressions"]}


def kind_rows(scores, kind_of: dict, miss_iou: float = DEFAULT_MISS_IOU) -> dict:
    """Aggregates per-expression `(sentence_id, intersection, union)` into one row per kind.

    Returns:
        kind (and `"all"`) -> dict with `expressions`, `overall_iou` (summed intersections over
        summed unions), `missed` (share of expressions with IoU < `miss_iou`; an empty prediction
        of an empty target counts as IoU 1) and `rest_mean_iou` (mean IoU of the others; NaN
        when every expression was missed).
    """
    groups = collections.defaultdict(list)
    for sentence_id, intersection, union in scores:
        if sentence_id not in kind_of:
            raise KeyError(
                f"Sentence {sentence_id} is not in the scenes file: the run's TFRecords and "
                "--refer_root come from different ShapesRef generations."
            )
        for key in (kind_of[sentence_id], "all"):
            groups[key].append((float(intersection), float(union)))
    rows = {}
    for key, values in groups.items():
        i, u = np.array(values).T
        iou = np.where(u > 0, i / np.maximum(u, 1.0), 1.0)
        hit = iou >= miss_iou
        rows[key] = {
            "expressions": len(values),
            "overall_iou": float(i.sum() / max(u.sum(), 1.0)),
            "missed": float(1.0 - hit.mean()),
            "rest_mean_iou": float(iou[hit].mean()) if hit.any() else float("nan"),
        }
    return rows


def markdown_table(rows: dict, split: str, miss_iou: float = DEFAULT_MISS_IOU) -> str:
    lines = [
        f"| {split} kind | expressions | overall IoU | IoU < {miss_iou:g} (wrong object or none) "
        "| mean IoU of the rest |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for kind in [*sorted(k for k in rows if k != "all"), "all"]:
        if kind not in rows:
            continue
        r = rows[kind]
        lines.append(
            f"| {kind} | {r['expressions']} | {100 * r['overall_iou']:.1f} "
            f"| {100 * r['missed']:.1f}% | {100 * r['rest_mean_iou']:.1f} |"
        )
    return "\n".join(lines)


def score_workdir(workdir: str, split: str, max_examples: int | None = None):
    """Yields `(sentence_id, intersection, union)` for the latest checkpoint of `workdir` on
    `split`, scored as `cmsa_tf.evaluate` scores it (its protocol, at each image's original size),
    without CRF."""
    import ml_collections

    from cmsa_tf.data import manifest
    from cmsa_tf.evaluation.evaluator import iterate_predictions
    from cmsa_tf.evaluation.metrics import intersection_and_union
    from cmsa_tf.evaluation.protocols import get_protocol
    from cmsa_tf.models.restore import build_and_restore

    config_path = os.path.join(workdir, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"--workdir={workdir} holds no config.json: train it first.")
    with open(config_path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    model, _, _ = build_and_restore(config, workdir=workdir)
    protocol = get_protocol(config.eval.get("protocol", "exact"), config.eval.threshold)
    files = manifest.split_files(config.data.tfrecord_dir, split)
    for item in iterate_predictions(model, files, config, max_examples=max_examples, desc=split):
        intersection, union = intersection_and_union(protocol.mask(item), item["ground_truth"])
        yield item["sentence_id"], intersection, union


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="A trained run directory.")
    parser.add_argument("--refer_root", default="data/shapes_ref")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max_examples", type=int, default=0, help="0: the whole split.")
    parser.add_argument("--miss_iou", type=float, default=DEFAULT_MISS_IOU)
    args = parser.parse_args()
    kind_of = expression_kinds(args.refer_root)
    scores = score_workdir(args.workdir, args.split, args.max_examples or None)
    rows = kind_rows(scores, kind_of, args.miss_iou)
    print(markdown_table(rows, args.split, args.miss_iou))


if __name__ == "__main__":
    main()
