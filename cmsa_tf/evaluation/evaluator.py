"""Evaluation: predictions at each original image size, metrics, DenseCRF refinement, overlays
and the result files.

Predictions become masks at each original image size by the protocol `config.eval.protocol`
(`cmsa_tf.evaluation.protocols`: "exact" crops the pad, resizes and thresholds at
`config.eval.threshold`; "authors" is the map-back of the authors' code) and are compared with the
original mask. Images and masks are decoded with `cmsa_tf.data.image_io`, the decoder the model's
input pipeline uses, so evaluation sees the pixels the model saw.
"""

import json
import multiprocessing
import os
from collections.abc import Iterator

import ml_collections
import tensorflow as tf
from absl import logging

import cmsa_tf.evaluation.metrics as metrics_lib
from cmsa_tf import visualize
from cmsa_tf.data import manifest, pipeline
from cmsa_tf.data.image_io import decode_mask_png, decode_rgb
from cmsa_tf.data.map_back import unpad_and_resize_batch
from cmsa_tf.data.preprocess import INFO_KEYS, padded_window, to_uint8_rgb
from cmsa_tf.evaluation.protocols import get_protocol, run_crf_job


class BatchPredictor:
    """Runs the model on pipeline batches; returns probabilities at each original image size.

    Args:
        model: a `CMSASegmenter` (or any callable with its inputs and outputs).

    Calling it on a batch of `make_dataset(..., include_original=True)` returns a dict:
    `probabilities` (a list of float32 [H_i, W_i] maps, one per example, at its original size),
    `padded_probabilities` and `padded_logits` [B, S, S], `word_attention` and `features` (the
    model's outputs).
    """

    def __init__(self, model):
        self.model = model

        @tf.function(reduce_retracing=True)
        def predict(image, words, info):
            outputs = model({"image": image, "words": words}, training=False, return_attention=True)
            probabilities = tf.sigmoid(outputs["logits"])  # [B, S, S, 1]
            restored = unpad_and_resize_batch(probabilities, info)  # [B, Hmax, Wmax, 1]
            return (
                restored[..., 0],
                probabilities[..., 0],
                outputs["logits"][..., 0],
                outputs["word_attention"],
                outputs["features"],
            )

        self._predict = predict

    def __call__(self, batch: dict) -> dict:
        info = {key: batch[key] for key in INFO_KEYS}
        restored, padded, logits, attention, features = self._predict(
            batch["image"], batch["words"], info
        )
        restored = restored.numpy()
        heights = batch["orig_height"].numpy()
        widths = batch["orig_width"].numpy()
        return {
            "probabilities": [restored[i, : heights[i], : widths[i]] for i in range(len(heights))],
            "padded_probabilities": padded.numpy(),
            "padded_logits": logits.numpy(),
            "word_attention": attention.numpy(),
            "features": features.numpy(),
        }


def iterate_predictions(
    model,
    files: list[str],
    config: ml_collections.ConfigDict,
    max_examples: int | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> Iterator[dict]:
    """Yields one dict per expression of `files`, in file order.

    Keys: `probabilities` (float32 [H, W] at the original size), `ground_truth` (bool [H, W]),
    `image_bytes`, `expression`, `words`, `word_attention`, `features`, `ref_id`, `sentence_id`,
    and at the model's input size `padded_logits`, `padded_probabilities` (float32 [S, S]) and
    `padded_image` (uint8 RGB [S, S, 3], the model's input image).
    """
    dataset = pipeline.make_dataset(
        files,
        image_size=config.data.image_size,
        max_words=config.data.max_words,
        batch_size=config.eval.batch_size,
        training=False,
        include_original=True,
        preprocessing=config.data.get("preprocessing", "default"),
    )
    if max_examples:
        dataset = dataset.unbatch().take(max_examples).batch(config.eval.batch_size)
    predictor = BatchPredictor(model)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=desc, unit="expr", total=max_examples, dynamic_ncols=True)
    try:
        for batch in dataset:
            out = predictor(batch)
            padded_images = to_uint8_rgb(batch["image"].numpy())  # [B, S, S, 3]
            for i, probabilities in enumerate(out["probabilities"]):
                yield {
                    "probabilities": probabilities,
                    "ground_truth": decode_mask_png(batch["orig_mask_png"][i].numpy()) > 0,
                    "image_bytes": batch["image_bytes"][i].numpy(),
                    "expression": batch["expression"][i].numpy().decode("utf-8"),
                    "words": batch["words"][i].numpy(),
                    "word_attention": out["word_attention"][i],
                    "features": out["features"][i],
                    "padded_logits": out["padded_logits"][i],
                    "padded_probabilities": out["padded_probabilities"][i],
                    "padded_image": padded_images[i],
                    "ref_id": int(batch["ref_id"][i]),
                    "sentence_id": int(batch["sentence_id"][i]),
                }
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def item_heat_map(
    item: dict,
    score_weights: tuple,
    image_size: int,
    criterion: str = visualize.DEFAULT_HEAT_MAP_CRITERION,
):
    """The Fig. 5 heat map (`visualize.heat_map`) of one item of `iterate_predictions`, at its
    image's original size, mapped back through the pad of the `image_size` input.

    Args:
        score_weights: `(kernel, bias)` of the model's score convolution
            (`visualize.score_weights`).
    """
    height, width = item["ground_truth"].shape
    kernel, bias = score_weights
    return visualize.heat_map(
        item["features"],
        (height, width),
        criterion,
        kernel,
        bias,
        window=padded_window(height, width, image_size),
    )


def evaluate_split(
    model,
    config: ml_collections.ConfigDict,
    split: str,
    *,
    crf: bool = False,
    max_examples: int | None = None,
    crf_workers: int = 1,
    num_overlays: int = 0,
    overlay_dir: str | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Evaluates one split of `config.data.tfrecord_dir`.

    Args:
        model: the model to evaluate.
        config: the full experiment config (`data` and `eval` are read).
        split: a split of the TFRecord manifest, e.g. `"val"`.
        crf: also evaluate after DenseCRF refinement.
        max_examples: evaluate only the first N expressions.
        crf_workers: processes for DenseCRF (1: in this process).
        num_overlays: write prediction overlays of the first N expressions to `overlay_dir`, and
            beside each its Fig. 5 heat map (`item_heat_map`).
        overlay_dir: where they go (`<split>_<index>.png`, `<split>_<index>_heat.png`).
        progress: a progress bar.

    Returns:
        `{"<split>": metrics}`, and `{"<split> + CRF": metrics}` with `crf`; metrics as
        `ReferringSegmentationMetrics.result()`.
    """
    files = manifest.split_files(config.data.tfrecord_dir, split)
    manifest.check_tokenizer(config.data.tfrecord_dir, config.data.get("tokenizer", "default"))
    protocol = get_protocol(config.eval.get("protocol", "exact"), config.eval.threshold)
    plain = metrics_lib.ReferringSegmentationMetrics()
    refined = metrics_lib.ReferringSegmentationMetrics()
    score_weights = None
    if num_overlays and overlay_dir:
        try:
            score_weights = visualize.score_weights(model)
        except ValueError as error:  # a model without the score convolution: overlays only
            logging.warning("No heat maps beside the overlays: %s", error)
    pending = []
    pool = None
    if crf and crf_workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(crf_workers)
    try:
        for index, item in enumerate(
            iterate_predictions(model, files, config, max_examples, progress, desc=split)
        ):
            prediction = protocol.mask(item)
            iou = plain.update(prediction, item["ground_truth"])
            if index < num_overlays and overlay_dir:
                rgb = decode_rgb(item["image_bytes"])
                panel = visualize.comparison_panel(
                    rgb,
                    item["ground_truth"],
                    item["probabilities"],
                    item["expression"],
                    threshold=config.eval.threshold,
                    iou=iou,
                )
                visualize.save_png(os.path.join(overlay_dir, f"{split}_{index:04d}.png"), panel)
                if score_weights is not None:
                    heat = item_heat_map(item, score_weights, config.data.image_size)
                    visualize.save_png(
                        os.path.join(overlay_dir, f"{split}_{index:04d}_heat.png"),
                        visualize.heat_map_image(rgb, heat, item["expression"], iou=iou),
                    )
            if crf:
                job = protocol.crf_job(item)
                if pool is None:
                    refined.update(run_crf_job(job), item["ground_truth"])
                else:
                    pending.append((pool.apply_async(run_crf_job, (job,)), item["ground_truth"]))
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


def write_results(
    results: dict[str, dict], output_dir: str, name: str, extra: dict | None = None
) -> str:
    """Writes `<name>.json` (`extra` plus `results`) and `<name>.md` in `output_dir`; returns
    the markdown table."""
    tf.io.gfile.makedirs(output_dir)
    table = metrics_lib.to_markdown(results)
    with tf.io.gfile.GFile(os.path.join(output_dir, f"{name}.json"), "w") as f:
        json.dump(dict(extra or {}, results=results), f, indent=2)
    with tf.io.gfile.GFile(os.path.join(output_dir, f"{name}.md"), "w") as f:
        f.write(table + "\n")
    return table
