"""benchmarks/train_step.py at a tiny size: one table row per (form, batch, real words), with the
FLOPs of each step (benchmarks/flops.py, tested in test_flops.py) and their share of the peak."""

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = (
    "model.backbone.depth=18",
    "model.backbone.width=4",
    "model.embedding_dim=12",
    "model.fusion_channels=8",
    "model.attention.key_dims=(6, 6, 6)",
)


def _run(tmp_path, *flags):
    out = tmp_path / "train_step.json"
    command = [sys.executable, str(REPO / "benchmarks" / "train_step.py"), "--image_size", "32"]
    command += ["--json", str(out), *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FLOPs, " not in result.stderr  # nothing left uncounted
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[1:]]
    result_json = json.loads(out.read_text())
    # Every row also reached stderr as it was measured, the same values less the per-op counts.
    logged = [
        json.loads(line[4:]) for line in result.stderr.splitlines() if line.startswith("row {")
    ]
    expected = [
        {k: v for k, v in row.items() if k not in ("FLOP/step by op", "share of peak")}
        for row in result_json["rows"]
    ]
    assert logged == expected
    return result.stdout, header, cells, result_json


def _check_flops(rows, cells, result_json):
    peak = result_json["peak_gflops"]
    measured = {"float32": "matmul_gflops", "bfloat16": "matmul_gflops_bfloat16"}
    assert peak == max(result_json[measured[result_json["peak_dtype"]]])
    for row, line in zip(rows, cells):
        assert sum(row["FLOP/step by op"].values()) == row["FLOP/step"] > 0
        assert row["GFLOP/step"] == pytest.approx(row["FLOP/step"] / 1e9, abs=1e-6)
        assert 0 < row["matmul+conv GFLOP/step"] <= row["GFLOP/step"]
        assert row["share of peak"] == pytest.approx(
            row["FLOP/step"] / 1e9 / row["step s"] / peak, rel=1e-3
        )
        assert float(line[8]) == pytest.approx(row["GFLOP/step"], rel=5e-3)
        assert line[9].endswith("%")
        assert float(line[9][:-1]) == pytest.approx(100 * row["share of peak"], rel=5e-3)


def test_smoke_run_has_the_flops_columns(tmp_path):
    stdout, header, cells, result_json = _run(
        tmp_path,
        *("--steps", "1", "--warmup", "1", "--forms", "paper", "--words", "2,6"),
        *("--set", "model.backbone.depth=18", "--set", "model.embedding_dim=16"),
    )
    assert header == [
        *("form", "batch", "real words", "T", "step s", "examples/s", "backbone fwd s"),
        *("step / backbone", "GFLOP/step", "share of peak"),
    ]
    assert "share of peak = GFLOP/step / step s /" in stdout and "(the float32 matmul" in stdout
    assert result_json["peak_dtype"] == "float32"
    assert "matmul_gflops_bfloat16" not in result_json
    rows = result_json["rows"]
    assert [(r["form"], r["batch"], r["real words"]) for r in rows] == [
        ("paper", 1, 2),
        ("paper", 1, 6),
    ]
    for row in rows:
        # The frozen ResNet-18 backbone, the CMSA head and its backward: convolutions dominate.
        assert row["FLOP/step by op"]["Conv2D"] > row["FLOP/step by op"]["Einsum"] > 0
    # The model cuts the words to the longest expression: 6 real words cost more than 2.
    assert rows[0]["FLOP/step"] < rows[1]["FLOP/step"]
    _check_flops(rows, cells, result_json)


@pytest.mark.slow
def test_tiny_run_prints_and_writes_every_row(tmp_path):
    """The official form (the paper form's rows: the smoke run above), res3-res5 trained."""
    trainable = "model.backbone.trainable_stages=('res3','res4','res5')"
    _, header, cells, result_json = _run(
        tmp_path,
        *("--steps", "2", "--warmup", "1", "--forms", "official"),
        *("--batch_sizes", "1,2", "--words", "3,20", "--set", trainable),
        *[flag for item in TINY for flag in ("--set", item)],
    )
    assert header[:4] == ["form", "batch", "real words", "T"]
    expected = [("official", batch, words) for batch in (1, 2) for words in (3, 20)]
    assert [(c[0], int(c[1]), int(c[2])) for c in cells] == expected
    assert all(c[3] == "20" for c in cells)  # the config's T

    assert len(result_json["matmul_gflops"]) == 2 and min(result_json["matmul_gflops"]) > 0
    assert result_json["precision"] == "float32" and result_json["jit_compile"] is False
    assert result_json["overrides"][0] == trainable
    rows = result_json["rows"]
    assert [(r["form"], r["batch"], r["real words"]) for r in rows] == expected
    for row, line in zip(rows, cells):
        assert row["step s"] > 0 and row["backbone fwd s"] > 0
        assert row["examples/s"] == pytest.approx(row["batch"] / row["step s"], rel=1e-3)
        assert row["step / backbone"] == pytest.approx(
            row["step s"] / row["backbone fwd s"], rel=1e-3
        )
        assert float(line[4]) == pytest.approx(row["step s"], abs=5e-4)
        assert line[7] == f"{row['step / backbone']:.1f}x"
    _check_flops(rows, cells, result_json)
    flop = {(r["batch"], r["real words"]): r["FLOP/step"] for r in rows}
    for words in (3, 20):  # two examples: more than one (the weight update is shared)
        assert flop[1, words] < flop[2, words] < 2 * flop[1, words]
    # The model cuts the words to the longest expression: 20 real words cost more.
    assert flop[1, 3] < flop[1, 20]
    # The trained backbone stages are back-propagated through (no backprop without them).
    assert all(r["FLOP/step by op"]["Conv2DBackpropFilter"] > 0 for r in rows)


def _train_step():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import train_step
    finally:
        sys.path.pop(0)
    return train_step


def test_bad_arguments_name_the_flag():
    train_step = _train_step()
    with pytest.raises(SystemExit):
        train_step.parse_args(["--forms", "fast"])
    with pytest.raises(SystemExit):
        train_step.parse_args(["--words", "four"])
    args = train_step.parse_args(["--forms", "official", "--batch_sizes", "1,8"])
    assert args.forms == ["official"] and args.batch_sizes == [1, 8] and args.words == [4, 20]


def test_overrides_take_python_literals():
    train_step = _train_step()
    stages = "model.backbone.trainable_stages=('res3','res4','res5')"
    config = train_step.load_config(
        train_step.parse_args([]).config, "paper", [stages, "model.backbone.depth=18"]
    )
    assert config.model.backbone.trainable_stages == ("res3", "res4", "res5")
    assert config.model.backbone.depth == 18 and config.model.backbone.weights is None
