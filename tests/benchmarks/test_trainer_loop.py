"""benchmarks/trainer_loop.py on the tiny ShapesRef config: a row per number of steps per
`tf.function` call, each from its own process, with the step time, examples/s and the ratio to
one step a call; the XLA row's config fields; bad arguments refused."""

import json
import pathlib
import subprocess
import sys

import pytest

from tests.helpers import TINY_OVERRIDES, load_benchmark, run_tiny_trainer_benchmark

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "trainer_loop.py"
trainer_loop = load_benchmark("trainer_loop")


@pytest.mark.slow
def test_each_loop_length_measured_in_its_own_process(tmp_path, tiny_shapes_tfrecords):
    out = tmp_path / "trainer_loop.json"
    result = run_tiny_trainer_benchmark(
        "trainer_loop", tiny_shapes_tfrecords, "--json", str(out), "--loops", "1,2"
    )
    saved = json.loads(out.read_text())
    machine, rows = saved["machine"], saved["rows"]
    batch = TINY_OVERRIDES["train.batch_size"]
    assert machine["batch"] == batch
    assert "train.steps_per_loop" not in " ".join(machine["overrides"])  # only the rows set it
    assert [row["variant"] for row in rows] == ["steps_per_loop=1", "steps_per_loop=2"]
    assert [row["steps per call"] for row in rows] == [1, 2]
    assert [row["XLA"] for row in rows] == ["no", "no"]
    # 1 warm-up call and 2 rounds of 2 steps: the calls ran 1 and 2 steps each
    assert [row["steps trained per process"] for row in rows] == [[1 + 4], [2 + 4]]
    for row in rows:
        seconds = sorted(row["round s/step"])
        assert len(seconds) == 2 and seconds[0] > 0
        assert row["s/step"] == pytest.approx((seconds[0] + seconds[1]) / 2, abs=1e-4)
        assert row["examples/s"] == pytest.approx(batch / row["s/step"], rel=1e-2)
        assert row["step / 1 a call"] == pytest.approx(row["s/step"] / rows[0]["s/step"], abs=0.01)
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 4 and table[3].startswith("| steps_per_loop=2 | 2 | no |")


def test_variants_set_the_loop_and_xla_fields():
    args = trainer_loop.parse_args(["--loops", "1,4", "--xla"])
    assert args.steps_per_round == 20  # the LCM of 20 and the loops
    assert trainer_loop.variants(args) == [
        ("steps_per_loop=1", 1, False, ["train.steps_per_loop=1"]),
        ("steps_per_loop=4", 4, False, ["train.steps_per_loop=4"]),
        ("xla", 1, True, ["train.steps_per_loop=1", "train.jit_compile=True"]),
    ]
    assert trainer_loop.parse_args(["--loops", "1,8"]).steps_per_round == 40
    args = trainer_loop.parse_args(["--variant", "wide: model.fusion_channels=8; train.seed=3"])
    assert trainer_loop.variants(args)[-1] == (
        "wide",
        1,
        False,
        ["train.steps_per_loop=1", "model.fusion_channels=8", "train.seed=3"],
    )


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--loops", "2,4"], "--loops"),
        (["--loops", "0,1"], "--loops"),
        (["--loops", "a"], "--loops"),
        (["--loops", "1,3", "--steps_per_round", "10"], "--steps_per_round"),
        (["--variant", "no_fields:"], "--variant"),
        (["--variant", "model.fusion_channels=8"], "--variant"),
    ],
)
def test_bad_arguments_are_refused(argv, flag):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 2 and flag in result.stderr
