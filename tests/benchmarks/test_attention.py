"""benchmarks/attention.py: its ratio lines, and one tiny (kernel, T) measured in a subprocess."""

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import attention  # noqa: E402


def _row(kernel, t, forward, train, peak=100.0):
    return {
        "kernel": kernel,
        "T": t,
        "forward_s": forward,
        "forward_backward_s": train,
        "peak_forward_mb": peak,
        "peak_forward_backward_mb": peak,
    }


def test_comparisons_divide_the_slower_kernels_by_the_factorized_one():
    rows = [
        _row("paper_factorized", 4, 0.1, 0.2),
        _row("paper_per_word", 4, 0.3, 0.5),
        _row("paper_dense", 4, 1.0, 4.0, peak=400.0),
        _row("paper_factorized", 20, 0.2, 0.4),
        {"kernel": "paper_per_word", "T": 20, "error": "killed"},
    ]
    assert attention.comparisons(rows).splitlines() == [
        "- T=4: factorized forward+backward is 20x faster than dense, with 4.0x less peak memory.",
        "- T=4: factorized (product path) is 3.0x faster forward and 2.5x forward+backward than "
        "word by word.",
    ]


@pytest.mark.slow
def test_a_tiny_row_per_kernel(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "attention.py"),
            "--kernels",
            "paper_factorized,paper_per_word",
            "--ts",
            "3",
            "--size",
            "4",
            "--runs",
            "3",
            "--key_dim",
            "4",
            "--visual_channels",
            "6",
            "--word_channels",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| paper_")]
    assert [line.split("|")[1].strip() for line in table] == ["paper_factorized", "paper_per_word"]
    assert "factorized (product path) is" in result.stdout
