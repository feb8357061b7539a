r"""The best overall IoU any model can reach when it scores at output stride 8.

CMSA scores a stride-8 map and upsamples it bilinearly. This script takes each ground-truth mask
as the pipeline resizes and pads it, averages it down to the stride-8 grid (the best such map:
each cell holds the mask's coverage), upsamples it as the model does, thresholds at 0.5, and
reports the overall IoU against the mask. It needs a built TFRecord directory:

  python benchmarks/resolution_ceiling.py --tfrecord_dir=data/tfrecords/shapes --split=val \
      --sizes=96,128,160
"""

import argparse
import json

import tensorflow as tf

from cmsa_tf.data import pipeline


def ceiling(tfrecord_dir, split, size, stride=8, max_examples=None):
    dataset = pipeline.dataset_from_manifest(
        tfrecord_dir, split, image_size=size, max_words=1, batch_size=64, training=False
    )
    if max_examples:
        dataset = dataset.unbatch().take(max_examples).batch(64)
    intersection = union = 0.0
    count = 0
    cells = -(-size // stride)
    for batch in dataset:
        mask = batch["mask"]  # [B, S, S, 1]
        coarse = tf.image.resize(mask, [cells, cells], method="area")  # [B, S/8, S/8, 1]
        best = tf.image.resize(coarse, [size, size], method="bilinear") >= 0.5
        truth = mask >= 0.5
        intersection += float(tf.reduce_sum(tf.cast(best & truth, tf.float64)))
        union += float(tf.reduce_sum(tf.cast(best | truth, tf.float64)))
        count += int(mask.shape[0])
    return {"size": size, "cells": cells, "expressions": count, "overall_iou": intersection / union}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tfrecord_dir", default="data/tfrecords/shapes")
    parser.add_argument("--split", default="val")
    parser.add_argument("--sizes", default="96,128,160")
    parser.add_argument("--max_examples", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = parser.parse_args()
    rows = [
        ceiling(args.tfrecord_dir, args.split, int(size), max_examples=args.max_examples)
        for size in args.sizes.split(",")
    ]
    print(f"| input size | score map | {args.split} expressions | best overall IoU |")
    print("| ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['size']} | {row['cells']}x{row['cells']} | {row['expressions']} "
            f"| {row['overall_iou']:.3f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"split": args.split, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
