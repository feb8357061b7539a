"""Input pipeline throughput, and its ratio to the training step rate it feeds.

Writes `--num_examples` synthetic COCO-like examples (480x640 JPEG images, {0, 1} PNG masks,
3-15 word ids) into TFRecords in a temporary directory, then times
`make_dataset(..., image_size=320, training=True, batch_size=1)` after a warm-up. The consumer's
rate is either given (`--model_steps_per_second=X`) or measured (`--measure_model`: a few
training steps of `configs/refcoco_unc.py`, ResNet-101 at 320x320, batch 1, random weights).
`ratio` is the pipeline's examples per second over training's.

    .venv/bin/python benchmarks/input_pipeline.py --measure_model \
        --json benchmarks/results/input_pipeline.json
"""

import argparse
import importlib.util
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from cmsa_tf.data import pipeline, schema  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_examples", type=int, default=512)
    parser.add_argument("--num_shards", type=int, default=4)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--image_size", type=int, default=320)
    parser.add_argument("--max_words", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=64, help="examples read before timing")
    parser.add_argument("--measure", type=int, default=1024, help="examples timed")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument(
        "--model_steps_per_second",
        type=float,
        default=None,
        help="the training step rate to compare against, if known",
    )
    parser.add_argument(
        "--measure_model",
        action="store_true",
        help="time training steps of configs/refcoco_unc.py (ResNet-101, 320)",
    )
    parser.add_argument("--model_steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--vocab_size", type=int, default=12112)
    parser.add_argument("--workdir", default=None, help="where to write TFRecords (default: temp)")
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_args(argv)


def synthetic_example(rng, height, width, index):
    """A photo-like JPEG (smooth background, shapes, mild noise) and a {0, 1} PNG ellipse mask."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    colors = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    t = ((xx / width + yy / height) / 2)[..., None]
    base = colors[0] * (1 - t) + colors[1] * t
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(20, width // 2), y0 + rng.integers(20, height // 2)
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=fill)
    image = image.filter(ImageFilter.GaussianBlur(1.0))
    pixels = np.asarray(image).astype(np.int16) + rng.integers(-12, 13, (height, width, 3))
    jpeg = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(jpeg, format="JPEG", quality=90)

    mask = Image.new("L", (width, height), 0)
    cx, cy = rng.integers(width // 4, 3 * width // 4), rng.integers(height // 4, 3 * height // 4)
    rx, ry = rng.integers(20, width // 4), rng.integers(20, height // 4)
    ImageDraw.Draw(mask).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
    png = io.BytesIO()
    mask.save(png, format="PNG")

    ids = rng.integers(1, 12112, rng.integers(3, 16)).tolist()
    return schema.serialize_example(
        image_encoded=jpeg.getvalue(),
        image_format="jpeg",
        height=height,
        width=width,
        mask_png=png.getvalue(),
        expression=" ".join(map(str, ids)),
        ids=ids,
        image_id=index,
        ref_id=index,
        ann_id=index,
        sentence_id=index,
    )


def write_records(directory, num_examples, num_shards, height, width):
    rng = np.random.default_rng(0)
    files = [
        os.path.join(directory, f"train-{s:05d}-of-{num_shards:05d}.tfrecord")
        for s in range(num_shards)
    ]
    writers = [tf.io.TFRecordWriter(f) for f in files]
    num_bytes = 0
    for i in range(num_examples):
        record = synthetic_example(rng, height, width, i)
        num_bytes += len(record)
        writers[i % num_shards].write(record)
    for writer in writers:
        writer.close()
    return files, num_bytes / num_examples


def time_pipeline(files, args):
    dataset = pipeline.make_dataset(
        files,
        image_size=args.image_size,
        max_words=args.max_words,
        batch_size=args.batch_size,
        training=True,
    )
    iterator = iter(dataset)
    for _ in range(max(1, args.warmup // args.batch_size)):
        next(iterator)
    rates = []
    steps = max(1, args.measure // args.batch_size)
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(steps):
            batch = next(iterator)
        batch["image"].numpy()  # make sure the last element is materialised
        rates.append(steps * args.batch_size / (time.perf_counter() - start))
    return float(np.median(rates)), rates


def time_model(args):
    """Training steps per second of the paper config at batch 1; (rate, note)."""
    try:
        from cmsa_tf.losses import sigmoid_cross_entropy
        from cmsa_tf.models.factory import build_model

        spec = importlib.util.spec_from_file_location(
            "refcoco_unc_config", os.path.join(REPO_ROOT, "configs", "refcoco_unc.py")
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (ImportError, FileNotFoundError) as error:
        return None, f"model not measured: {type(error).__name__}: {error}"
    try:
        import keras

        config = module.get_config()
        config.model.vocab_size = args.vocab_size
        config.model.backbone.weights = None
        model = build_model(config.model)
        optimizer = keras.optimizers.Adam(2.5e-4)
        size, words = args.image_size, args.max_words
        images = tf.random.normal([1, size, size, 3], stddev=50.0)
        word_ids = tf.constant([[5, 17, 99, 3] + [0] * (words - 4)], tf.int32)
        masks = tf.cast(tf.random.uniform([1, size, size, 1]) > 0.5, tf.float32)

        @tf.function
        def train_step(image, word_ids, mask):
            with tf.GradientTape() as tape:
                logits = model({"image": image, "words": word_ids}, training=True)
                loss = tf.reduce_mean(sigmoid_cross_entropy(mask, logits))
            variables = model.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        float(train_step(images, word_ids, masks))  # trace + first step
        start = time.perf_counter()
        for _ in range(args.model_steps):
            loss = train_step(images, word_ids, masks)
        float(loss)
        rate = args.model_steps / (time.perf_counter() - start)
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
        return rate, (
            f"measured: configs/refcoco_unc.py ({config.model.attention.form} form), ResNet-101, "
            f"{size}x{size}, batch 1, {trainable:,} trainable parameters"
        )
    except Exception as error:  # report it, keep the pipeline number
        return None, f"model not measured: {type(error).__name__}: {error}"


def main(argv=None):
    args = parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="cmsa_pipeline_bench_")
    os.makedirs(workdir, exist_ok=True)
    try:
        start = time.perf_counter()
        files, bytes_per_example = write_records(
            workdir, args.num_examples, args.num_shards, args.height, args.width
        )
        write_seconds = time.perf_counter() - start
        pipeline_rate, pipeline_rates = time_pipeline(files, args)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    model_rate, model_note = (
        None,
        "not given (--model_steps_per_second) or measured (--measure_model)",
    )
    if args.measure_model:
        model_rate, model_note = time_model(args)
    if model_rate is None and args.model_steps_per_second is not None:
        model_rate, model_note = args.model_steps_per_second, "given by --model_steps_per_second"
    model_examples = None if model_rate is None else model_rate * args.batch_size
    ratio = None if model_examples is None else pipeline_rate / model_examples

    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, TF {tf.__version__}",
        "num_examples": args.num_examples,
        "num_shards": args.num_shards,
        "source_size": [args.height, args.width],
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "bytes_per_example": round(bytes_per_example),
        "write_seconds": round(write_seconds, 2),
        "pipeline_examples_per_second": round(pipeline_rate, 2),
        "pipeline_runs_examples_per_second": [round(r, 2) for r in pipeline_rates],
        "model_steps_per_second": None if model_rate is None else round(model_rate, 4),
        "model_note": model_note,
        "ratio": None if ratio is None else round(ratio, 1),
    }

    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    print(f"\nInput pipeline vs. training ({results['machine']})\n")
    print("| quantity | value |")
    print("|---|---|")
    print(
        f"| synthetic examples ({args.height}x{args.width} JPEG + PNG mask) | "
        f"{args.num_examples} in {args.num_shards} files, {bytes_per_example / 1024:.0f} KiB each |"
    )
    print(
        f"| pipeline, training=True, {args.image_size}x{args.image_size}, batch {args.batch_size} "
        f"(examples/s, median of {args.repeats}) | {pipeline_rate:.1f} |"
    )
    print(f"| training (examples/s) | {fmt(model_examples, '.3f')} ({model_note}) |")
    print(f"| pipeline / training | {fmt(ratio, '.1f')}{'' if ratio is None else 'x'} |")

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
    return results


if __name__ == "__main__":
    main()
