r"""Evaluates a trained CMSA model with the authors' protocol, with and without DenseCRF.

  python -m cmsa_tf.evaluate --config=configs/refcoco_unc.py --workdir=workdir/refcoco_unc \
      --split=val --crf

Predictions are mapped back to each original image (crop the pad, resize), thresholded at 0.5 and
compared with the original mask: overall IoU (sum I / sum U, Table 1 of the paper), mean IoU and
prec@0.5..0.9. `--crf` adds the same metrics after DenseCRF refinement. Results go to
`<workdir>/eval/<split>.json` and `.md`; `--num_overlays` writes prediction overlays there too.
Uses the latest checkpoint of the workdir unless `--checkpoint` names one.
"""

import io
import json
import multiprocessing
import os

from absl import app, flags, logging
from ml_collections import config_flags
import numpy as np
from PIL import Image
import tensorflow as tf

from cmsa_tf import visualize
from cmsa_tf.data import pipeline
from cmsa_tf.evaluation.dense_crf import dense_crf
import cmsa_tf.evaluation.metrics as metrics_lib
from cmsa_tf.utils import experiment

def decode_png(data):
    return np.asarray(Image.open(io.BytesIO(data)))


def decode_rgb(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _crf_job(args):
    image_bytes, probabilities = args
    return dense_crf(decode_rgb(image_bytes), probabilities)


class Predictor:
    """Runs the model on pipeline batches; returns probabilities at each original image size."""

    def __init__(self, model):
        self.model = model

        @tf.function(reduce_retracing=True)
        def predict(image, words, info):
            outputs = model({"image": image, "words": words}, training=False, return_attention=True)
            probabilities = tf.sigmoid(outputs["logits"])  # [B, S, S, 1]
            restored = pipeline.unpad_and_resize_batch(probabilities, info)  # [B, Hmax, Wmax, 1]
            return restored[..., 0], probabilities[..., 0], outputs["word_attention"], outputs[
                "features"
            ]

        self._predict = predict

    def __call__(self, batch):
        info = {key: batch[key] for key in pipeline.INFO_KEYS}
        restored, padded, attention, features = self._predict(batch["image"], batch["words"], info)
        restored = restored.numpy()
        heights = batch["orig_height"].numpy()
        widths = batch["orig_width"].numpy()
        return {
            "probabilities": [restored[i, : heights[i], : widths[i]] for i in range(len(heights))],
            "padded_probabilities": padded.numpy(),
            "word_attention": attention.numpy(),
            "features": features.numpy(),
        }


def iterate_predictions(model, files, config, max_examples=None, progress=True, desc="eval"):
    """Yields one dict per expression: probabilities and ground truth at the original size, etc."""
    dataset = pipeline.make_dataset(
        files,
        image_size=config.data.image_size,
        max_words=config.data.max_words,
        batch_size=config.eval.batch_size,
        training=False,
        include_original=True,
    )
    if max_examples:
        dataset = dataset.unbatch().take(max_examples).batch(config.eval.batch_size)
    predictor = Predictor(model)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=desc, unit="expr", total=max_examples, dynamic_ncols=True)
    try:
        for batch in dataset:
            out = predictor(batch)
            for i, probabilities in enumerate(out["probabilities"]):
                yield {
                    "probabilities": probabilities,
                    "ground_truth": decode_png(batch["orig_mask_png"][i].numpy()) > 0,
                    "image_bytes": batch["image_bytes"][i].numpy(),
                    "expression": batch["expression"][i].numpy().decode("utf-8"),
                    "words": batch["words"][i].numpy(),
                    "word_attention": out["word_attention"][i],
                    "features": out["features"][i],
                    "ref_id": int(batch["ref_id"][i]),
                    "sentence_id": int(batch["sentence_id"][i]),
                }
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def evaluate_split(
    model,
    config,
    split,
    *,
    crf=False,
    max_examples=None,
    crf_workers=1,
    num_overlays=0,
    overlay_dir=None,
    progress=True,
):
    """Evaluates one split; returns {"<split>": metrics, "<split> + CRF": metrics}."""
    files = experiment.split_files(config.data.tfrecord_dir, split)
    plain = metrics_lib.ReferringSegmentationMetrics()
    refined = metrics_lib.ReferringSegmentationMetrics()
    pending = []
    pool = None
    if crf and crf_workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(crf_workers)
    try:
        for index, item in enumerate(
            iterate_predictions(model, files, config, max_examples, progress, desc=split)
        ):
            prediction = item["probabilities"] >= config.eval.threshold
            iou = plain.update(prediction, item["ground_truth"])
            if index < num_overlays and overlay_dir:
                panel = visualize.comparison_panel(
                    decode_rgb(item["image_bytes"]),
                    item["ground_truth"],
                    item["probabilities"],
                    item["expression"],
                    threshold=config.eval.threshold,
                    iou=iou,
                )
                visualize.save_png(os.path.join(overlay_dir, f"{split}_{index:04d}.png"), panel)
            if crf:
                job = (item["image_bytes"], item["probabilities"])
                if pool is None:
                    refined.update(_crf_job(job), item["ground_truth"])
                else:
                    pending.append((pool.apply_async(_crf_job, (job,)), item["ground_truth"]))
                    if len(pending) >= 8 * crf_workers:
                        result, truth = pending.pop(0)
                        refined.update(result.get(), truth)
        for result, truth in pending:
            refined.update(result.get(), truth)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    results = {split: plain.result()}
    if crf:
        results[f"{split} + CRF"] = refined.result()
    return results


def write_results(results, output_dir, name, extra=None):
    """Writes `<name>.json` and `<name>.md`; returns the markdown table."""
    tf.io.gfile.makedirs(output_dir)
    table = metrics_lib.to_markdown(results)
    with tf.io.gfile.GFile(os.path.join(output_dir, f"{name}.json"), "w") as f:
        json.dump(dict(extra or {}, results=results), f, indent=2)
    with tf.io.gfile.GFile(os.path.join(output_dir, f"{name}.md"), "w") as f:
        f.write(table + "\n")
    return table


class TrainingEvaluator:
    """Evaluation during training: TensorBoard scalars, overlays, Fig. 4 and Fig. 5 images."""

    def __init__(self, config, model, workdir, vocabulary=None):
        self.config = config
        self.model = model
        self.split = config.data.eval_splits[0]
        self.files = experiment.split_files(config.data.tfrecord_dir, self.split)
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, "eval"))
        self.vocabulary = vocabulary
        if self.vocabulary is None:
            from cmsa_tf.data.tokenizer import Vocabulary

            manifest = experiment.read_manifest(config.data.tfrecord_dir)
            self.vocabulary = Vocabulary.from_file(manifest["vocab_file"])

    def run(self, step):
        eval_config = self.config.eval
        num_images = eval_config.num_images
        metrics = metrics_lib.ReferringSegmentationMetrics()
        images = []
        for index, item in enumerate(
            iterate_predictions(
                self.model,
                self.files,
                self.config,
                eval_config.max_examples_during_training,
                progress=False,
            )
        ):
            iou = metrics.update(item["probabilities"] >= eval_config.threshold, item["ground_truth"])
            if index < num_images:
                images.append((item, iou))
        result = metrics.result()
        with self.writer.as_default(step=step):
            for key, value in result.items():
                if key != "count":
                    tf.summary.scalar(f"{self.split}/{key}", value)
            for index, (item, iou) in enumerate(images):
                rgb = decode_rgb(item["image_bytes"])
                panel = visualize.comparison_panel(
                    rgb, item["ground_truth"], item["probabilities"], item["expression"],
                    threshold=eval_config.threshold, iou=iou,
                )
                tf.summary.image(f"predictions/{index}", panel[None], step=step)
                tokens = [self.vocabulary.tokens[i] for i in item["words"] if i != 0]
                figure = visualize.word_attention_image(
                    tokens, item["word_attention"], level_names=self.model.levels,
                    title=item["expression"],
                )
                tf.summary.image(f"word_attention/{index}", figure[None], step=step)
                heat = visualize.heat_map(item["features"], rgb.shape[:2])
                tf.summary.image(
                    f"heat_map/{index}", visualize.heat_map_overlay(rgb, heat)[None], step=step
                )
        self.writer.flush()
        logging.info(
            "step %d %s: overall IoU %.4f, mean IoU %.4f",
            step, self.split, result["overall_iou"], result["mean_iou"],
        )
        return result


def define_flags():
    """Defines this program's flags (only when it runs as the main program, so that importing
    this module next to `cmsa_tf.train` does not define `--config` twice)."""
    config_flags.DEFINE_config_file("config", None, "Experiment config file.")
    flags.DEFINE_string("workdir", None, "Training directory (checkpoints).")
    flags.DEFINE_string("checkpoint", None, "Checkpoint prefix; default: the latest.")
    flags.DEFINE_list("split", ["val"], "Split(s) to evaluate, e.g. val,testA,testB.")
    flags.DEFINE_boolean("crf", False, "Also evaluate after DenseCRF refinement.")
    flags.DEFINE_integer("max_examples", None, "Evaluate only the first N.")
    flags.DEFINE_integer("num_overlays", 0, "Write this many overlay PNGs.")
    flags.DEFINE_integer("crf_workers", 2, "Processes for DenseCRF.")
    flags.DEFINE_string("output_dir", None, "Default: <workdir>/eval.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    config = FLAGS.config
    if config is None or not (FLAGS.workdir or FLAGS.checkpoint):
        raise app.UsageError("--config and --workdir (or --checkpoint) are required.")
    model, checkpoint, step = experiment.build_and_restore(
        config, workdir=FLAGS.workdir, checkpoint=FLAGS.checkpoint
    )
    logging.info("Evaluating %s (step %d).", checkpoint, step)
    output_dir = FLAGS.output_dir or os.path.join(
        FLAGS.workdir or os.path.dirname(os.path.dirname(checkpoint)), "eval"
    )
    all_results = {}
    for split in FLAGS.split:
        results = evaluate_split(
            model,
            config,
            split,
            crf=FLAGS.crf,
            max_examples=FLAGS.max_examples,
            crf_workers=FLAGS.crf_workers,
            num_overlays=FLAGS.num_overlays,
            overlay_dir=os.path.join(output_dir, "overlays"),
        )
        table = write_results(
            results, output_dir, split, extra={"checkpoint": checkpoint, "step": step}
        )
        print(table)
        all_results.update(results)
    if len(FLAGS.split) > 1:
        table = write_results(
            all_results, output_dir, "summary", extra={"checkpoint": checkpoint, "step": step}
        )
        print("\n" + table)


if __name__ == "__main__":
    define_flags()
    app.run(main)
