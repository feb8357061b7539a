r"""The paper's ablations (Tables 2 and 3): every variant trained with one budget, seeds and splits.

  python -m cmsa_tf.experiments.ablation --config=configs/shapes.py --variants=all \
      --workdir=workdir/ablation --seeds=0,1,2 [--steps=2000] [--splits=val,testA,testB] [--crf]

`--variants` takes groups (`attention`, `representation`, `fusion`, `all`) or variant names
(`VARIANTS`), comma-separated. Each variant overrides three config fields of the base config,
`model.attention.variant`, `model.word_representation` and `model.fusion` (the definitions are in
docs/ablations.md); everything else, including the training budget, is the base config's.

Like the paper, the attention (Table 2) and word-representation (Table 3, top) ablations use res5
alone (`fusion="single"`); the fusion ablation (Table 3, bottom) uses all three levels.

Every run lives in `WORKDIR/<variant>/seed<k>/` (a normal training workdir: checkpoints,
TensorBoard, `config.json`) with its metrics in `results.json` there. The summary is
`WORKDIR/results.json`, `WORKDIR/results.md` (overall IoU mean +- sample standard deviation over
the seeds, prec@0.5..0.9) and `WORKDIR/ablation.png`. Running the same command again resumes:
finished runs are neither retrained nor re-evaluated, interrupted ones continue from their last
checkpoint, and only missing splits are evaluated.

The command reuses `cmsa_tf.train`'s flags `--config`, `--workdir`, `--strategy` and
`--num_cpu_devices` (`--config.KEY=VALUE` overrides work as there).
"""

import collections
import json
import os

from absl import app, flags, logging
import keras
import numpy as np
import tensorflow as tf

from cmsa_tf import evaluate as evaluate_lib
from cmsa_tf import train as train_lib
from cmsa_tf.evaluation.metrics import DEFAULT_THRESHOLDS
from cmsa_tf.utils import experiment

Variant = collections.namedtuple(
    "Variant", ["label", "attention", "word_representation", "fusion", "paper_iou"]
)
Variant.__doc__ = (
    "One ablation: its table label, the three config values it sets, and the overall IoU the "
    "paper reports for it (UNC val, with DenseCRF)."
)

VARIANTS = {
    # Table 2: attention methods, res5 only.
    "no_attention": Variant("No attention", "none", "words", "single", 45.63),
    "word_attention": Variant("Word attention", "word", "words", "single", 47.01),
    "pixel_attention": Variant("Pixel attention", "pixel", "words", "single", 47.84),
    "word_pixel_pair_attention": Variant(
        "Word-pixel pair attention", "word_pixel_pair", "words", "single", 47.57
    ),
    # Table 2's "Cross-modal self-attention" row and Table 3's CMSA-W: the same model.
    "cmsa_w": Variant(
        "CMSA-W (cross-modal self-attention, res5)", "cmsa", "words", "single", 50.12
    ),
    # Table 3 (top): the sentence as one LSTM vector.
    "cmsa_s": Variant("CMSA-S (LSTM sentence vector, res5)", "cmsa", "sentence", "single", 48.53),
    # Table 3 (bottom): multi-level fusion methods over res5, res4, res3.
    "ppm": Variant("CMSA+PPM", "cmsa", "words", "ppm", 53.54),
    "deconv": Variant("CMSA+Deconv", "cmsa", "words", "deconv", 54.18),
    "convlstm": Variant("CMSA+ConvLSTM", "cmsa", "words", "convlstm", 56.56),
    "self_gated": Variant("CMSA+Gated (self-gated)", "cmsa", "words", "self_gated", 57.08),
    "gated_fusion": Variant("CMSA+GF (gated fusion, the paper)", "cmsa", "words", "gated", 58.32),
}
GROUPS = {
    "attention": (
        "no_attention",
        "word_attention",
        "pixel_attention",
        "word_pixel_pair_attention",
        "cmsa_w",
    ),
    "representation": ("cmsa_s", "cmsa_w"),
    # cmsa_w is the no-fusion reference (res5 alone).
    "fusion": ("cmsa_w", "ppm", "deconv", "convlstm", "self_gated", "gated_fusion"),
}
GROUP_TITLES = {
    "attention": "Attention methods (Table 2; res5 only)",
    "representation": "Multimodal feature representation (Table 3, top; res5 only)",
    "fusion": "Multi-level feature fusion (Table 3, bottom)",
}
# The variant each group's paper table puts on top: the one the ordering check compares with.
PAPER_BEST = {"attention": "cmsa_w", "representation": "cmsa_w", "fusion": "gated_fusion"}
RUN_RESULTS = "results.json"


class AblationInterrupted(RuntimeError):
    """Training stopped early (SIGTERM); the run resumes from its checkpoint next time."""

METRICS = ("overall_iou", "mean_iou") + tuple(f"prec@{t:g}" for t in DEFAULT_THRESHOLDS)


def resolve_variants(variants):
    """Variant names, in table order without repeats, from groups and / or variant names.

    Args:
        variants: a string (`"all"`, a group, a variant name, or several of those separated by
            commas or `|`) or a sequence of such strings.

    Returns:
        `(names, groups)`: the variant names, and the groups asked for (a dict group -> names;
        variants named one by one form the group `"selected"`).
    """
    if isinstance(variants, str):
        variants = [variants]
    tokens = []
    for item in variants:
        if not isinstance(item, str):
            raise ValueError(f"variants must be strings, got {item!r}.")
        tokens += [t.strip() for t in item.replace("|", ",").split(",") if t.strip()]
    if not tokens:
        raise ValueError(
            f"No variants given; use 'all', a group of {sorted(GROUPS)} or names of "
            f"{sorted(VARIANTS)}."
        )
    groups = {}
    for token in tokens:
        if token == "all":
            groups.update(GROUPS)
        elif token in GROUPS:
            groups[token] = GROUPS[token]
        elif token in VARIANTS:
            groups.setdefault("selected", ())
            if token not in groups["selected"]:
                groups["selected"] += (token,)
        else:
            raise ValueError(
                f"Unknown variant {token!r}; use 'all', a group of {sorted(GROUPS)} or a variant "
                f"of {sorted(VARIANTS)}."
            )
    ordered = [g for g in (*GROUPS, "selected") if g in groups]
    groups = {g: tuple(groups[g]) for g in ordered}
    names = []
    for group in groups.values():
        names += [name for name in group if name not in names]
    return names, groups


def variant_config(config, name, seed, steps=None):
    """A copy of `config` with variant `name`'s three model fields, `seed` and the step budget."""
    variant = VARIANTS[name]
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.model.attention.variant = variant.attention
        config.model.word_representation = variant.word_representation
        config.model.fusion = variant.fusion
        config.train.seed = int(seed)
        if steps is not None:
            config.train.steps = int(steps)
    return config


def _check_config(config, names):
    form = config.model.attention.form
    partial = [n for n in names if VARIANTS[n].attention != "cmsa"]
    if partial and form != "paper":
        raise ValueError(
            f"The attention ablations {partial} exist for the paper form only, but "
            f"config.model.attention.form is {form!r}. Use the config without ':official', or "
            "other variants."
        )


def _read_json(path):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _write_json(path, value):
    """Writes JSON through a temporary file, so an interrupted write leaves no partial file."""
    temporary = path + ".tmp"
    with tf.io.gfile.GFile(temporary, "w") as f:
        json.dump(value, f, indent=2)
    tf.io.gfile.rename(temporary, path, overwrite=True)


def _trained_step(run_dir):
    latest = tf.train.latest_checkpoint(experiment.checkpoint_dir(run_dir))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def result_keys(splits, crf):
    """The metric rows of each run: every split, then `"<split> + CRF"` when `crf`."""
    keys = []
    for split in splits:
        keys.append(split)
        if crf:
            keys.append(f"{split} + CRF")
    return keys


def run_variant(
    config, name, seed, run_dir, splits, *, crf=False, max_examples=None, strategy=None,
    progress=True, say=print,
):
    """Trains (or resumes) and evaluates one variant / seed; returns {result key: metrics}.

    Nothing is trained when the run's checkpoint is at `config.train.steps` already, and nothing
    is evaluated when `run_dir/results.json` holds the asked splits for that many steps.
    """
    steps = int(config.train.steps)
    path = os.path.join(run_dir, RUN_RESULTS)
    keys = result_keys(splits, crf)
    stored = {}
    if tf.io.gfile.exists(path):
        previous = _read_json(path)
        if previous.get("steps") == steps and previous.get("max_examples") == max_examples:
            stored = previous.get("results", {})
    if all(key in stored for key in keys):
        say(f"{name} seed {seed}: done before ({path}).")
        return {key: stored[key] for key in keys}

    trained = _trained_step(run_dir)
    if trained < steps:
        say(f"{name} seed {seed}: training to step {steps} in {run_dir}.")
        outcome = train_lib.train_and_evaluate(
            config, run_dir, strategy=strategy, progress=progress
        )
        if outcome.get("stopped_early"):
            raise AblationInterrupted(
                f"Training of {name} seed {seed} stopped at step {outcome.get('step')} (signal); "
                "run the same command again to resume."
            )
    elif trained > steps:
        logging.warning(
            "%s holds a checkpoint at step %d, past the budget of %d steps; evaluating it.",
            run_dir, trained, steps,
        )
    missing = [s for s in splits if s not in stored or (crf and f"{s} + CRF" not in stored)]
    say(f"{name} seed {seed}: evaluating {', '.join(missing)}.")
    model, checkpoint, step = experiment.build_and_restore(config, workdir=run_dir)
    for split in missing:
        stored.update(
            evaluate_lib.evaluate_split(
                model, config, split, crf=crf, max_examples=max_examples, progress=progress
            )
        )
    _write_json(
        path,
        {
            "variant": name,
            "seed": int(seed),
            "steps": steps,
            "checkpoint": checkpoint,
            "step": step,
            "max_examples": max_examples,
            "model": {
                "attention.variant": config.model.attention.variant,
                "word_representation": config.model.word_representation,
                "fusion": config.model.fusion,
            },
            "results": stored,
        },
    )
    del model
    keras.backend.clear_session()
    for key in keys:
        if key in stored:
            say(f"{name} seed {seed} {key}: overall IoU {100 * stored[key]['overall_iou']:.2f}%")
    return {key: stored[key] for key in keys}


def summarize(per_seed):
    """Mean, sample standard deviation (0 for one seed) and values of every metric over seeds.

    Args:
        per_seed: {seed: {result key: metrics dict}}.

    Returns:
        {result key: {metric: {"mean", "std", "values"}}}.
    """
    seeds = sorted(per_seed)
    summary = {}
    for key in per_seed[seeds[0]]:
        summary[key] = {}
        for metric in METRICS:
            values = [float(per_seed[s][key][metric]) for s in seeds]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            summary[key][metric] = {"mean": float(np.mean(values)), "std": std, "values": values}
    return summary


def to_markdown(results):
    """The markdown tables of `run_ablation`'s results, one per group, metrics in percent."""
    seeds = ", ".join(str(s) for s in results["seeds"])
    lines = [
        "# Ablations (Tables 2 and 3)",
        "",
        f"{results['steps']} training steps per run, seeds {seeds}. Overall IoU: mean +- sample "
        "standard deviation over the seeds (%); prec@X: mean (%). Paper: overall IoU on UNC val "
        "with DenseCRF (a different dataset; compare the ordering, not the numbers).",
    ]
    thresholds = [m for m in METRICS if m.startswith("prec@")]
    for group, names in results["groups"].items():
        lines += [
            "",
            f"## {GROUP_TITLES.get(group, 'Selected variants')}",
            "",
            "| Variant | Split | Overall IoU | " + " | ".join(thresholds) + " | Paper (UNC val) |",
            "| --- | --- | ---: | " + " | ".join(["---:"] * len(thresholds)) + " | ---: |",
        ]
        for name in names:
            variant = results["variants"][name]
            for key, metrics in variant["summary"].items():
                iou = metrics["overall_iou"]
                cells = [
                    f"{variant['label']} (`{name}`)",
                    key,
                    f"{100 * iou['mean']:.2f} +- {100 * iou['std']:.2f}",
                    *[f"{100 * metrics[t]['mean']:.2f}" for t in thresholds],
                    f"{variant['paper_iou']:.2f}",
                ]
                lines.append("| " + " | ".join(cells) + " |")
    ordering = ordering_markdown(results)
    if ordering:
        lines += ["", ordering.rstrip("\n")]
    return "\n".join(lines) + "\n"


def _verdict(best_values, other_values):
    """How `best` compares with `other` over the seeds: which is higher, and whether by more
    than the run-to-run spread (every seed of one above every seed of the other)."""
    difference = float(np.mean(best_values) - np.mean(other_values))
    if min(best_values) > max(other_values):
        return difference, "holds"
    if max(best_values) < min(other_values):
        return difference, "reversed"
    if difference > 1e-9:
        return difference, "holds within spread"
    if difference < -1e-9:
        return difference, "reversed within spread"
    return difference, "tie"  # equal means up to float rounding


def check_paper_ordering(results, metric="overall_iou"):
    """Whether each group's paper-best variant (`PAPER_BEST`) beats the group's other variants.

    For every group of `results` with a paper-best variant in it, and every other variant of the
    group, the difference of the seed means of `metric` per result key (split) and a verdict:
    `"holds"` when every seed of the paper-best variant is above every seed of the other (the
    difference exceeds the run-to-run spread), `"reversed"` when every seed is below, otherwise
    `"holds within spread"` / `"reversed within spread"` by the sign of the difference of means
    (or `"tie"`).

    Returns:
        A list of dicts `{group, best, other, paper_difference, splits: {key: {difference,
        verdict, best_values, other_values}}}`, differences as fractions (paper's in points).
    """
    rows = []
    for group, names in results["groups"].items():
        best = PAPER_BEST.get(group)
        if best not in names:
            continue
        best_summary = results["variants"][best]["summary"]
        for other in names:
            if other == best:
                continue
            other_summary = results["variants"][other]["summary"]
            splits = {}
            for key in best_summary:
                if key not in other_summary:
                    continue
                best_values = best_summary[key][metric]["values"]
                other_values = other_summary[key][metric]["values"]
                difference, verdict = _verdict(best_values, other_values)
                splits[key] = {
                    "difference": difference,
                    "verdict": verdict,
                    "best_values": list(best_values),
                    "other_values": list(other_values),
                }
            rows.append(
                {
                    "group": group,
                    "best": best,
                    "other": other,
                    "paper_difference": float(
                        results["variants"][best]["paper_iou"]
                        - results["variants"][other]["paper_iou"]
                    ),
                    "splits": splits,
                }
            )
    return rows


def ordering_markdown(results):
    """The markdown section of `check_paper_ordering`: one row per comparison, one column per
    split; empty when no group holds its paper-best variant."""
    rows = check_paper_ordering(results)
    if not rows:
        return ""
    keys = list(rows[0]["splits"])
    lines = [
        "## Does the paper's ordering hold?",
        "",
        "Overall IoU of the paper's best variant of each group minus the other variant's (mean "
        "over seeds, points). *holds* / *reversed*: every seed of one above every seed of the "
        "other; *within spread*: the seed ranges overlap.",
        "",
        "| Group | Paper's best | Other | Paper (UNC val) | " + " | ".join(keys) + " |",
        "| --- | --- | --- | ---: | " + " | ".join(["---"] * len(keys)) + " |",
    ]
    for row in rows:
        cells = [
            GROUP_TITLES.get(row["group"], row["group"]).split(" (")[0],
            f"`{row['best']}`",
            f"`{row['other']}`",
            f"{row['paper_difference']:+.2f}",
        ]
        for key in keys:
            split = row["splits"].get(key)
            cells.append(
                "" if split is None else f"{100 * split['difference']:+.2f} ({split['verdict']})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    """Bar chart of the overall IoU per variant and split (error bars: std over seeds)."""
    # Imported here: only the summary needs matplotlib. A figure on its own Agg canvas never
    # touches pyplot's global backend.
    import matplotlib.figure  # pylint: disable=import-outside-toplevel
    from matplotlib.backends import backend_agg  # pylint: disable=import-outside-toplevel

    groups = results["groups"]
    widest = max(len(names) for names in groups.values())
    figure = matplotlib.figure.Figure(
        figsize=(max(6.0, 1.6 * widest + 2.0), 3.6 * len(groups)), dpi=100, layout="constrained"
    )
    backend_agg.FigureCanvasAgg(figure)
    axes = figure.subplots(len(groups), 1, squeeze=False)[:, 0]
    for axis, (group, names) in zip(axes, groups.items()):
        keys = list(results["variants"][names[0]]["summary"])
        width = 0.8 / len(keys)
        positions = np.arange(len(names))
        for index, key in enumerate(keys):
            summary = [results["variants"][n]["summary"][key]["overall_iou"] for n in names]
            axis.bar(
                positions + (index - (len(keys) - 1) / 2) * width,
                [100 * s["mean"] for s in summary],
                width,
                yerr=[100 * s["std"] for s in summary],
                capsize=3,
                label=key,
            )
        axis.set_xticks(positions)
        axis.set_xticklabels([results["variants"][n]["label"] for n in names], fontsize=8,
                             rotation=15, ha="right")
        axis.set_ylabel("overall IoU (%)")
        axis.set_title(GROUP_TITLES.get(group, "Selected variants"), fontsize=10)
        axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    with tf.io.gfile.GFile(path, "wb") as f:
        figure.savefig(f, format="png")


def run_ablation(
    config,
    variants,
    workdir,
    seeds=(0,),
    splits=None,
    progress=True,
    *,
    steps=None,
    crf=None,
    max_examples=None,
    strategy=None,
):
    """Trains and evaluates every variant for every seed; writes the summary files.

    Args:
        config: the base experiment config (e.g. `configs/shapes.py`).
        variants: groups and / or variant names, see `resolve_variants`.
        workdir: root directory; runs go to `<workdir>/<variant>/seed<k>/`.
        seeds: training seeds (`config.train.seed` of each run).
        splits: splits to evaluate; default `config.data.eval_splits`.
        progress: progress bars and one line per step of the work; otherwise absl logging.
        steps: training steps of every run; default `config.train.steps`.
        crf: also evaluate with DenseCRF; default `config.eval.crf`.
        max_examples: evaluate only the first N expressions of each split.
        strategy: tf.distribute strategy for training (default: `train.create_strategy`).

    Returns:
        The dict written to `<workdir>/results.json`: `variants` {name: label, paper_iou, model
        fields, `seeds` {seed: {result key: metrics}}, `summary` (see `summarize`)}, `groups`,
        `seeds`, `splits`, `steps`, `crf`, `paper_ordering` (see `check_paper_ordering`).
    """
    names, groups = resolve_variants(variants)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers, got {seeds!r}.")
    _check_config(config, names)
    splits = list(splits if splits is not None else config.data.eval_splits)
    if not splits:
        raise ValueError("Give at least one split to evaluate (e.g. splits=('val',)).")
    crf = bool(config.eval.get("crf", False) if crf is None else crf)
    steps = int(steps if steps is not None else config.train.steps)
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}.")
    tf.io.gfile.makedirs(workdir)
    total = len(names) * len(seeds)

    results = {
        "groups": {g: list(v) for g, v in groups.items()},
        "seeds": seeds,
        "splits": splits,
        "steps": steps,
        "crf": crf,
        "variants": {},
    }
    count = 0
    for name in names:
        variant = VARIANTS[name]
        per_seed = {}
        for seed in seeds:
            count += 1

            def say(message, prefix=f"[ablation {count}/{total}] "):
                if progress:
                    print(prefix + message, flush=True)
                else:
                    logging.info("%s%s", prefix, message)

            run_dir = os.path.join(workdir, name, f"seed{seed}")
            per_seed[seed] = run_variant(
                variant_config(config, name, seed, steps),
                name,
                seed,
                run_dir,
                splits,
                crf=crf,
                max_examples=max_examples,
                strategy=strategy,
                progress=progress,
                say=say,
            )
        results["variants"][name] = {
            "label": variant.label,
            "paper_iou": variant.paper_iou,
            "model": {
                "attention.variant": variant.attention,
                "word_representation": variant.word_representation,
                "fusion": variant.fusion,
            },
            "seeds": {str(s): per_seed[s] for s in seeds},
            "summary": summarize(per_seed),
        }
    results["paper_ordering"] = check_paper_ordering(results)
    _write_json(os.path.join(workdir, "results.json"), results)
    with tf.io.gfile.GFile(os.path.join(workdir, "results.md"), "w") as f:
        f.write(to_markdown(results))
    plot(results, os.path.join(workdir, "ablation.png"))
    return results


def define_flags():
    """This program's own flags; `--config`, `--workdir`, `--strategy` and `--num_cpu_devices`
    come from `cmsa_tf.train` (defined when it is imported)."""
    flags.DEFINE_string(
        "variants",
        "all",
        f"Comma-separated groups ({', '.join(GROUPS)}, all) and / or variants "
        f"({', '.join(VARIANTS)}).",
    )
    flags.DEFINE_list("seeds", ["0"], "Training seeds, e.g. 0,1,2.")
    flags.DEFINE_integer("steps", None, "Training steps of every run (default: the config's).")
    flags.DEFINE_list("splits", None, "Splits to evaluate (default: config.data.eval_splits).")
    flags.DEFINE_boolean("crf", None, "Also evaluate with DenseCRF (default: config.eval.crf).")
    flags.DEFINE_integer("max_examples", None, "Evaluate only the first N expressions per split.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    if FLAGS.config is None or not FLAGS.workdir:
        raise app.UsageError("--config and --workdir are required.")
    try:
        seeds = [int(s) for s in FLAGS.seeds]
        resolve_variants(FLAGS.variants)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    train_lib.configure_cpu_devices(FLAGS.num_cpu_devices)
    strategy = train_lib.create_strategy(FLAGS.strategy)
    try:
        results = run_ablation(
            FLAGS.config,
            FLAGS.variants,
            FLAGS.workdir,
            seeds=seeds,
            splits=FLAGS.splits,
            steps=FLAGS.steps,
            crf=FLAGS.crf,
            max_examples=FLAGS.max_examples,
            strategy=strategy,
        )
    except (AblationInterrupted, train_lib.NonFiniteLossError) as error:
        logging.error("%s", error)
        raise SystemExit(f"error: {error}") from None
    print("\n" + to_markdown(results))
    print(f"Wrote {os.path.join(FLAGS.workdir, 'results.md')} and ablation.png.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
