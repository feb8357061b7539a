"""cmsa-predict: version lookup, output naming, the PNGs it writes, per-item errors, --crf."""

import io
import json
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw

from cmsa_tf import predict, visualize
from cmsa_tf.data import image_io, preprocess
from cmsa_tf.data.tokenizer import Vocabulary
from cmsa_tf.evaluation.dense_crf import dense_crf
from cmsa_tf.export import module as export_module
from cmsa_tf.export import saving
from tests.helpers import centre_logits, tiny_segmenter

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZE, WORDS = 32, 6


@pytest.fixture(autouse=True)
def _seed():
    """Overrides conftest's seeding: NumPy only (seeding TensorFlow clears its kernel caches,
    which makes every first call of a loaded SavedModel slow); `model_dir` seeds the weights."""
    np.random.seed(1234)
    yield


def picture(height, width, seed=0):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 60, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle([2, height // 4, width // 2, 3 * height // 4], fill=(220, 30, 30))
    draw.ellipse([width // 2, 2, width - 3, height // 2], fill=(30, 200, 40))
    return np.asarray(image)


def write_image(path, array, fmt="PNG"):
    Image.fromarray(array).save(path, format=fmt)
    return str(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny export in TF Serving's layout: versions 1 and 3, an incomplete 12, a temp dir."""
    root = tmp_path_factory.mktemp("predict")
    vocabulary = Vocabulary.build(["the red square on the left", "a green circle at the top"])
    vocabulary.save(root / "vocab.txt")
    keras.utils.set_random_seed(3)
    model = tiny_segmenter(len(vocabulary), name="cmsa")
    image, _ = preprocess.preprocess_image(picture(30, 40), SIZE)
    words = np.array([vocabulary.encode_padded("the red square", WORDS)[0]])
    centre_logits(model, {"image": image[None], "words": words})  # a mask over half the picture
    base = root / "saved_models" / "tiny"
    module = export_module.CMSAExportModule(model, str(root / "vocab.txt"), SIZE, WORDS, step=3)
    saving.save_module(module, base / "3")
    shutil.copytree(base / "3", base / "1")
    (base / "12").mkdir()  # no SavedModel inside: skipped
    (base / ".tmp-5-123").mkdir()
    return {"base": str(base), "root": root}


@pytest.fixture(scope="module")
def signature(model_dir):
    loaded = tf.saved_model.load(os.path.join(model_dir["base"], "3"))
    return loaded.signatures["serving_default"]


def served(signature, path, expression):
    """The export's own answer for one file, cropped to the image."""
    with open(path, "rb") as f:
        outputs = signature(
            image_bytes=tf.constant([f.read()]), expression=tf.constant([expression])
        )
    height, width = int(outputs["height"][0]), int(outputs["width"][0])
    return {
        "probabilities": outputs["probabilities"].numpy()[0, :height, :width],
        "mask": outputs["mask"].numpy()[0, :height, :width],
    }


def read_png(path):
    return np.asarray(Image.open(path))


def test_find_version_dir(model_dir, tmp_path):
    base = model_dir["base"]
    assert predict.find_version_dir(base) == os.path.join(base, "3")
    assert predict.find_version_dir(base, 1) == os.path.join(base, "1")
    assert predict.find_version_dir(os.path.join(base, "1")) == os.path.join(base, "1")
    with pytest.raises(
        predict.UsageError, match=r"no version 12 \(versions with a SavedModel: \[1, 3\]\)"
    ):
        predict.find_version_dir(base, 12)
    with pytest.raises(predict.UsageError, match="is not a directory"):
        predict.find_version_dir(str(tmp_path / "missing"))
    with pytest.raises(predict.UsageError, match="holds no SavedModel"):
        predict.find_version_dir(str(tmp_path))


def test_output_paths_sit_next_to_the_output():
    assert predict.output_paths("runs/out.png") == (
        pathlib.Path("runs/out.png"),
        pathlib.Path("runs/out_mask.png"),
        pathlib.Path("runs/out_attention.png"),
    )
    assert predict.output_paths("a/b.v2.jpg") == (
        pathlib.Path("a/b.v2.jpg"),
        pathlib.Path("a/b.v2_mask.png"),
        pathlib.Path("a/b.v2_attention.png"),
    )
    assert predict.output_paths("plain")[0] == pathlib.Path("plain.png")


def test_pairs_write_overlay_mask_and_attention_and_bad_items_are_reported(
    model_dir, signature, tmp_path, capsys
):
    good = write_image(tmp_path / "photo.png", picture(30, 40, 1))
    second = write_image(tmp_path / "other.jpg", picture(25, 20, 2), "JPEG")
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    jpeg = io.BytesIO()
    Image.fromarray(picture(30, 30, 3)).save(jpeg, format="JPEG")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(jpeg.getvalue()[:200])
    out = tmp_path / "out"
    pairs = [
        (good, "the red square on the left", out / "photo.png"),
        (str(tmp_path / "missing.png"), "red", out / "missing.png"),
        (str(not_image), "red", out / "notes.png"),
        (str(truncated), "red", out / "cut.png"),
        (good, "  .  ", out / "empty.png"),
        (second, "green circle", out / "other.png"),
    ]
    argv = ["--model", model_dir["base"]]
    for image, expression, output in pairs:
        argv += ["--image", image, "--expression", expression, "--output", str(output)]
    assert predict.main(argv) == 1
    captured = capsys.readouterr()

    for image, expression, output in (pairs[0], pairs[5]):
        want = served(signature, image, expression)
        rgb = image_io.decode_rgb(open(image, "rb").read())
        overlay, mask, attention = predict.output_paths(output)
        np.testing.assert_array_equal(read_png(mask), want["mask"].astype(np.uint8) * 255)
        np.testing.assert_array_equal(
            read_png(overlay), visualize.overlay_mask(rgb, want["mask"].astype(bool))
        )
        plot = read_png(attention)
        assert plot.ndim == 3 and plot.shape[1] > plot.shape[0] > 50 and plot.std() > 10
    assert 0.05 < (read_png(out / "photo_mask.png") > 0).mean() < 0.95  # a real, partial mask
    # Failed items write nothing; each is named with its problem.
    assert sorted(os.listdir(out)) == sorted(
        f"{name}{suffix}.png"
        for name in ("photo", "other")
        for suffix in ("", "_mask", "_attention")
    )
    errors = captured.err
    assert "[1] --image #2" in errors and "cannot read the image" in errors
    assert "[2] --image #3" in errors and "the image is not a JPEG, PNG, GIF or BMP file" in errors
    assert "[3] --image #4" in errors and "the image is a truncated JPEG" in errors
    assert "[4] --image #5" in errors and "has no words after tokenisation" in errors
    assert "4 of 6 items failed" in errors
    assert "[0] --image #1: " in captured.out and "[5] --image #6: " in captured.out


def test_jsonl_with_crf(model_dir, signature, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    first = write_image(images / "a.png", picture(28, 36, 4))
    write_image(images / "b.bmp", picture(20, 30, 5), "BMP")
    lines = [
        json.dumps({"image": "images/a.png", "expression": "red square", "output": "crf/a.png"}),
        "{not json",
        json.dumps({"image": "images/b.bmp"}),
        "",
        json.dumps({"image": "images/b.bmp", "expression": "le carré rouge à gauche"}),
    ]
    # Relative paths in the file are relative to the file.
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    output_dir = tmp_path / "default"
    status = predict.main(
        [
            "--model",
            model_dir["base"],
            "--version",
            "1",
            "--jsonl",
            str(tmp_path / "requests.jsonl"),
            "--output_dir",
            str(output_dir),
            "--crf",
        ]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert "requests.jsonl:2" in captured.err and "not valid JSON" in captured.err
    assert "requests.jsonl:3" in captured.err and "bad or missing: ['expression']" in captured.err
    assert "2 of 4 items failed" in captured.err
    assert os.path.join("saved_models", "tiny", "1") in captured.err  # the version asked for

    want = served(signature, first, "red square")
    rgb = np.asarray(Image.open(first).convert("RGB"))
    refined = dense_crf(rgb, want["probabilities"])
    np.testing.assert_array_equal(read_png(tmp_path / "crf" / "a_mask.png"), refined * 255)
    np.testing.assert_array_equal(
        read_png(tmp_path / "crf" / "a.png"), visualize.overlay_mask(rgb, refined.astype(bool))
    )
    # The item without an output: <output_dir>/<item number>_<image name>.png and siblings.
    assert sorted(os.listdir(output_dir)) == ["003_b.png", "003_b_attention.png", "003_b_mask.png"]
    assert read_png(output_dir / "003_b_mask.png").shape == (20, 30)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image", "a.png"], "Give one --expression per --image"),
        (
            ["--image", "a.png", "--expression", "x", "--output", "1.png", "--output", "2.png"],
            "Give one --output per --image pair",
        ),
        ([], "Nothing to do"),
        (["--image", "a.png", "--expression", "x", "--version", "7"], "has no version 7"),
        (["--image", "a.png", "--expression", "x", "--alpha", "2"], "--alpha must be in"),
    ],
)
def test_usage_errors_exit_2(model_dir, argv, message, capsys):
    assert predict.main(["--model", model_dir["base"], *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_model_and_bad_flags_exit_2(tmp_path, capsys):
    assert (
        predict.main(["--model", str(tmp_path / "nope"), "--image", "a", "--expression", "b"]) == 2
    )
    assert "is not a directory" in capsys.readouterr().err
    assert predict.main(["--image", "a"]) == 2  # --model is required
    assert "--model" in capsys.readouterr().err


@pytest.mark.slow
def test_installed_console_script_runs():
    # The `cmsa-predict` script that `pip install` put next to this interpreter (setup.py's
    # console_scripts entry point), not `run()` imported.
    script = shutil.which("cmsa-predict", path=str(pathlib.Path(sys.executable).parent))
    assert script, "cmsa-predict is not installed next to the interpreter (pip install -e .)"
    process = subprocess.run(
        [script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert process.returncode == 0, process.stderr
    assert "usage: cmsa-predict" in process.stdout and "--jsonl" in process.stdout
    process = subprocess.run(
        [script, "--image", "a.png"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert process.returncode == 2
    assert "--model is required" in process.stderr
