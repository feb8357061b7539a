"""The ablation chart: overall IoU per variant and split, with the spread over seeds."""

import numpy as np
import tensorflow as tf

from cmsa_tf.experiments.ablation.variants import GROUP_TITLES


def plot(results: dict, path: str) -> None:
    """Bar chart of the overall IoU per variant and split (error bars: std over seeds)."""
    # Imported here: only the summary needs matplotlib. A figure on its own Agg canvas never
    # touches pyplot's global backend.
    import matplotlib.figure
    from matplotlib.backends import backend_agg

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
        axis.set_xticklabels(
            [results["variants"][n]["label"] for n in names], fontsize=8, rotation=15, ha="right"
        )
        axis.set_ylabel("overall IoU (%)")
        axis.set_title(GROUP_TITLES.get(group, "Selected variants"), fontsize=10)
        axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    with tf.io.gfile.GFile(path, "wb") as f:
        figure.savefig(f, format="png")
