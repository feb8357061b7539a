"""cmsa-demo's command line: usage errors exit 2 before anything is served; --help."""

import pytest

from cmsa_tf.demo import __main__ as demo_main


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "exactly one of --model"),
        (["--model", "m", "--server", "http://h:8501/v1/models/x"], "exactly one of --model"),
        (["--server", "localhost:8501"], "must be a TF Serving model URL"),
        (["--model", "/no/such/export"], "is not a directory"),
        (["--model", "m", "--max_side", "-1"], "--max_side must be >= 0"),
        (["--model", "m", "extra"], "unexpected arguments"),
        (["--examples", "maybe"], "--examples"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys):
    assert demo_main.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cmsa-demo: error:") and message in err


def test_help_lists_the_flags(capsys):
    assert demo_main.main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--model", "--version", "--server", "--host", "--port", "--examples"):
        assert flag in out


def _dry_run(target):
    import os
    import shutil
    import subprocess

    from tests import helpers

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # Not as a sub-make of `make test` (whose MAKEFLAGS would add "Entering directory" lines).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target],
        cwd=helpers.REPO,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return result.stdout.strip().splitlines()


def test_make_demo_ends_with_the_demo_command_and_demo_app_starts_it():
    assert "cmsa-demo --model saved_models/shapes" in _dry_run("demo")[-1]
    assert _dry_run("demo-app")[-1].split()[:3] == [
        ".venv/bin/cmsa-demo",
        "--model",
        "saved_models/shapes",
    ]
