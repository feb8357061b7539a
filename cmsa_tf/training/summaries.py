"""Evaluation during training, for TensorBoard: metrics, overlays, Fig. 4 and Fig. 5 images."""

import os

import ml_collections
import tensorflow as tf
from absl import logging

import cmsa_tf.evaluation.metrics as metrics_lib
from cmsa_tf import visualize
from cmsa_tf.data import manifest
from cmsa_tf.data import tokenizer as tokenizer_lib
from cmsa_tf.data.image_io import decode_rgb
from cmsa_tf.evaluation.evaluator import item_heat_map, iterate_predictions
from cmsa_tf.visualize import learning_curve


def example_figures(
    item: dict,
    iou: float | None,
    tokens: list[str],
    level_names,
    image_size: int,
    score_weights: tuple,
    threshold: float = 0.5,
) -> dict:
    """The three figures of one evaluated expression, each titled with its expression and IoU.

    Args:
        item: one dict of `iterate_predictions` (`image_bytes`, `ground_truth`, `probabilities`,
            `expression`, `word_attention`, `features`).
        iou: the prediction's IoU (None: left out of the titles).
        tokens: the expression's words.
        level_names: the model's levels (rows of the word attention).
        image_size: the model's input size (`config.data.image_size`).
        score_weights: `(kernel, bias)` of the model's score convolution
            (`visualize.score_weights`).
        threshold: foreground threshold of the prediction overlay.

    Returns:
        `{"predictions": ..., "word_attention": ..., "heat_map": ...}` matplotlib figures:
        the comparison panel, the Fig. 4 matrix and the Fig. 5 heat map with its colour bar.
    """
    rgb = decode_rgb(item["image_bytes"])
    heat = item_heat_map(item, score_weights, image_size)
    return {
        "predictions": visualize.comparison_figure(
            rgb,
            item["ground_truth"],
            item["probabilities"],
            item["expression"],
            threshold=threshold,
            iou=iou,
        ),
        "word_attention": visualize.word_attention_figure(
            tokens,
            item["word_attention"],
            level_names=level_names,
            title=visualize.expression_title(item["expression"], iou),
        ),
        "heat_map": visualize.heat_map_figure(rgb, heat, item["expression"], iou=iou),
    }


class TrainingEvaluator:
    """Evaluates the first of `config.data.eval_splits` and writes it to `<workdir>/eval`.

    Scalars `<split>/<metric>`; for the first `config.eval.num_images` expressions the
    prediction overlay (`predictions/i`), the word attention of each level (`word_attention/i`,
    the paper's Fig. 4) and a feature heat map (`heat_map/i`, Fig. 5), each titled with its
    expression and IoU (`example_figures`).

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
        vocabulary: tokenizer_lib.Vocabulary | None = None,
    ):
        self.config = config
        self.model = model
        self.split = config.data.eval_splits[0]
        self.files = manifest.split_files(config.data.tfrecord_dir, self.split)
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, "eval"))
        # The learning curve as JSON lines (cmsa_tf.visualize.learning_curve).
        self.curve_path = learning_curve.curve_path(workdir)
        self.vocabulary = vocabulary
        if self.vocabulary is None:
            # In the format of config.data.tokenizer (the authors' files have empty lines).
            self.vocabulary = tokenizer_lib.load_vocabulary(
                manifest.vocab_path(config.data.tfrecord_dir),
                config.data.get("tokenizer", "default"),
            )

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
                pad_id = self.vocabulary.pad_id
                tokens = [self.vocabulary.tokens[i] for i in item["words"] if i != pad_id]
                figures = example_figures(
                    item,
                    iou,
                    tokens,
                    self.model.levels,
                    self.config.data.image_size,
                    score_weights=visualize.score_weights(self.model),
                    threshold=eval_config.threshold,
                )
                for name, figure in figures.items():
                    pixels = visualize.figure_to_array(figure)
                    tf.summary.image(f"{name}/{index}", pixels[None], step=step)
        self.writer.flush()
        learning_curve.append_point(self.curve_path, step, self.split, result)
        logging.info(
            "step %d %s: overall IoU %.4f, mean IoU %.4f",
            step,
            self.split,
            result["overall_iou"],
            result["mean_iou"],
        )
        return result
