"""The Trainer's step fed by the strategy's distributed input against a plain `tf.data` iterator.

A `Trainer` of `--config` (default `configs/shapes.py`, the `make demo` model; its TFRecords
must exist: `make demo` or the commands in the config's docstring write them) under
`create_strategy(--strategy)`, fed by `trainer.dataset(distribute=True)`
(`strategy.distribute_datasets_from_function`) or `trainer.dataset(distribute=False)` (the plain
dataset, what `Trainer.dataset()` picks for one CPU replica: `cmsa_tf.training.distributes_input`).
Each input runs in its own process (a distributed iterator, once made, slowed every step of its
process, a plain iterator's included), `--repeats` times, alternating, so load from other
processes hits both alike. A process runs `--warmup` untimed calls of the step and `--rounds`
rounds of `--steps_per_round` steps (with `--set train.steps_per_loop=N`, N steps a call, as the
training loop runs them). A row gives the median seconds per step over its rounds and repeats,
examples/s, the minor page faults per step (`getrusage`: memory pages the step touched fresh)
and the step time against the plain iterator's.

    .venv/bin/python benchmarks/trainer_input.py --json benchmarks/results/trainer_input.json
    .venv/bin/python benchmarks/trainer_input.py --set train.batch_size=4 --rounds 2  # quicker
"""

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
INPUTS = ("distributed", "plain")
COLUMNS = ("input", "s/step", "examples/s", "minor page faults/step", "step / plain")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "shapes.py"))
    parser.add_argument("--config_arg", default=None, help="the config's argument, e.g. long")
    parser.add_argument("--strategy", default="mirrored", help="as cmsa_tf.train --strategy")
    parser.add_argument("--repeats", type=int, default=2, help="processes of each input")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per process")
    parser.add_argument("--steps_per_round", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls of the step first")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. train.batch_size=8 (a Python literal); the "
        "backbone weights are random (model.backbone.weights=None)",
    )
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--child", choices=INPUTS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.repeats, args.rounds, args.steps_per_round, args.warmup) < 1:
        parser.error("--repeats, --rounds, --steps_per_round and --warmup must be >= 1")
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
    return args


def _minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _step_call(trainer, config, steps_per_round):
    """`(call, steps)`: `call(iterator)` runs `steps` training steps as the training loop does
    (`config.train.steps_per_loop` steps per `tf.function` call) and brings the loss to the host."""
    import tensorflow as tf

    per_call = int(config.train.get("steps_per_loop") or 1)
    if per_call < 1 or steps_per_round % per_call:
        raise SystemExit(
            f"--steps_per_round={steps_per_round} must be a multiple of "
            f"train.steps_per_loop={per_call}."
        )
    if per_call == 1:
        step = trainer.train_step_fn()
        return (lambda iterator: float(step(iterator)[0])), 1
    steps, count = trainer.train_steps_fn(), tf.constant(per_call, tf.int32)
    return (lambda iterator: float(steps(iterator, count)[0])), per_call


def measure(args):
    """One input, in this process: seconds and minor page faults per step of each round."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    import tensorflow as tf
    from train_step import load_config  # the config file, backbone weights None, --set fields

    from cmsa_tf.data import manifest
    from cmsa_tf.training import Trainer, create_strategy, distributes_input

    config = load_config(args.config, args.config_arg, args.set)
    os.chdir(REPO)  # the config's data paths are relative to the repository
    tfrecord_dir = config.data.tfrecord_dir
    if not os.path.exists(os.path.join(tfrecord_dir, manifest.MANIFEST_NAME)):
        raise SystemExit(
            f"No TFRecords at {tfrecord_dir} (config.data.tfrecord_dir): run `make demo` or the "
            "data commands of the config's docstring first."
        )
    strategy = create_strategy(args.strategy)
    seconds, faults = [], []
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(config, workdir, strategy)
        call, per_call = _step_call(trainer, config, args.steps_per_round)
        iterator = iter(trainer.dataset(distribute=args.child == "distributed"))
        for _ in range(args.warmup):
            call(iterator)
        for _ in range(args.rounds):
            start_faults, start = _minor_faults(), time.perf_counter()
            for _ in range(args.steps_per_round // per_call):
                call(iterator)
            seconds.append((time.perf_counter() - start) / args.steps_per_round)
            faults.append((_minor_faults() - start_faults) / args.steps_per_round)
    return {
        "seconds": seconds,
        "steps trained": int(trainer.step),  # warm-up included
        "faults": faults,
        "batch": int(config.train.batch_size),
        "tensorflow": tf.__version__,
        "strategy": f"{args.strategy} ({type(strategy).__name__}, "
        f"{strategy.num_replicas_in_sync} replica(s))",
        "default": "distributed" if distributes_input(strategy) else "plain",
    }


def _child_argv(args):
    argv = ["--config", args.config, "--strategy", args.strategy, "--warmup", str(args.warmup)]
    argv += ["--rounds", str(args.rounds), "--steps_per_round", str(args.steps_per_round)]
    argv += ["--config_arg", args.config_arg] if args.config_arg else []
    for item in args.set:
        argv += ["--set", item]
    return argv


def run_child(args, name: str, label: str | None = None) -> dict:
    """`measure` of input `name` in a fresh process with `args`' settings; its result."""
    child = subprocess.run(
        [sys.executable, __file__, *_child_argv(args), "--child", name],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    if child.returncode != 0:
        raise SystemExit(f"The {label or name} run failed:\n{child.stderr[-4000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def run_variants(args, variants: dict) -> tuple[dict, dict]:
    """Each variant (name -> the config fields it sets on top of `args.set`) on the plain input
    of one CPU replica, each in its own processes, `args.repeats` times, the variants
    alternating: `(results, step_s)`, each variant's child results and median s/step."""
    results = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fields in variants.items():
            child_args = argparse.Namespace(**vars(args))
            child_args.strategy = "mirrored"  # this script's default: one replica on a CPU
            child_args.set = [*args.set, *fields]
            results[name].append(run_child(child_args, "plain", label=name))
    step_s = {
        name: statistics.median(s for r in runs for s in r["seconds"])
        for name, runs in results.items()
    }
    return results, step_s


def run(args):
    """Both inputs, each in its own processes, alternating: (machine, rows)."""
    results = {name: [] for name in INPUTS}
    for _ in range(args.repeats):
        for name in INPUTS:
            results[name].append(run_child(args, name))
    first = results["plain"][0]
    batch = first["batch"]
    seconds = {name: [s for r in runs for s in r["seconds"]] for name, runs in results.items()}
    step_s = {name: statistics.median(values) for name, values in seconds.items()}
    rows = []
    for name, runs in results.items():
        rows.append(
            {
                "input": name,
                "s/step": round(step_s[name], 4),
                "examples/s": round(batch / step_s[name], 1),
                "minor page faults/step": round(
                    statistics.median(f for r in runs for f in r["faults"])
                ),
                "step / plain": round(step_s[name] / step_s["plain"], 2),
                "round s/step": [round(s, 4) for s in seconds[name]],
            }
        )
    extra = {"Trainer.dataset() default": first["default"], "batch": batch}
    return machine_info(args, first, extra), rows


def machine_info(args, child: dict, extra: dict) -> dict:
    """The machine, TensorFlow, strategy (from a child's result), config and run sizes."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "tensorflow": child["tensorflow"],
        "strategy": child["strategy"],
        **extra,
        "config": os.path.relpath(args.config, REPO)
        + (f":{args.config_arg}" if args.config_arg else ""),
        "overrides": args.set,
        "processes x rounds x steps": f"{args.repeats} x {args.rounds} x {args.steps_per_round}",
    }


def report(machine: dict, columns, rows, json_path=None, first_align=" --- "):
    """Prints the machine and the rows as a Markdown table; writes both to `json_path`."""
    print(json.dumps(machine))
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join(first_align if i == 0 else " ---: " for i in range(len(columns))) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"machine": machine, "rows": rows}, f, indent=2)
            f.write("\n")


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return
    machine, rows = run(args)
    report(machine, COLUMNS, rows, args.json)


if __name__ == "__main__":
    main()
