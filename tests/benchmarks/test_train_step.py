"""benchmarks/train_step.py at a tiny size: one table row per (form, batch, real words)."""

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


@pytest.mark.slow
def test_tiny_run_prints_and_writes_every_row(tmp_path):
    out = tmp_path / "train_step.json"
    command = [sys.executable, str(REPO / "benchmarks" / "train_step.py"), "--image_size", "32"]
    command += ["--steps", "2", "--warmup", "1", "--forms", "paper,official"]
    command += ["--batch_sizes", "1,2", "--words", "3,20", "--json", str(out)]
    for item in TINY:
        command += ["--set", item]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]

    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[:4] == ["form", "batch", "real words", "T"]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[1:]]
    expected = [
        (form, batch, words)
        for form in ("paper", "official")
        for batch in (1, 2)
        for words in (3, 20)
    ]
    assert [(c[0], int(c[1]), int(c[2])) for c in cells] == expected
    assert all(c[3] == "20" for c in cells)  # the config's T

    result_json = json.loads(out.read_text())
    assert len(result_json["matmul_gflops"]) == 2 and min(result_json["matmul_gflops"]) > 0
    assert result_json["precision"] == "float32" and result_json["jit_compile"] is False
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


def test_bad_arguments_name_the_flag():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import train_step
    finally:
        sys.path.pop(0)
    with pytest.raises(SystemExit):
        train_step.parse_args(["--forms", "fast"])
    with pytest.raises(SystemExit):
        train_step.parse_args(["--words", "four"])
    args = train_step.parse_args(["--forms", "official", "--batch_sizes", "1,4"])
    assert args.forms == ["official"] and args.batch_sizes == [1, 4] and args.words == [4, 20]
