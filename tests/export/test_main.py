"""`python -m cmsa_tf.export`: the command line the Makefile and docs/serving.md use."""

import subprocess
import sys

import pytest

from tests import helpers
from tests.export.common import subprocess_env

pytestmark = pytest.mark.slow


def test_cli_prints_the_version_directory_it_wrote(exported):
    # `exported` ran `python -m cmsa_tf.export --config=... --workdir=... --export_dir=...`.
    assert exported["cli_stdout"].strip().splitlines()[-1] == exported["version_dir"]


def test_cli_usage_errors(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "cmsa_tf.export", f"--export_dir={tmp_path}"],
        cwd=helpers.REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode != 0
    assert "--config and --export_dir are required" in process.stderr
    assert not list(tmp_path.iterdir())
