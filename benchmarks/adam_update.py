"""The optimiser's update alone: `cmsa_tf.optimization.Adam` (TensorFlow's fused Adam kernel, one
op a variable) against the same optimiser with Keras's Adam update (about twenty ops a variable).

The model of `--config` (default `configs/refcoco_unc.py`, the paper's: with its frozen backbone
and the default 10,000-word vocabulary, 47.1M trainable parameters in the head) is built with
random weights; the two optimisers are created from the config's recipe
(`optimization.create_optimizer`) over its trainable variables, and each applies the same random
gradients in a `tf.function`. A row gives the seconds of the first call (tracing and graph
optimisation included), the median seconds of an update over `--rounds` rounds (the two timed in
turn, one update each a round) and the update's time against the fused one's. After the rounds,
both have applied the same gradients the same number of times: the largest difference between
their variables says they compute the same update.

    .venv/bin/python benchmarks/adam_update.py --json benchmarks/results/adam_update.json
    .venv/bin/python benchmarks/adam_update.py --config configs/shapes.py   # the demo's model
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
UPDATES = ("fused", "keras")
COLUMNS = (
    "update",
    "variables",
    "parameters",
    "first call s",
    "update s",
    "update / fused",
    "max |difference|",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "refcoco_unc.py"))
    parser.add_argument("--config_arg", default=None, help="the config's argument, e.g. official")
    parser.add_argument("--rounds", type=int, default=10, help="timed updates of each (median)")
    parser.add_argument("--vocab_size", type=int, default=10000)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. model.backbone.depth=18 (a Python literal)",
    )
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
    return args


def keras_update_adam():
    """`optimization.Adam` with Keras's own update after its bias factor."""
    import keras

    from cmsa_tf import optimization

    class KerasUpdateAdam(optimization.Adam):
        def _adam_update(self, gradient, variable, learning_rate):
            keras.optimizers.Adam.update_step(self, gradient, variable, learning_rate)

    return KerasUpdateAdam


def measure(args):
    import numpy as np
    import tensorflow as tf
    from train_step import load_config

    from cmsa_tf import optimization
    from cmsa_tf.models.factory import build_model

    config = load_config(args.config, args.config_arg, args.set)
    data = config.data
    model = build_model(config.model, args.vocab_size, data.image_size, data.max_words)
    variables = model.trainable_variables
    rng = np.random.default_rng(0)
    gradients = [tf.constant(rng.standard_normal(v.shape), v.dtype) for v in variables]
    start = [v.numpy() for v in variables]
    paths = [v.path for v in variables]
    parameters = int(sum(np.prod(v.shape) for v in variables))

    del model, variables  # each optimiser updates its own copy, so the two are timed in turn
    updates = {}
    keras_update = keras_update_adam()
    for name in UPDATES:
        optimizer = optimization.create_optimizer(config.train)
        if name == "keras":
            optimizer = keras_update.from_config(optimizer.get_config())
        # Named by the model's paths, so the recipe sees the same roles (biases by name).
        copies = [tf.Variable(value, name=path) for value, path in zip(start, paths, strict=True)]
        optimizer.build(copies)
        apply = tf.function(lambda o=optimizer, c=copies: o.apply(gradients, c))
        began = time.perf_counter()
        apply()
        first = time.perf_counter() - began
        updates[name] = {"apply": apply, "copies": copies, "first": first, "times": []}
    for _ in range(args.rounds):
        for update in updates.values():
            began = time.perf_counter()
            update["apply"]()
            # Reading one element waits for the update without copying 49M parameters back.
            float(update["copies"][-1][(0,) * update["copies"][-1].shape.rank])
            update["times"].append(time.perf_counter() - began)
    fused_values = [c.numpy() for c in updates["fused"]["copies"]]
    fused_s = statistics.median(updates["fused"]["times"])
    rows = []
    for name, update in updates.items():
        seconds = statistics.median(update["times"])
        difference = max(
            float(np.abs(c.numpy() - f).max())
            for c, f in zip(update["copies"], fused_values, strict=True)
        )
        rows.append(
            {
                "update": name,
                "variables": len(paths),
                "parameters": parameters,
                "first call s": round(update["first"], 4),
                "update s": round(seconds, 6),
                "update / fused": round(seconds / fused_s, 4),
                "max |difference|": difference,
                "round s": [round(t, 6) for t in update["times"]],
            }
        )
    return rows


def _cell(column, value):
    if column == "first call s":
        return f"{value:.2f}"
    if column == "update s":
        return f"{value:.4f}"
    if column == "update / fused":
        return f"{value:.2f}x"
    if column == "max |difference|":
        return f"{value:.1e}"
    return str(value)


def format_table(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |", "| --- |" + " ---: |" * (len(COLUMNS) - 1)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c, row[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))  # train_step.py's load_config
    import tensorflow as tf

    rows = measure(args)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, TF {tf.__version__}"
    print(
        f"{pathlib.Path(args.config).name}{':' + args.config_arg if args.config_arg else ''}, "
        f"overrides {args.set or 'none'}, {machine}; median of {args.rounds} updates each, "
        "timed in turn"
    )
    print(format_table(rows))
    if args.json:
        result = {
            "config": args.config,
            "config_arg": args.config_arg,
            "overrides": args.set,
            "rounds": args.rounds,
            "machine": machine,
            "platform": platform.platform(),
            "rows": rows,
        }
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return rows


if __name__ == "__main__":
    main()
