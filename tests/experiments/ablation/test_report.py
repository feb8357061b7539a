"""Ablation summary: statistics over seeds, the markdown tables, the chart, the ordering check."""

import numpy as np
from PIL import Image

from cmsa_tf.experiments import ablation


def _fake_results():
    def metrics(iou):
        return dict(
            {"overall_iou": iou, "mean_iou": iou - 0.1, "count": 10},
            **{f"prec@{t:g}": iou / (1 + t) for t in (0.5, 0.6, 0.7, 0.8, 0.9)},
        )

    per_seed = {0: {"val": metrics(0.50)}, 1: {"val": metrics(0.52)}}
    return {
        "groups": {"fusion": ["ppm"]},
        "seeds": [0, 1],
        "splits": ["val"],
        "steps": 10,
        "crf": False,
        "variants": {
            "ppm": {
                "label": "CMSA+PPM",
                "paper_iou": 53.54,
                "seeds": per_seed,
                "summary": ablation.summarize(per_seed),
            }
        },
    }


def test_summary_markdown_and_chart(tmp_path):
    results = _fake_results()
    summary = results["variants"]["ppm"]["summary"]["val"]
    assert summary["overall_iou"]["values"] == [0.50, 0.52]
    np.testing.assert_allclose(summary["overall_iou"]["mean"], 0.51)
    np.testing.assert_allclose(summary["overall_iou"]["std"], np.std([0.5, 0.52], ddof=1))
    np.testing.assert_allclose(summary["prec@0.5"]["mean"], 0.51 / 1.5)
    table = ablation.to_markdown(results)
    assert "## Multi-level feature fusion (Table 3, bottom)" in table
    assert "| CMSA+PPM (`ppm`) | val | 51.00 +- 1.41 | 34.00 | " in table
    assert table.rstrip().endswith("| 53.54 |")
    path = str(tmp_path / "chart.png")
    ablation.plot(results, path)
    assert min(Image.open(path).size) > 100


def _group_results(values_by_variant, group="attention"):
    """Results of one group from {variant: {split: [overall IoU per seed]}}."""
    variants = {}
    for name, splits in values_by_variant.items():
        per_seed = {}
        for key, values in splits.items():
            for seed, value in enumerate(values):
                per_seed.setdefault(seed, {})[key] = dict(
                    {"overall_iou": value, "mean_iou": value},
                    **{f"prec@{t:g}": value for t in (0.5, 0.6, 0.7, 0.8, 0.9)},
                )
        variants[name] = {
            "label": ablation.VARIANTS[name].label,
            "paper_iou": ablation.VARIANTS[name].paper_iou,
            "seeds": per_seed,
            "summary": ablation.summarize(per_seed),
        }
    return {
        "groups": {group: list(values_by_variant)},
        "seeds": [0, 1],
        "splits": ["val"],
        "steps": 10,
        "crf": False,
        "variants": variants,
    }


def test_paper_ordering_verdicts():
    results = _group_results(
        {
            "no_attention": {"val": [0.40, 0.42], "testB": [0.50, 0.52]},  # below / above: apart
            "word_attention": {"val": [0.45, 0.48], "testB": [0.44, 0.47]},  # overlapping ranges
            "pixel_attention": {"val": [0.46, 0.49], "testB": [0.44, 0.45]},
            "cmsa_w": {"val": [0.45, 0.46], "testB": [0.45, 0.46]},
        }
    )
    rows = ablation.check_paper_ordering(results)
    assert [(r["best"], r["other"]) for r in rows] == [
        ("cmsa_w", "no_attention"),
        ("cmsa_w", "word_attention"),
        ("cmsa_w", "pixel_attention"),
    ]
    np.testing.assert_allclose(rows[0]["paper_difference"], 50.12 - 45.63)
    verdicts = {r["other"]: {k: v["verdict"] for k, v in r["splits"].items()} for r in rows}
    assert verdicts == {
        "no_attention": {"val": "holds", "testB": "reversed"},
        "word_attention": {"val": "reversed within spread", "testB": "tie"},
        "pixel_attention": {"val": "reversed within spread", "testB": "holds within spread"},
    }
    np.testing.assert_allclose(rows[0]["splits"]["val"]["difference"], 0.455 - 0.41)
    np.testing.assert_allclose(rows[2]["splits"]["testB"]["difference"], 0.455 - 0.445)
    assert rows[0]["splits"]["testB"]["other_values"] == [0.50, 0.52]

    table = ablation.to_markdown(results)
    assert "## Does the paper's ordering hold?" in table
    assert (
        "| Attention methods | `cmsa_w` | `no_attention` | +4.49 | +4.50 (holds) | "
        "-5.50 (reversed) |" in table
    )
    # A group without its paper-best variant has nothing to compare.
    partial = _group_results({"no_attention": {"val": [0.4, 0.5]}})
    assert ablation.check_paper_ordering(partial) == []
    assert "ordering hold" not in ablation.to_markdown(partial)
