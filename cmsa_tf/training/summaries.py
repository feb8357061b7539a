"""Evaluation during training, for TensorBoard: metrics, overlays, Fig. 4 and Fig. 5 images."""

import os

import ml_collections
import tensorflow as tf
from absl import logging

import cmsa_tf.evaluation.metrics as metrics_lib
from cmsa_tf import visualize
from cmsa_tf.data import manifest
from cmsa_tf.data.image_io import decode_rgb
from cmsa_tf.data.tokenizer import Vocabulary
from cmsa_tf.evaluation.evaluator import iterate_predictions


class TrainingEvaluator:
    """Evaluates the first of `config.data.eval_splits` and writes it to `<workdir>/eval`.

    Scalars `<split>/<metric>`; for the first `config.eval.num_images` expressions the
    prediction overlay (`predictions/i`), the word attention of each level (`word_attention/i`,
    the paper's Fig. 4) and a feature heat map (`heat_map/i`, Fig. 5).

    Args:
        config: the full experiment config.
        model: the model being trained.
        workdir: the run's directory.
        vocabulary: to show the words; default the TFRecord directory's vocabulary.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        model,
        workdir: str,
        vocabulary: Vocabulary | None = None,
    ):
        self.config = config
        self.model = model
        self.split = config.data.eval_splits[0]
        self.files = manifest.split_files(config.data.tfrecord_dir, self.split)
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, "eval"))
        self.vocabulary = vocabulary
        if self.vocabulary is None:
            self.vocabulary = Vocabulary.from_file(manifest.vocab_path(config.data.tfrecord_dir))

    def run(self, step: int) -> dict:
        """Evaluates `config.eval.max_examples_during_training` expressions; writes the
        summaries at `step`; returns the metrics."""
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
            iou = metrics.update(
                item["probabilities"] >= eval_config.threshold, item["ground_truth"]
            )
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
                    rgb,
                    item["ground_truth"],
                    item["probabilities"],
                    item["expression"],
                    threshold=eval_config.threshold,
                    iou=iou,
                )
                tf.summary.image(f"predictions/{index}", panel[None], step=step)
                tokens = [self.vocabulary.tokens[i] for i in item["words"] if i != 0]
                figure = visualize.word_attention_image(
                    tokens,
                    item["word_attention"],
                    level_names=self.model.levels,
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
            step,
            self.split,
            result["overall_iou"],
            result["mean_iou"],
        )
        return result
