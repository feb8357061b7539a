"""Serving speed: the exported SavedModel against the Keras model, in one process.

For each config (random weights, `backbone.weights=None`, a synthetic vocabulary of the paper's
size) the model is exported with `cmsa_tf.export.module.CMSAExportModule`, saved with
`cmsa_tf.export.saving.save_module`, loaded back with `tf.saved_model.load`, and timed four ways
on the same batch:

- `keras`: the Keras model on preprocessed inputs (image [B, S, S, 3], words [B, T]) through a
  `tf.function` returning what `predict_preprocessed` returns (logits, probabilities, attention);
- `predict_preprocessed`: the export's signature on the same preprocessed inputs;
- `serving_default`: the export's signature on the encoded JPEGs (480 x 640) and the expressions,
  so it also decodes, resizes, pads, tokenises and maps the probabilities back to 480 x 640;
- `keras_end_to_end`: what `serving_default` does, done the Keras way: the preprocessing of
  `cmsa_tf.data.preprocess` and the Python tokenizer eagerly, `keras`, then
  `map_back.unpad_and_resize_batch` and the threshold eagerly (the fair partner of
  `serving_default`).

Latency is the median time of one batch-1 call; throughput is 8 / the median time of one batch-8
call. The methods are timed round-robin (one call of each per round) after a warm-up call, so
load from other processes on a shared machine hits them alike. `ratio_to_keras` is a method's
median time over the Keras model's on the same batch.

    .venv/bin/python benchmarks/serving.py --configs shapes,refcoco_unc \
        --json benchmarks/results/serving.json
"""

import argparse
import importlib.util
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from cmsa_tf.data import map_back, preprocess  # noqa: E402
from cmsa_tf.data.tokenizer import Vocabulary  # noqa: E402
from cmsa_tf.export import module as export_module  # noqa: E402
from cmsa_tf.export import saving  # noqa: E402
from cmsa_tf.models.factory import build_model  # noqa: E402

VOCAB_SIZES = {
    "refcoco_unc": 12112,
    "refcoco+_unc": 12112,
    "refcocog_umd": 12112,
    "refcocog_google": 12112,
    "referit": 8803,
    "shapes": 64,
}
METHODS = ("keras", "predict_preprocessed", "serving_default", "keras_end_to_end")
EXPRESSION_WORDS = 8


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs", default="shapes,refcoco_unc", help="comma-separated names of configs/*.py"
    )
    parser.add_argument("--batch_sizes", default="1,8", help="first: latency; others: throughput")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds per batch size")
    parser.add_argument("--height", type=int, default=480, help="height of the test JPEGs")
    parser.add_argument("--width", type=int, default=640, help="width of the test JPEGs")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def load_config(name):
    path = os.path.join(REPO_ROOT, "configs", f"{name}.py")
    if not os.path.isfile(path):
        raise SystemExit(f"error: no config {path!r}")
    spec = importlib.util.spec_from_file_location(f"config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def synthetic_vocabulary(size, directory):
    tokens = ["<pad>", "<unk>"] + [f"w{i}" for i in range(size - 2)]
    vocabulary = Vocabulary(tokens)
    path = os.path.join(directory, "vocab.txt")
    vocabulary.save(path)
    return vocabulary, path


def test_images(count, height, width):
    images = []
    for i in range(count):
        rng = np.random.default_rng(i)
        picture = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(picture)
        draw.rectangle([width // 8, height // 4, width // 2, 3 * height // 4], fill=(200, 40, 40))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def timed(fn):
    start = time.perf_counter()
    outputs = fn()
    for value in outputs.values():
        value.numpy()  # wait for the result
    return time.perf_counter() - start


def benchmark_config(name, args, workdir):
    config = load_config(name)
    config.model.backbone.weights = None
    size, max_words = int(config.data.image_size), int(config.data.max_words)
    vocab_size = VOCAB_SIZES.get(name, 12112)
    vocabulary, vocab_file = synthetic_vocabulary(vocab_size, workdir)
    print(f"[{name}] building (S={size}, T={max_words}, vocab={vocab_size}) ...", flush=True)
    model = build_model(config.model, vocab_size=vocab_size, image_size=size, max_words=max_words)
    module = export_module.CMSAExportModule(model, vocab_file, size, max_words)
    start = time.perf_counter()
    directory = saving.save_module(module, os.path.join(workdir, name, "1"))
    save_seconds = time.perf_counter() - start
    loaded = tf.saved_model.load(directory)
    serve = loaded.signatures[export_module.SERVING_SIGNATURE]
    preprocessed = loaded.signatures[export_module.PREPROCESSED_SIGNATURE]

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, size, size, 3], tf.float32),
            tf.TensorSpec([None, max_words], tf.int32),
        ]
    )
    def keras_fn(image, words):
        outputs = model({"image": image, "words": words}, training=False, return_attention=True)
        logits = outputs["logits"][..., 0]
        return {
            "logits": logits,
            "probabilities": tf.sigmoid(logits),
            "word_attention": outputs["word_attention"],
        }

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    all_images = test_images(max(batch_sizes), args.height, args.width)
    rows = []
    for batch in batch_sizes:
        images = tf.constant(all_images[:batch])
        expressions = tf.constant(
            [
                " ".join(f"w{(i * 7 + j) % (vocab_size - 2)}" for j in range(EXPRESSION_WORDS))
                for i in range(batch)
            ]
        )
        pixels, _ = preprocess.preprocess_encoded_images(images, size)
        words = tf.constant(
            np.stack(
                [vocabulary.encode_padded(e.decode(), max_words)[0] for e in expressions.numpy()]
            )
        )

        def end_to_end(images=images, expressions=expressions):
            image, info = preprocess.preprocess_encoded_images(images, size)
            ids = np.stack(
                [vocabulary.encode_padded(e.decode(), max_words)[0] for e in expressions.numpy()]
            )
            outputs = keras_fn(image, tf.constant(ids))
            restored = map_back.unpad_and_resize_batch(outputs["probabilities"][..., None], info)
            return {
                "probabilities": restored[..., 0],
                "mask": tf.cast(preprocess.binarize(restored[..., 0]), tf.uint8),
                "word_attention": outputs["word_attention"],
            }

        calls = {
            "keras": lambda pixels=pixels, words=words: keras_fn(pixels, words),
            "predict_preprocessed": lambda pixels=pixels, words=words: preprocessed(
                image=pixels, words=words
            ),
            "serving_default": lambda images=images, expressions=expressions: serve(
                image_bytes=images, expression=expressions
            ),
            "keras_end_to_end": end_to_end,
        }
        difference = float(
            tf.reduce_max(
                tf.abs(calls["keras"]()["logits"] - calls["predict_preprocessed"]()["logits"])
            )
        )
        for method in METHODS:  # warm-up
            timed(calls[method])
        seconds = {method: [] for method in METHODS}
        for run in range(args.runs):
            for method in METHODS:
                seconds[method].append(timed(calls[method]))
            print(
                f"[{name}] batch {batch} round {run + 1}/{args.runs}: "
                + ", ".join(f"{m} {seconds[m][-1]:.3f}s" for m in METHODS),
                flush=True,
            )
        keras_median = statistics.median(seconds["keras"])
        for method in METHODS:
            median = statistics.median(seconds[method])
            rows.append(
                {
                    "config": name,
                    "image_size": size,
                    "max_words": max_words,
                    "vocab_size": vocab_size,
                    "method": method,
                    "batch_size": batch,
                    "median_seconds": median,
                    "min_seconds": min(seconds[method]),
                    "seconds": seconds[method],
                    "images_per_second": batch / median,
                    "ratio_to_keras": median / keras_median,
                    "max_abs_logit_difference": difference,
                }
            )
    return {
        "rows": rows,
        "save_seconds": save_seconds,
        "parameters": int(sum(np.prod(v.shape) for v in model.variables)),
    }


def markdown(results, batch_sizes):
    latency_batch, throughput_batches = batch_sizes[0], batch_sizes[1:]
    header = ["config", "S", "method", f"batch {latency_batch} latency (ms)", "ratio"]
    for batch in throughput_batches:
        header += [f"batch {batch} throughput (img/s)", "ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        by_key = {(row["method"], row["batch_size"]): row for row in result["rows"]}
        for method in METHODS:
            row = by_key[(method, latency_batch)]
            cells = [
                name,
                str(row["image_size"]),
                f"`{method}`",
                f"{1000 * row['median_seconds']:.1f}",
                f"{row['ratio_to_keras']:.2f}x",
            ]
            for batch in throughput_batches:
                row = by_key[(method, batch)]
                cells += [f"{row['images_per_second']:.2f}", f"{row['ratio_to_keras']:.2f}x"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="cmsa_serving_") as workdir:
        for name in names:
            results[name] = benchmark_config(name, args, workdir)
    table = markdown(results, batch_sizes)
    print()
    print(table)
    print(
        "\nratio = time / the Keras model's time on the same batch (serving_default also decodes "
        "and resizes 480x640 JPEGs, as keras_end_to_end does)."
    )
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        payload = {
            "benchmark": "serving",
            "machine": {
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "processor": platform.processor(),
                "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
                "note": "CPU only, 2 cores shared with other jobs running at the same time; "
                "medians of round-robin runs.",
            },
            "tensorflow_version": tf.__version__,
            "runs": args.runs,
            "batch_sizes": batch_sizes,
            "jpeg_size": [args.height, args.width],
            "results": results,
            "markdown": table,
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
