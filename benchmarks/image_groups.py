"""The Trainer's step with k expressions per image (`data.expressions_per_image`), k = 1, 2, 4, ...

Each k runs the `configs/shapes.py` Trainer (or `--config`) on its plain input in its own
process (`trainer_input.py`'s child, with `--set data.expressions_per_image=k`), `--repeats`
times, the values of k alternating so that load from other processes hits them alike. A row gives
the median seconds per step over the rounds and repeats, expressions/s, images/s (the backbone's
batch is batch_size / k images), and the step time against k = 1. The TFRecords must exist
(`make demo`, or the commands in the config's docstring).

    .venv/bin/python benchmarks/image_groups.py --json benchmarks/results/image_groups.json
    .venv/bin/python benchmarks/image_groups.py --groups 1,4 --rounds 2  # quicker
"""

import argparse
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import trainer_input  # noqa: E402  (the child process and the report)

COLUMNS = (
    "expressions per image",
    "images per step",
    "s/step",
    "expressions/s",
    "images/s",
    "step / k=1",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "shapes.py"))
    parser.add_argument("--config_arg", default=None, help="the config's argument, e.g. long")
    parser.add_argument("--groups", default="1,2,4,8", help="values of k, comma-separated")
    parser.add_argument("--repeats", type=int, default=2, help="processes of each k")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per process")
    parser.add_argument("--steps_per_round", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps of each first")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="as trainer_input.py"
    )
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        args.groups = [int(k) for k in args.groups.split(",") if k.strip()]
    except ValueError:
        parser.error(f"--groups takes comma-separated ints, got {args.groups!r}")
    if not args.groups or min(args.groups) < 1 or 1 not in args.groups:
        parser.error(f"--groups must be positive ints including 1, got {args.groups}")
    if min(args.repeats, args.rounds, args.steps_per_round, args.warmup) < 1:
        parser.error("--repeats, --rounds, --steps_per_round and --warmup must be >= 1")
    return args


def run(args):
    """Every k, each in its own processes, alternating: (machine, rows)."""
    results, by_name = trainer_input.run_variants(
        args, {f"k={k}": [f"data.expressions_per_image={k}"] for k in args.groups}
    )
    results = {k: results[f"k={k}"] for k in args.groups}
    step_s = {k: by_name[f"k={k}"] for k in args.groups}
    batch = results[1][0]["batch"]
    rows = [
        {
            "expressions per image": k,
            "images per step": batch // k,
            "s/step": round(step_s[k], 4),
            "expressions/s": round(batch / step_s[k], 1),
            "images/s": round(batch / k / step_s[k], 1),
            "step / k=1": round(step_s[k] / step_s[1], 2),
            "round s/step": [round(s, 4) for r in results[k] for s in r["seconds"]],
        }
        for k in args.groups
    ]
    machine = trainer_input.machine_info(args, results[1][0], {"batch (expressions)": batch})
    return machine, rows


def main(argv=None):
    args = parse_args(argv)
    machine, rows = run(args)
    trainer_input.report(machine, COLUMNS, rows, args.json, first_align=" ---: ")


if __name__ == "__main__":
    main()
