"""The training-time TensorBoard figures: each says its expression and IoU; the heat map has a
colour bar and is mapped back through the pad like the predictions."""

import io

import numpy as np
from PIL import Image

from cmsa_tf import visualize
from cmsa_tf.data.preprocess import padded_window, resize_and_pad_info
from cmsa_tf.training.summaries import example_figures


def _png_bytes(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _item(height=24, width=48):
    rng = np.random.default_rng(0)
    truth = np.zeros((height, width), bool)
    truth[4:12, 30:44] = True
    return {
        "image_bytes": _png_bytes(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)),
        "ground_truth": truth,
        "probabilities": truth.astype(np.float32) * 0.9,
        "expression": "the red circle on the right",
        "word_attention": rng.random((3, 10)),
        "features": rng.normal(size=(4, 4, 6)).astype(np.float32),
    }


def test_every_figure_carries_its_expression_and_iou():
    kernel = np.random.default_rng(1).normal(size=(3, 3, 6, 1))
    figures = example_figures(
        _item(),
        0.625,
        ["the", "red", "circle", "on", "the", "right"],
        ("res5", "res4", "res3"),
        image_size=32,
        score_weights=(kernel, np.array([0.1])),
    )
    assert set(figures) == {"predictions", "word_attention", "heat_map"}
    title = '"the red circle on the right"  IoU = 0.625'
    assert figures["predictions"]._suptitle.get_text() == title
    assert figures["word_attention"].axes[0].get_title() == title
    assert figures["heat_map"]._suptitle.get_text() == title
    # Both maps carry a colour scale: the attention matrix and the heat map.
    assert figures["word_attention"].axes[1]._colorbar is not None
    bar = figures["heat_map"].axes[2]._colorbar
    assert (bar.norm.vmin, bar.norm.vmax) == (0.0, 1.0)
    for figure in figures.values():
        pixels = visualize.figure_to_array(figure)
        assert pixels.dtype == np.uint8 and pixels.shape[-1] == 3
    # Without an IoU the titles are the expression alone.
    figures = example_figures(
        _item(), None, ["x"], ("res5", "res4", "res3"), 32, (kernel, np.array([0.0]))
    )
    assert figures["heat_map"]._suptitle.get_text() == '"the red circle on the right"'


def test_heat_map_is_mapped_back_through_the_pad():
    # A 24 x 48 image in a 32 x 32 input: resized to 16 x 32, 8 rows of pad above and below.
    assert padded_window(24, 48, 32) == (32, 8, 0, 16, 32)
    info = resize_and_pad_info(30, 17, 64)
    assert padded_window(30, 17, 64) == (
        64,
        int(info["pad_top"]),
        int(info["pad_left"]),
        int(info["resized_height"]),
        int(info["resized_width"]),
    )
    item = _item()
    kernel = np.random.default_rng(2).normal(size=(3, 3, 6, 1))
    heat_panel = example_figures(
        item, 0.5, ["x"], ("res5", "res4", "res3"), 32, (kernel, np.array([0.0]))
    )["heat_map"]
    rgb = np.asarray(Image.open(io.BytesIO(item["image_bytes"])))
    heat = visualize.heat_map(
        item["features"], (24, 48), score_kernel=kernel, window=(32, 8, 0, 16, 32)
    )
    np.testing.assert_array_equal(
        heat_panel.axes[1].images[0].get_array(), visualize.heat_map_overlay(rgb, heat)
    )


def test_the_manifest_vocabulary_is_read_in_the_configured_format(tmp_path, tiny_config):
    from cmsa_tf.data.build import build_tfrecords
    from cmsa_tf.training.summaries import TrainingEvaluator
    from tests.data.refer_fixture import write_refer_root

    info = write_refer_root(tmp_path / "refer")
    vocabulary = tmp_path / "vocabulary_Gref.txt"
    # Empty lines and a repeated token: the default format refuses this file.
    vocabulary.write_text("<pad>\n<go>\n<eos>\n<unk>\nthe\n\nman\nthe\n", encoding="utf-8")
    output_dir = tmp_path / "tfrecords"
    build_tfrecords(
        info["refer_root"],
        info["dataset"],
        info["split_by"],
        info["image_root"],
        str(output_dir),
        splits=["val"],
        vocab_file=vocabulary,
        tokenizer="authors",
        num_workers=1,
        progress=False,
    )
    config = tiny_config(str(output_dir))
    config.data.eval_splits = ("val",)
    config.data.tokenizer = "authors"
    evaluator = TrainingEvaluator(config, None, str(tmp_path / "run"))
    assert evaluator.vocabulary.tokens == (
        "<pad>",
        "<go>",
        "<eos>",
        "<unk>",
        "the",
        "",
        "man",
        "the",
    )
    assert evaluator.vocabulary.encode("the man") == [7, 6]
