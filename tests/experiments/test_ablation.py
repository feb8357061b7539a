"""The ablation runner: variants, configs, summaries, and a tiny end-to-end run that resumes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cmsa_tf import evaluate as evaluate_lib
from cmsa_tf import train as train_lib
from cmsa_tf.experiments import ablation

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_resolve_variants():
    names, groups = ablation.resolve_variants("all")
    assert names == [
        "no_attention", "word_attention", "pixel_attention", "word_pixel_pair_attention",
        "cmsa_w", "cmsa_s", "ppm", "deconv", "convlstm", "self_gated", "gated_fusion",
    ]
    assert list(groups) == ["attention", "representation", "fusion"]
    assert set(names) == set(ablation.VARIANTS)
    names, groups = ablation.resolve_variants("fusion|representation")
    assert names == ["cmsa_s", "cmsa_w", "ppm", "deconv", "convlstm", "self_gated", "gated_fusion"]
    names, groups = ablation.resolve_variants(["ppm,cmsa_s", "ppm"])
    assert names == ["ppm", "cmsa_s"] and groups == {"selected": ("ppm", "cmsa_s")}
    with pytest.raises(ValueError, match="Unknown variant 'psp'"):
        ablation.resolve_variants("attention,psp")
    with pytest.raises(ValueError, match="No variants"):
        ablation.resolve_variants(" , ")


def test_variant_config_overrides_three_fields_and_the_budget(config_loader):
    base = config_loader("shapes")
    original = base.to_dict()
    config = ablation.variant_config(base, "word_pixel_pair_attention", seed=3, steps=7)
    assert config.model.attention.variant == "word_pixel_pair"
    assert (config.model.word_representation, config.model.fusion) == ("words", "single")
    assert (config.train.seed, config.train.steps) == (3, 7)
    # The base config is untouched, and everything else is the same.
    assert base.to_dict() == original
    assert (base.model.attention.variant, base.model.fusion) == ("cmsa", "gated")
    assert config.train.learning_rate == base.train.learning_rate
    assert config.data.to_dict() == base.data.to_dict()
    for name, variant in ablation.VARIANTS.items():
        config = ablation.variant_config(base, name, seed=0)
        assert (
            config.model.attention.variant,
            config.model.word_representation,
            config.model.fusion,
        ) == (variant.attention, variant.word_representation, variant.fusion)
    # The attention ablations need the paper form.
    official = config_loader("shapes", "official")
    with pytest.raises(ValueError, match="paper form only"):
        ablation.run_ablation(official, "attention", "/nonexistent/never_written")


def _fake_results():
    def metrics(iou):
        return dict({"overall_iou": iou, "mean_iou": iou - 0.1, "count": 10},
                    **{f"prec@{t:g}": iou / (1 + t) for t in (0.5, 0.6, 0.7, 0.8, 0.9)})

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
    return {"groups": {group: list(values_by_variant)}, "seeds": [0, 1], "splits": ["val"],
            "steps": 10, "crf": False, "variants": variants}


def test_paper_ordering_verdicts():
    results = _group_results({
        "no_attention": {"val": [0.40, 0.42], "testB": [0.50, 0.52]},     # below / above: apart
        "word_attention": {"val": [0.45, 0.48], "testB": [0.44, 0.47]},   # overlapping ranges
        "pixel_attention": {"val": [0.46, 0.49], "testB": [0.44, 0.45]},
        "cmsa_w": {"val": [0.45, 0.46], "testB": [0.45, 0.46]},
    })
    rows = ablation.check_paper_ordering(results)
    assert [(r["best"], r["other"]) for r in rows] == [
        ("cmsa_w", "no_attention"), ("cmsa_w", "word_attention"), ("cmsa_w", "pixel_attention")
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
    assert "| Attention methods | `cmsa_w` | `no_attention` | +4.49 | +4.50 (holds) | " \
           "-5.50 (reversed) |" in table
    # A group without its paper-best variant has nothing to compare.
    partial = _group_results({"no_attention": {"val": [0.4, 0.5]}})
    assert ablation.check_paper_ordering(partial) == []
    assert "ordering hold" not in ablation.to_markdown(partial)


def test_runner_end_to_end_and_resume(
    tmp_path, tiny_shapes_tfrecords, tiny_config, tiny_cli_flags, monkeypatch
):
    calls = {"train": 0, "evaluate": 0}
    real_train, real_evaluate = train_lib.train_and_evaluate, evaluate_lib.evaluate_split

    def counting_train(*args, **kwargs):
        calls["train"] += 1
        return real_train(*args, **kwargs)

    def counting_evaluate(*args, **kwargs):
        calls["evaluate"] += 1
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_lib, "train_and_evaluate", counting_train)
    monkeypatch.setattr(evaluate_lib, "evaluate_split", counting_evaluate)

    config = tiny_config(tiny_shapes_tfrecords)
    workdir = str(tmp_path / "ablation")
    variants = ["no_attention", "cmsa_s"]  # single-level models: the cheapest to trace
    kwargs = dict(seeds=(0,), splits=("val", "testA"), steps=2, crf=False, progress=False)
    results = ablation.run_ablation(config, variants, workdir, **kwargs)
    assert calls == {"train": 2, "evaluate": 4}

    # Each run is a training workdir with the variant's config.
    for name, attention, representation in (("no_attention", "none", "words"),
                                            ("cmsa_s", "cmsa", "sentence")):
        run_dir = os.path.join(workdir, name, "seed0")
        assert os.path.exists(os.path.join(run_dir, "checkpoints", "ckpt-2.index"))
        trained = json.load(open(os.path.join(run_dir, "config.json")))
        assert trained["model"]["attention"]["variant"] == attention
        assert trained["model"]["word_representation"] == representation
        assert trained["model"]["fusion"] == "single"
        assert trained["train"]["steps"] == 2
        run = json.load(open(os.path.join(run_dir, "results.json")))
        assert (run["variant"], run["seed"], run["step"]) == (name, 0, 2)
        assert set(run["results"]) == {"val", "testA"}

    assert json.load(open(os.path.join(workdir, "results.json"))) == json.loads(
        json.dumps(results)
    )
    assert list(results["variants"]) == variants
    for name in variants:
        summary = results["variants"][name]["summary"]
        assert list(summary) == ["val", "testA"]
        for split, metrics in summary.items():
            value = results["variants"][name]["seeds"]["0"][split]["overall_iou"]
            assert 0.0 <= value <= 1.0
            assert metrics["overall_iou"] == {"mean": value, "std": 0.0, "values": [value]}
    table = open(os.path.join(workdir, "results.md")).read()
    rows = [line.split(" | ")[:2] for line in table.splitlines() if "(`" in line]
    assert rows == [
        ["| No attention (`no_attention`)", "val"],
        ["| No attention (`no_attention`)", "testA"],
        ["| CMSA-S (LSTM sentence vector, res5) (`cmsa_s`)", "val"],
        ["| CMSA-S (LSTM sentence vector, res5) (`cmsa_s`)", "testA"],
    ]
    assert min(Image.open(os.path.join(workdir, "ablation.png")).size) > 100

    # Again: nothing is retrained or re-evaluated, the results are the same.
    run_files = [os.path.join(workdir, n, "seed0", "results.json") for n in variants]
    mtimes = [os.path.getmtime(p) for p in run_files]
    again = ablation.run_ablation(config, variants, workdir, **kwargs)
    assert calls == {"train": 2, "evaluate": 4}
    assert again == results
    assert [os.path.getmtime(p) for p in run_files] == mtimes

    # A new split is evaluated on its own, without training.
    more = ablation.run_ablation(config, "cmsa_s", workdir, **dict(kwargs, splits=("testB",)))
    assert calls == {"train": 2, "evaluate": 5}
    assert list(more["variants"]) == ["cmsa_s"]
    assert list(more["variants"]["cmsa_s"]["summary"]) == ["testB"]
    assert set(json.load(open(run_files[1]))["results"]) == {"val", "testA", "testB"}

    # The command line on the finished workdir: same flags, nothing to redo.
    mtimes = [os.path.getmtime(p) for p in run_files]
    flags = tiny_cli_flags(tiny_shapes_tfrecords)
    process = subprocess.run(
        [sys.executable, "-m", "cmsa_tf.experiments.ablation", *flags, f"--workdir={workdir}",
         "--variants=no_attention,cmsa_s", "--seeds=0", "--steps=2", "--splits=val,testA",
         "--nocrf"],
        cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
        text=True, timeout=240, check=False,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert process.stdout.count("done before") == 2
    assert "| No attention (`no_attention`) | testA |" in process.stdout
    assert [os.path.getmtime(p) for p in run_files] == mtimes
