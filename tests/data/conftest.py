"""Fixtures for the data tests: the REFER fixture module and a REFER root written once."""

import importlib.util
import os

import pytest


def _load_refer_fixture():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "refer_fixture.py")
    spec = importlib.util.spec_from_file_location("cmsa_tf_tests_refer_fixture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def refer_fixture():
    """The `refer_fixture` module (py2 pickle writer, RLE helpers, `write_refer_root`)."""
    return _load_refer_fixture()


@pytest.fixture(scope="session")
def refer_fixture_root(refer_fixture, tmp_path_factory):
    """A REFER root written by `refer_fixture.write_refer_root` (read-only for tests): its info dict."""
    return refer_fixture.write_refer_root(tmp_path_factory.mktemp("refer_root"))
