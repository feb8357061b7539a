r"""The best overall IoU any model can reach when it scores at a given stride (8 by default).

CMSA scores a stride-8 map and upsamples it bilinearly. This script takes each ground-truth mask
as the pipeline resizes and pads it, averages it down to the stride-8 grid (the best such map:
each cell holds the mask's coverage), upsamples it as the model does, thresholds at 0.5, and
reports the overall IoU against the mask. `--strides` scores other strides of the finest
level (4: a score map at 1/4 of the input). It needs a built TFRecord directory:

  python benchmarks/resolution_ceiling.py --tfrecord_dir=data/tfrecords/shapes --split=val \
      --sizes=96,128,160 --strides=8,4
"""

import argparse
import json

import tensorflow as tf

from cmsa_tf.data import pipeline


def score_map_cells(size, stride):
    """Cells per side of the stride-`stride` score map of a `size` x `size` input."""
    return -(-size // stride)


def best_map_overlap(mask, stride):
    """Intersection and union of the best stride-`stride` map with `mask` [B, S, S, 1] in {0, 1}.

    The best map holds each cell's mask coverage (area average); it is upsampled bilinearly to
    S x S, as the model's scores are, and thresholded at 0.5.
    """
    size = int(mask.shape[1])
    cells = score_map_cells(size, stride)
    coarse = tf.image.resize(mask, [cells, cells], method="area")  # [B, S/stride, S/stride, 1]
    best = tf.image.resize(coarse, [size, size], method="bilinear") >= 0.5
    truth = mask >= 0.5
    intersection = float(tf.reduce_sum(tf.cast(best & truth, tf.float64)))
    union = float(tf.reduce_sum(tf.cast(best | truth, tf.float64)))
    return intersection, union


def ceiling(tfrecord_dir, split, size, stride=8, max_examples=None):
    dataset = pipeline.dataset_from_manifest(
        tfrecord_dir, split, image_size=size, max_words=1, batch_size=64, training=False
    )
    if max_examples:
        dataset = dataset.unbatch().take(max_examples).batch(64)
    intersection = union = 0.0
    count = 0
    for batch in dataset:
        mask = batch["mask"]  # [B, S, S, 1]
        i, u = best_map_overlap(mask, stride)
        intersection += i
        union += u
        count += int(mask.shape[0])
    return {
        "size": size,
        "stride": stride,
        "cells": score_map_cells(size, stride),
        "expressions": count,
        "overall_iou": intersection / union,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tfrecord_dir", default="data/tfrecords/shapes")
    parser.add_argument("--split", default="val")
    parser.add_argument("--sizes", default="96,128,160")
    parser.add_argument("--strides", default="8", help="strides of the score map, e.g. 8,4")
    parser.add_argument("--max_examples", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = parser.parse_args()
    rows = [
        ceiling(args.tfrecord_dir, args.split, int(size), int(stride), args.max_examples)
        for size in args.sizes.split(",")
        for stride in args.strides.split(",")
    ]
    print(f"| input size | stride | score map | {args.split} expressions | best overall IoU |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['size']} | {row['stride']} | {row['cells']}x{row['cells']} "
            f"| {row['expressions']} | {row['overall_iou']:.3f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"split": args.split, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
