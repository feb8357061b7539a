"""The Trainer's step on a CPU: one or N steps per `tf.function` call, XLA, other config variants.

Each variant runs the `configs/shapes.py` Trainer (or `--config`) on its plain input in its own
process (`trainer_input.py`'s child), `--repeats` times, the variants alternating so that load
from other processes hits them alike:

- `steps_per_loop=N` for each N of `--loops`: `config.train.steps_per_loop=N`, N steps in one
  `tf.function` call and the loss brought back to the host once per call, as the training loop
  runs them;
- `xla` (with `--xla`): one step a call compiled with XLA (`config.train.jit_compile=True`);
- `--variant NAME:KEY=VALUE;KEY=VALUE...` (repeatable): one step a call with those config fields,
  e.g. `--variant "per_word:model.attention.implementation='factorized_per_word'"`.

A row gives the median seconds per step over the rounds and repeats, examples/s and the step
time against `steps_per_loop=1`. The TFRecords must exist (`make demo`, or the commands in the
config's docstring).

    .venv/bin/python benchmarks/trainer_loop.py --json benchmarks/results/trainer_loop.json
    .venv/bin/python benchmarks/trainer_loop.py --loops 1,5 --steps_per_round 10 --rounds 2
    .venv/bin/python benchmarks/trainer_loop.py --loops 1 \
        --variant "per_word:model.attention.implementation='factorized_per_word'"
"""

import argparse
import math
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import trainer_input  # noqa: E402  (the child process and the report)

COLUMNS = ("variant", "steps per call", "XLA", "s/step", "examples/s", "step / 1 a call")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "shapes.py"))
    parser.add_argument("--config_arg", default=None, help="the config's argument, e.g. long")
    parser.add_argument("--loops", default="1,10", help="steps per call, comma-separated")
    parser.add_argument("--xla", action="store_true", help="add a row with jit_compile=True")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE;...",
        help="a row of one step a call with these config fields (repeatable)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="processes of each variant")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per process")
    parser.add_argument(
        "--steps_per_round", type=int, default=None, help="default: 20, or the loops' LCM"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of the step first")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="as trainer_input.py"
    )
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        args.loops = [int(n) for n in args.loops.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--loops takes comma-separated ints, got {args.loops!r}")
    if not args.loops or min(args.loops) < 1 or 1 not in args.loops:
        parser.error(f"--loops must be positive ints including 1, got {args.loops}")
    variants = []
    for item in args.variant:
        name, _, fields = item.partition(":")
        fields = [f.strip() for f in fields.split(";") if f.strip()]
        if not name.strip() or not fields or any("=" not in f for f in fields):
            parser.error(f"--variant takes NAME:KEY=VALUE;KEY=VALUE..., got {item!r}")
        variants.append((name.strip(), fields))
    args.variant = variants
    if args.steps_per_round is None:
        args.steps_per_round = math.lcm(20, *args.loops)
    if any(args.steps_per_round % n for n in args.loops):
        parser.error(f"--steps_per_round={args.steps_per_round} must be a multiple of {args.loops}")
    if min(args.repeats, args.rounds, args.steps_per_round, args.warmup) < 1:
        parser.error("--repeats, --rounds, --steps_per_round and --warmup must be >= 1")
    return args


def variants(args):
    """(name, steps per call, XLA, the config fields it sets) of every row."""
    rows = [(f"steps_per_loop={n}", n, False, [f"train.steps_per_loop={n}"]) for n in args.loops]
    if args.xla:
        rows.append(("xla", 1, True, ["train.steps_per_loop=1", "train.jit_compile=True"]))
    for name, fields in args.variant:
        rows.append((name, 1, False, ["train.steps_per_loop=1", *fields]))
    if len({name for name, *_ in rows}) < len(rows):
        raise SystemExit(f"Two rows share a name: {[name for name, *_ in rows]}")
    return rows


def run(args):
    """Every variant, each in its own processes, alternating: (machine, rows)."""
    table = variants(args)
    results, step_s = trainer_input.run_variants(
        args, {name: fields for name, _, _, fields in table}
    )
    batch = results[table[0][0]][0]["batch"]
    base = step_s["steps_per_loop=1"]
    rows = [
        {
            "variant": name,
            "steps per call": per_call,
            "XLA": "yes" if xla else "no",
            "s/step": round(step_s[name], 4),
            "examples/s": round(batch / step_s[name], 1),
            "step / 1 a call": round(step_s[name] / base, 2),
            "round s/step": [round(s, 4) for r in results[name] for s in r["seconds"]],
            "steps trained per process": [r["steps trained"] for r in results[name]],
        }
        for name, per_call, xla, _ in table
    ]
    first = results[table[0][0]][0]
    return trainer_input.machine_info(args, first, {"batch": batch}), rows


def main(argv=None):
    args = parse_args(argv)
    machine, rows = run(args)
    trainer_input.report(machine, COLUMNS, rows, args.json)


if __name__ == "__main__":
    main()
