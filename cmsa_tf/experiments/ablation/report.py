"""The ablation summary: statistics over seeds, the paper's-ordering check, markdown tables."""

import numpy as np

from cmsa_tf.evaluation.metrics import DEFAULT_THRESHOLDS
from cmsa_tf.experiments.ablation.variants import GROUP_TITLES, PAPER_BEST

METRICS = ("overall_iou", "mean_iou") + tuple(f"prec@{t:g}" for t in DEFAULT_THRESHOLDS)


def summarize(per_seed: dict) -> dict:
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


def to_markdown(results: dict) -> str:
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


def check_paper_ordering(results: dict, metric: str = "overall_iou") -> list[dict]:
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


def ordering_markdown(results: dict) -> str:
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
