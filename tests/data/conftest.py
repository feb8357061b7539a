"""Fixtures for the data tests: the REFER fixture module and a REFER root written once."""

import pytest

from tests.data import refer_fixture as _refer_fixture


@pytest.fixture(scope="session")
def refer_fixture():
    """The `refer_fixture` module (py2 pickle writer, RLE helpers, `write_refer_root`)."""
    return _refer_fixture


@pytest.fixture(scope="session")
def refer_fixture_root(refer_fixture, tmp_path_factory):
    """A REFER root written by `refer_fixture.write_refer_root` (read-only): its info dict."""
    return refer_fixture.write_refer_root(tmp_path_factory.mktemp("refer_root"))
