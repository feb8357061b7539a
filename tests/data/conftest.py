"""Fixtures for the data tests: the REFER fixture module and a REFER root written once, and
synthetic TFRecords."""

import pytest

from tests.data import refer_fixture as _refer_fixture
from tests.data import synthetic


@pytest.fixture(scope="session")
def refer_fixture():
    """The `refer_fixture` module (py2 pickle writer, RLE helpers, `write_refer_root`)."""
    return _refer_fixture


@pytest.fixture(scope="session")
def refer_fixture_root(refer_fixture, tmp_path_factory):
    """A REFER root written by `refer_fixture.write_refer_root` (read-only): its info dict."""
    return refer_fixture.write_refer_root(tmp_path_factory.mktemp("refer_root"))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """8 examples (`synthetic.examples`) in two files; returns (directory, files, examples)."""
    directory = tmp_path_factory.mktemp("records")
    examples = synthetic.examples()
    recs = [synthetic.record(image, mask, ids, i) for i, (image, mask, ids) in enumerate(examples)]
    files = [
        synthetic.write_records(directory / "train-00000-of-00002.tfrecord", recs[:4]),
        synthetic.write_records(directory / "train-00001-of-00002.tfrecord", recs[4:]),
    ]
    return directory, files, examples
