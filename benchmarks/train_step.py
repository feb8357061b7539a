"""Training-step speed of the paper config, against the backbone forward and the matmul peak
measured in the same run.

For each attention form (`--forms`), the model of `--config` (default `configs/refcoco_unc.py`:
ResNet-101 at output stride 8, T = 20 word slots, frozen backbone; `model.backbone.weights=None`,
random weights, a vocabulary of `--vocab_size` ids) is built at `--image_size`, and for each batch
size (`--batch_sizes`) and number of real words (`--words`, left-padded to T as the authors'
tokenizer pads) a `tf.function` training step runs: forward, the trainer's loss (pixel-summed
sigmoid cross-entropy over the batch, plus the L2 weight decay), backward and one step of the
authors' Adam (`cmsa_tf.optimization.create_optimizer`).

The backbone forward alone (`model.backbone`, inference mode, a `tf.function`) runs on the same
images: after `--warmup` untimed calls of each, the step and the backbone forward are timed in
turn (one call of each per round, `--steps` rounds), so load from other processes on a shared
machine hits both alike. A row gives the median seconds per step, examples/s
(batch / step seconds), the median backbone forward and their ratio, the FLOPs of one step and
their share of the peak.

FLOPs per step: `benchmarks/flops.py` counts the step's traced graph at the row's exact shapes
(forward, backward, custom gradients, loop bodies times their iterations, and the optimizer
update), with the row's words as constants so that the model's cut to the longest expression has
a static size; counting runs one extra untimed step. Matmuls, einsums and convolutions (and their
backprops) are counted exactly by their shapes, the element-wise ops and reductions as
TensorFlow's registry counts them; activations, casts and data movement count 0 (flops.py's
docstring has the details). The count is of the graph as traced, before Grappler or XLA
(`--jit_compile`) rewrite it; dilated convolutions are counted as TF runs them (space to batch,
which pads a feature map whose size is not a multiple of the dilation). Anything left uncounted
is printed on stderr as "FLOPs, ...". The JSON also has each row's FLOPs by op type and the
matmul + einsum + convolution part ("matmul+conv GFLOP/step").

Share of peak: FLOPs / step seconds / the matmul peak, the rate of a square tf.matmul of side
`--peak_size` timed before and after the rows (the better of the two): float32, or bfloat16
under `--precision bfloat16` (float32 is measured too); the header line says which.

    .venv/bin/python benchmarks/train_step.py --batch_sizes 1,8 \
        --json benchmarks/results/train_step.json
    .venv/bin/python benchmarks/train_step.py --batch_sizes 1,8 --precision bfloat16 \
        --set model.backbone.trainable_stages="('res3','res4','res5')"   # the authors' flag
    .venv/bin/python benchmarks/train_step.py --image_size 32 --steps 1 --warmup 1 --forms paper \
        --words 2 --set model.backbone.depth=18 --set model.embedding_dim=16   # a smoke test
"""

import argparse
import ast
import importlib.util
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
FORMS = ("paper", "official")
COLUMNS = (
    "form",
    "batch",
    "real words",
    "T",
    "step s",
    "examples/s",
    "backbone fwd s",
    "step / backbone",
    "GFLOP/step",
    "share of peak",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "refcoco_unc.py"))
    parser.add_argument("--forms", default="paper,official", help=f"comma-separated, of {FORMS}")
    parser.add_argument("--batch_sizes", default="1", help="comma-separated batch sizes")
    parser.add_argument("--words", default="4,20", help="comma-separated numbers of real words")
    parser.add_argument("--image_size", type=int, default=None, help="default: the config's")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (tracing)")
    parser.add_argument("--vocab_size", type=int, default=10000)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. model.backbone.depth=18 (a Python literal)",
    )
    parser.add_argument(
        "--precision",
        default="",
        choices=("", "bfloat16"),
        help="config.train.mixed_precision of the step ('' = float32)",
    )
    parser.add_argument("--jit_compile", action="store_true", help="XLA for the train step")
    parser.add_argument(
        "--peak_size", type=int, default=2048, help="side of the square matmul timed for the peak"
    )
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    args.forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    unknown = [f for f in args.forms if f not in FORMS]
    if unknown or not args.forms:
        parser.error(f"--forms must name forms of {FORMS}, got {unknown or args.forms}")
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
        args.words = [int(w) for w in args.words.split(",")]
    except ValueError as error:
        parser.error(f"--batch_sizes and --words take comma-separated integers ({error})")
    if min(args.batch_sizes) < 1 or min(args.words) < 1:
        parser.error("--batch_sizes and --words must be positive")
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
    return args


def load_config(path, form, overrides):
    spec = importlib.util.spec_from_file_location("train_step_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(form)
    config.model.backbone.weights = None
    for item in overrides:
        key, value = item.split("=", 1)
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # a plain string
        node = config
        *parents, leaf = key.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = value
    return config


def _median_times(functions, rounds):
    """Median seconds of each function, timed in turn (one call of each per round)."""
    times = [[] for _ in functions]
    for _ in range(rounds):
        for function, spent in zip(functions, times):
            start = time.perf_counter()
            function()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def measure_form(args, form, progress):
    import flops
    import numpy as np
    import tensorflow as tf

    from cmsa_tf import losses, optimization
    from cmsa_tf.models.factory import build_model
    from cmsa_tf.training.precision import set_precision

    config = load_config(args.config, form, args.set)
    set_precision(args.precision)
    size = args.image_size or config.data.image_size
    num_slots = config.data.max_words
    model = build_model(
        config.model, vocab_size=args.vocab_size, image_size=size, max_words=num_slots
    )
    optimizer = optimization.create_optimizer(config.train)
    variables = model.trainable_variables
    optimizer.build(variables)
    train = config.train

    def step_function(image, words, mask):
        with tf.GradientTape() as tape:
            logits = model({"image": image, "words": words}, training=True)
            per_example = losses.sigmoid_cross_entropy(mask, logits, train.loss_reduction)
            data_loss = tf.reduce_sum(per_example) / tf.cast(tf.shape(image)[0], tf.float32)
            loss = data_loss + optimization.l2_penalty(variables, train.weight_decay)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    train_step = tf.function(step_function, reduce_retracing=True, jit_compile=args.jit_compile)

    @tf.function(reduce_retracing=True)
    def backbone_forward(image):
        return model.backbone(image, training=False)["res5"]

    rows = []
    rng = np.random.default_rng(0)
    for batch in args.batch_sizes:
        image = tf.constant(rng.normal(scale=50.0, size=(batch, size, size, 3)), tf.float32)
        mask = tf.constant(rng.random((batch, size, size, 1)) < 0.3, tf.float32)
        for real in args.words:
            if real > num_slots:
                raise ValueError(f"--words {real} exceeds the config's T = {num_slots} slots.")
            words = np.zeros((batch, num_slots), "int32")
            words[:, num_slots - real :] = rng.integers(1, args.vocab_size, size=(batch, real))
            words = tf.constant(words)
            # Counted on its own trace of this row's shapes, the words as constants (the model
            # cuts them to the longest expression); runs one untimed step.
            counted = flops.count_call(step_function, (image, words, mask), constant=(1,))
            for note in counted.notes:
                print(f"FLOPs, {form} batch {batch} words {real}: {note}", file=sys.stderr)

            def step(image=image, words=words, mask=mask):
                train_step(image, words, mask).numpy()

            def forward(image=image):
                backbone_forward(image).numpy()

            _median_times([step, forward], args.warmup)
            step_s, forward_s = _median_times([step, forward], args.steps)
            rows.append(
                {
                    "form": form,
                    "batch": batch,
                    "real words": real,
                    "T": num_slots,
                    "step s": round(step_s, 6),
                    "examples/s": round(batch / step_s, 4),
                    "backbone fwd s": round(forward_s, 6),
                    "step / backbone": round(step_s / forward_s, 4),
                    "GFLOP/step": round(counted.total / 1e9, 6),
                    "FLOP/step": counted.total,
                    "matmul+conv GFLOP/step": round(counted.matrix / 1e9, 6),
                    "FLOP/step by op": dict(counted.by_type.most_common()),
                }
            )
            # Each row reaches stderr when measured: a later row that fails (e.g. out of memory)
            # does not take the measured ones with it.
            brief = {k: v for k, v in rows[-1].items() if k != "FLOP/step by op"}
            progress.write(f"row {json.dumps(brief)}", file=sys.stderr)
            progress.update(1)
    set_precision("")
    trainable = int(sum(np.prod(v.shape) for v in variables))
    return rows, {"image_size": size, "T": num_slots, "trainable_parameters": trainable}


def matmul_peak(size, dtype="float32", rounds=3):
    """GFLOP/s of a [size, size] x [size, size] tf.matmul in `dtype` (the best of `rounds`)."""
    import tensorflow as tf

    a = tf.random.normal([size, size], dtype=dtype)
    b = tf.random.normal([size, size], dtype=dtype)
    matmul = tf.function(lambda: tf.matmul(a, b))
    matmul().numpy()
    best = min(_median_times([lambda: matmul().numpy()], 1)[0] for _ in range(rounds))
    return 2 * size**3 / best / 1e9


def _significant(value, digits=3):
    """`value` with `digits` significant digits, without an exponent (0.0123, 1.23, 1234)."""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def _cell(column, value):
    if column in ("step s", "backbone fwd s"):
        return f"{value:.3f}"
    if column == "examples/s":
        return f"{value:.2f}"
    if column == "step / backbone":
        return f"{value:.1f}x"
    if column == "GFLOP/step":
        return _significant(value)
    if column == "share of peak":
        return _significant(100 * value) + "%"
    return str(value)


def format_table(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c, row[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))  # flops.py
    import tensorflow as tf
    from tqdm import tqdm

    # The peak of the row's precision (float32 always measured), before and after the rows.
    dtypes = ["float32"] + (["bfloat16"] if args.precision == "bfloat16" else [])
    peaks = {dtype: [matmul_peak(args.peak_size, dtype)] for dtype in dtypes}
    rows, models = [], {}
    total = len(args.forms) * len(args.batch_sizes) * len(args.words)
    with tqdm(total=total, desc="train steps", file=sys.stderr) as progress:
        for form in args.forms:
            form_rows, models[form] = measure_form(args, form, progress)
            rows.extend(form_rows)
    for dtype in dtypes:
        peaks[dtype].append(matmul_peak(args.peak_size, dtype))
    peak_dtype = dtypes[-1]
    peak = max(peaks[peak_dtype])
    for row in rows:
        row["share of peak"] = round(row["FLOP/step"] / 1e9 / row["step s"] / peak, 6)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, TF {tf.__version__}"
    precision = args.precision or "float32"
    measured = "; ".join(
        f"{dtype} matmul {args.peak_size}^3: {before:.0f} GFLOP/s before the rows, "
        f"{after:.0f} after"
        for dtype, (before, after) in peaks.items()
    )
    print(
        f"{pathlib.Path(args.config).name}, random weights, {precision}"
        f"{', XLA' if args.jit_compile else ''}, overrides {args.set or 'none'}, {machine}; "
        f"median of {args.steps} steps after {args.warmup} warm-up; {measured}; "
        f"share of peak = GFLOP/step / step s / {peak:.0f} GFLOP/s (the {peak_dtype} matmul, "
        "the better of before and after)"
    )
    print(format_table(rows))
    if args.json:
        result = {
            "config": str(pathlib.Path(args.config).resolve().relative_to(REPO))
            if pathlib.Path(args.config).resolve().is_relative_to(REPO)
            else args.config,
            "overrides": args.set,
            "precision": precision,
            "jit_compile": args.jit_compile,
            "matmul_gflops": [round(x, 1) for x in peaks["float32"]],
            **(
                {"matmul_gflops_bfloat16": [round(x, 1) for x in peaks["bfloat16"]]}
                if "bfloat16" in peaks
                else {}
            ),
            "peak_gflops": round(peak, 1),
            "peak_dtype": peak_dtype,
            "steps": args.steps,
            "warmup": args.warmup,
            "machine": machine,
            "platform": platform.platform(),
            "models": models,
            "rows": rows,
        }
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return rows


if __name__ == "__main__":
    main()
