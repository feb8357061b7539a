r"""The learning curve of a run: validation overall IoU against steps, as a table and a PNG.

During training `TrainingEvaluator` (every `config.train.eval_every` steps) appends one JSON line
per evaluation to `<workdir>/eval/learning_curve.jsonl` (`append_point`): the step, the split,
its metrics and the wall-clock time. This module reads it back:

  python -m cmsa_tf.visualize.learning_curve --workdir=workdir/shapes \
      [--timing=workdir/shapes/timing.txt]

prints the curve as a Markdown table (the `elapsed` column counts minutes from the first
evaluation), writes
`<workdir>/eval/learning_curve.png`, and with `--timing` (lines `UNIX_SECONDS STAGE`, as the
Makefile's demo writes them) prints how long each stage took.
"""

import argparse
import json
import os
import time

CURVE_FILE = "learning_curve.jsonl"


def curve_path(workdir: str) -> str:
    """`<workdir>/eval/learning_curve.jsonl`."""
    return os.path.join(workdir, "eval", CURVE_FILE)


def append_point(path: str, step: int, split: str, metrics: dict) -> None:
    """Appends one evaluation (`step`, `split`, float `metrics`, `time`) as a JSON line."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    row = {"step": int(step), "split": split, "time": time.time()}
    row.update({k: float(v) for k, v in metrics.items()})
    with open(path, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


def read_curve(path: str) -> list[dict]:
    """The points of a curve file, by step; a later point of the same step (a resumed run
    evaluated again) replaces the earlier one."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No learning curve at {path}: train with --config.train.eval_every=N (N > 0)."
        )
    by_step = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                by_step[int(row["step"])] = row
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(
                    f"{path}:{number}: not a learning-curve point ({error})."
                ) from None
    return [by_step[step] for step in sorted(by_step)]


def curve_table(points: list[dict]) -> str:
    """The curve as a Markdown table: step, split, overall IoU, mean IoU (%), minutes."""
    lines = [
        "| step | split | overall IoU | mean IoU | expressions | elapsed (min) |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    start = points[0]["time"] if points else 0.0
    for p in points:
        lines.append(
            f"| {p['step']} | {p['split']} | {100 * p['overall_iou']:.2f} | "
            f"{100 * p['mean_iou']:.2f} | {int(p.get('count', 0))} | "
            f"{(p['time'] - start) / 60:.1f} |"
        )
    return "\n".join(lines)


def curve_figure(points: list[dict], title: str = "learning curve"):
    """A matplotlib figure of overall and mean IoU (%) against steps."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.2), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    steps = [p["step"] for p in points]
    split = points[0]["split"] if points else "val"
    axes.plot(steps, [100 * p["overall_iou"] for p in points], "o-", label="overall IoU")
    axes.plot(steps, [100 * p["mean_iou"] for p in points], "s--", label="mean IoU")
    axes.set_xlabel("training step")
    axes.set_ylabel(f"{split} IoU (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def timing_table(path: str) -> str:
    """Stage durations from lines `UNIX_SECONDS STAGE` (the first line is the start)."""
    marks = []
    with open(path) as f:
        for line in f:
            if line.strip():
                seconds, _, stage = line.strip().partition(" ")
                marks.append((float(seconds), stage))
    lines = ["| stage | minutes |", "| --- | ---: |"]
    for (before, _), (after, stage) in zip(marks, marks[1:]):
        lines.append(f"| {stage} | {(after - before) / 60:.1f} |")
    if len(marks) > 1:
        lines.append(f"| total | {(marks[-1][0] - marks[0][0]) / 60:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--png", default=None, help="Default <workdir>/eval/learning_curve.png.")
    parser.add_argument("--timing", default=None, help="A file of `UNIX_SECONDS STAGE` lines.")
    args = parser.parse_args(argv)
    points = read_curve(curve_path(args.workdir))
    print("Learning curve (evaluated during training):\n" + curve_table(points))
    png = args.png or os.path.join(args.workdir, "eval", "learning_curve.png")
    from cmsa_tf.visualize.images import figure_to_array, save_png

    figure = curve_figure(points, title=os.path.basename(os.path.normpath(args.workdir)))
    save_png(png, figure_to_array(figure))
    print(f"Learning curve plot: {png}")
    if args.timing:
        print("\nTiming:\n" + timing_table(args.timing))


if __name__ == "__main__":
    main()
