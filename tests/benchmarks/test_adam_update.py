"""benchmarks/adam_update.py on the tiny ShapesRef model: a row per update, the same variables
and gradients, the same result."""

import json

import pytest

from tests.helpers import CONFIG_DIR, TINY_OVERRIDES, load_benchmark

adam_update = load_benchmark("adam_update")


def test_both_updates_timed_on_the_same_variables_and_agree(tmp_path, capsys):
    out = tmp_path / "adam_update.json"
    overrides = [f"{key}={value!r}" for key, value in TINY_OVERRIDES.items() if "." in key]
    argv = ["--config", str(CONFIG_DIR / "shapes.py"), "--rounds", "3", "--json", str(out)]
    rows = adam_update.main(argv + [flag for item in overrides for flag in ("--set", item)])
    assert [row["update"] for row in rows] == ["fused", "keras"]
    fused, keras = rows
    assert fused["variables"] == keras["variables"] > 10
    assert fused["parameters"] == keras["parameters"] > 1000
    for row in rows:
        assert len(row["round s"]) == 3 and min(row["round s"]) > 0 and row["first call s"] > 0
        assert row["update / fused"] == pytest.approx(row["update s"] / fused["update s"], rel=1e-3)
    assert fused["max |difference|"] == 0.0 and keras["update / fused"] > 0
    # Four updates of Adam (about lr each) apart by float32 rounding only.
    assert 0 <= keras["max |difference|"] < 1e-5
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert table[0] == "| " + " | ".join(adam_update.COLUMNS) + " |"
    assert [line.split(" | ")[0] for line in table[2:]] == ["| fused", "| keras"]
    assert table[3].split(" | ")[5] == f"{keras['update / fused']:.2f}x"
    assert json.loads(out.read_text())["rows"] == rows


@pytest.mark.parametrize("argv, flag", [(["--rounds", "0"], "--rounds"), (["--set", "a"], "--set")])
def test_bad_arguments_name_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit):
        adam_update.parse_args(argv)
    assert flag in capsys.readouterr().err
