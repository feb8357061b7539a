"""Evaluation library: the authors' protocol wired end to end over a tiny ShapesRef."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cmsa_tf.data import schema
from cmsa_tf.data.manifest import split_files
from cmsa_tf.evaluation.evaluator import evaluate_split, iterate_predictions


class EverywhereModel:
    """Predicts foreground at every pixel: the prediction is the whole original image."""

    levels = ("res5", "res4", "res3")

    def __call__(self, inputs, training=False, return_attention=False):
        image, words = inputs["image"], inputs["words"]
        batch = tf.shape(image)[0]
        return {
            "logits": 20.0 * tf.ones_like(image[..., :1]),
            "word_attention": tf.zeros([batch, 3, tf.shape(words)[1]]),
            "features": tf.zeros([batch, 2, 2, 4]),
        }


def test_metrics_are_computed_at_the_original_image_size(tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    results = evaluate_split(EverywhereModel(), config, "val", progress=False)
    # Independently: I = |ground truth|, U = image area, read straight from the TFRecords.
    intersections, unions = [], []
    for path in split_files(tiny_shapes_tfrecords, "val"):
        for record in tf.data.TFRecordDataset(path):
            example = schema.parse_example(record)
            mask = np.asarray(Image.open(io.BytesIO(example[schema.MASK_ENCODED].numpy()))) > 0
            intersections.append(mask.sum())
            unions.append(mask.size)
    val = results["val"]
    assert val["count"] == len(unions) > 0
    np.testing.assert_allclose(val["overall_iou"], sum(intersections) / sum(unions), rtol=1e-9)
    ious = np.asarray(intersections) / np.asarray(unions)
    np.testing.assert_allclose(val["mean_iou"], ious.mean(), rtol=1e-9)
    np.testing.assert_allclose(val["prec@0.5"], (ious >= 0.5).mean())


def test_max_examples_and_crf(tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    results = evaluate_split(
        EverywhereModel(), config, "testB", crf=True, max_examples=5, progress=False
    )
    assert set(results) == {"testB", "testB + CRF"}
    assert results["testB"]["count"] == results["testB + CRF"]["count"] == 5
    # An all-foreground map is uninformative; DenseCRF must still return valid masks.
    assert 0.0 <= results["testB + CRF"]["overall_iou"] <= 1.0


def test_unknown_split_is_a_clear_error(tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    with pytest.raises(ValueError, match="testC.*available splits"):
        evaluate_split(EverywhereModel(), config, "testC", progress=False)


def test_overlays_are_titled_with_their_expression_and_iou(
    tiny_shapes_tfrecords, tiny_config, tmp_path, monkeypatch
):
    from cmsa_tf.visualize import overlay

    titles = []
    render = overlay.figure_to_array

    def capture(fig):
        titles.append(fig._suptitle.get_text())
        return render(fig)

    monkeypatch.setattr(overlay, "figure_to_array", capture)
    config = tiny_config(tiny_shapes_tfrecords)
    evaluate_split(
        EverywhereModel(),
        config,
        "val",
        num_overlays=2,
        overlay_dir=str(tmp_path),
        progress=False,
    )
    # The model predicts the whole image: each IoU is the mask's share of its image.
    expected = [
        f'"{item["expression"]}"  IoU = {item["ground_truth"].mean():.3f}'
        for item in iterate_predictions(
            EverywhereModel(), split_files(tiny_shapes_tfrecords, "val"), config, 2, False
        )
    ]
    assert titles == expected[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val_0000.png", "val_0001.png"]


def test_authors_protocol_end_to_end(tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    exact = evaluate_split(EverywhereModel(), config, "val", max_examples=6, progress=False)
    config.eval.protocol = "authors"
    config.data.preprocessing = "authors"
    authors = evaluate_split(
        EverywhereModel(), config, "val", crf=True, max_examples=6, progress=False
    )
    # Logits above 1e-9 everywhere: every pixel of the original image, as the exact map-back.
    assert authors["val"] == exact["val"]
    assert authors["val + CRF"]["count"] == 6
    config.eval.protocol = "paper"
    with pytest.raises(ValueError, match="config.eval.protocol"):
        evaluate_split(EverywhereModel(), config, "val", max_examples=1, progress=False)


def test_a_tokenizer_other_than_the_manifests_is_refused(tiny_shapes_tfrecords, tiny_config):
    config = tiny_config(tiny_shapes_tfrecords)
    config.data.tokenizer = "authors"
    with pytest.raises(ValueError, match=r"config.data.tokenizer is 'authors'.*'default'"):
        evaluate_split(EverywhereModel(), config, "val", progress=False)
