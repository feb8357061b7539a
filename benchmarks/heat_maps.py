r"""Do the Fig. 5 heat maps show the referent? The share of expressions hotter inside the mask.

For every expression of a split, the heat map of each criterion of `visualize.HEAT_MAP_CRITERIA`
is computed from the trained model's fused features (at the original image size, as TensorBoard
shows it), and counted when its mean inside the ground-truth mask is larger than its mean outside
(`visualize.hotter_inside`); also counted, more strictly, when its hottest pixel lies inside the
mask. Prints a table, writes the rows to JSON and, with `--png`, the heat-map
panels of the first `--png_examples` expressions stacked in one PNG:

  python benchmarks/heat_maps.py --config=configs/shapes.py --workdir=workdir/shapes \
      --tfrecord_dir=data/tfrecords/shapes --split=val --png=docs/images/heat_maps.png
"""

import argparse
import importlib.util
import json
import os
import platform

import numpy as np

from cmsa_tf import visualize
from cmsa_tf.data import manifest
from cmsa_tf.data.image_io import decode_rgb
from cmsa_tf.evaluation.evaluator import item_heat_map, iterate_predictions
from cmsa_tf.evaluation.metrics import ReferringSegmentationMetrics
from cmsa_tf.models.restore import build_and_restore


def load_config(path, arg=None):
    spec = importlib.util.spec_from_file_location("heat_map_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def measure(model, config, split, max_examples=None, png_examples=0):
    """Share of expressions hotter inside their mask, per criterion; and the first panels."""
    weights = visualize.score_weights(model)
    files = manifest.split_files(config.data.tfrecord_dir, split)
    hotter = {criterion: [] for criterion in visualize.HEAT_MAP_CRITERIA}
    peak = {criterion: [] for criterion in visualize.HEAT_MAP_CRITERIA}
    metrics = ReferringSegmentationMetrics()
    panels = []
    for index, item in enumerate(iterate_predictions(model, files, config, max_examples)):
        truth = item["ground_truth"]
        iou = metrics.update(item["probabilities"] >= config.eval.threshold, truth)
        for criterion in visualize.HEAT_MAP_CRITERIA:
            heat = item_heat_map(item, weights, config.data.image_size, criterion)
            hotter[criterion].append(visualize.hotter_inside(heat, truth))
            peak[criterion].append(bool(truth.flat[np.argmax(heat)]))
            if index < png_examples and criterion == visualize.DEFAULT_HEAT_MAP_CRITERION:
                rgb = decode_rgb(item["image_bytes"])
                panels.append(visualize.heat_map_image(rgb, heat, item["expression"], iou=iou))
    rows = [
        {
            "criterion": criterion,
            "default": criterion == visualize.DEFAULT_HEAT_MAP_CRITERION,
            "expressions": len(values),
            "hotter_inside": int(np.sum(values)),
            "share": float(np.mean(values)),
            "peak_inside": float(np.mean(peak[criterion])),
        }
        for criterion, values in hotter.items()
    ]
    return rows, metrics.result(), panels


def stack(panels):
    """Panels one above the other on white, left-aligned."""
    width = max(panel.shape[1] for panel in panels)
    padded = [
        np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in panels
    ]
    return np.concatenate(padded, axis=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/shapes.py")
    parser.add_argument("--workdir", default="workdir/shapes")
    parser.add_argument("--tfrecord_dir", default="data/tfrecords/shapes")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max_examples", type=int, default=None)
    parser.add_argument("--json", default="benchmarks/results/heat_maps.json")
    parser.add_argument("--png", default=None, help="write the first heat-map panels here")
    parser.add_argument("--png_examples", type=int, default=3)
    args = parser.parse_args()
    config = load_config(args.config)
    config.data.tfrecord_dir = args.tfrecord_dir
    model, checkpoint, step = build_and_restore(config, workdir=args.workdir)
    rows, result, panels = measure(
        model, config, args.split, args.max_examples, args.png_examples if args.png else 0
    )
    print(
        f"{args.split}: {rows[0]['expressions']} expressions, model {checkpoint} (step {step}), "
        f"overall IoU {result['overall_iou']:.3f}"
    )
    print("| criterion | hotter inside the mask | share | hottest pixel inside the mask |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        name = row["criterion"] + (" (default)" if row["default"] else "")
        print(
            f"| {name} | {row['hotter_inside']} / {row['expressions']} | {row['share']:.1%} "
            f"| {row['peak_inside']:.1%} |"
        )
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(
                {
                    "split": args.split,
                    "config": args.config,
                    "checkpoint": checkpoint,
                    "step": step,
                    "overall_iou": result["overall_iou"],
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
                    "rows": rows,
                },
                f,
                indent=2,
            )
    if args.png and panels:
        visualize.save_png(args.png, stack(panels))
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
