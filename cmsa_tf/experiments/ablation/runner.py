"""Trains and evaluates ablation variants over seeds, resuming what an earlier run left.

Every run lives in `WORKDIR/<variant>/seed<k>/` (a normal training workdir: checkpoints,
TensorBoard, `config.json`) with its metrics in `results.json` there; the summary is
`WORKDIR/results.json`, `WORKDIR/results.md` and `WORKDIR/ablation.png`.
"""

import json
import os
from collections.abc import Callable, Sequence

import keras
import ml_collections
import tensorflow as tf
from absl import logging

from cmsa_tf.evaluation import evaluator as evaluator_lib
from cmsa_tf.experiments.ablation.plot import plot
from cmsa_tf.experiments.ablation.report import check_paper_ordering, summarize, to_markdown
from cmsa_tf.experiments.ablation.variants import (
    VARIANTS,
    check_config,
    resolve_variants,
    variant_config,
)
from cmsa_tf.models import restore
from cmsa_tf.training import loop as loop_lib

RUN_RESULTS = "results.json"


class AblationInterrupted(RuntimeError):
    """Training stopped early (SIGTERM); the run resumes from its checkpoint next time."""


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
    latest = tf.train.latest_checkpoint(restore.checkpoint_dir(run_dir))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def result_keys(splits: Sequence[str], crf: bool) -> list[str]:
    """The metric rows of each run: every split, then `"<split> + CRF"` when `crf`."""
    keys = []
    for split in splits:
        keys.append(split)
        if crf:
            keys.append(f"{split} + CRF")
    return keys


def run_variant(
    config: ml_collections.ConfigDict,
    name: str,
    seed: int,
    run_dir: str,
    splits: Sequence[str],
    *,
    crf: bool = False,
    max_examples: int | None = None,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, dict]:
    """Trains (or resumes) and evaluates one variant / seed; returns {result key: metrics}.

    `config` is the variant's config (`variant_config`). Nothing is trained when the run's
    checkpoint is at `config.train.steps` already, and nothing is evaluated when
    `run_dir/results.json` holds the asked splits for that many steps.
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
        outcome = loop_lib.train_and_evaluate(config, run_dir, strategy=strategy, progress=progress)
        if outcome.get("stopped_early"):
            raise AblationInterrupted(
                f"Training of {name} seed {seed} stopped at step {outcome.get('step')} (signal); "
                "run the same command again to resume."
            )
    elif trained > steps:
        logging.warning(
            "%s holds a checkpoint at step %d, past the budget of %d steps; evaluating it.",
            run_dir,
            trained,
            steps,
        )
    missing = [s for s in splits if s not in stored or (crf and f"{s} + CRF" not in stored)]
    say(f"{name} seed {seed}: evaluating {', '.join(missing)}.")
    model, checkpoint, step = restore.build_and_restore(config, workdir=run_dir)
    for split in missing:
        stored.update(
            evaluator_lib.evaluate_split(
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


def run_ablation(
    config: ml_collections.ConfigDict,
    variants: str | Sequence[str],
    workdir: str,
    seeds: Sequence[int] = (0,),
    splits: Sequence[str] | None = None,
    progress: bool = True,
    *,
    steps: int | None = None,
    crf: bool | None = None,
    max_examples: int | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
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
        strategy: tf.distribute strategy for training (default:
            `cmsa_tf.training.create_strategy("mirrored")`).

    Returns:
        The dict written to `<workdir>/results.json`: `variants` {name: label, paper_iou, model
        fields, `seeds` {seed: {result key: metrics}}, `summary` (see `summarize`)}, `groups`,
        `seeds`, `splits`, `steps`, `crf`, `paper_ordering` (see `check_paper_ordering`).
    """
    names, groups = resolve_variants(variants)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers, got {seeds!r}.")
    check_config(config, names)
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
