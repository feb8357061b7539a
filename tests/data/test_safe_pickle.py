"""cmsa_tf.data.safe_pickle on its own (the REFER reader's use of it: tests/data/test_refer.py)."""

import pickle

import pytest

from cmsa_tf.data import safe_pickle


def test_round_trip_of_plain_data_with_bytes_decoded(tmp_path):
    data = {b"ids": {1, 2}, "names": [b"caf\xc3\xa9", b"\xe9t\xe9"], "t": (1.5, None, True)}
    path = tmp_path / "plain.p"
    path.write_bytes(pickle.dumps(data, protocol=2))
    expected = {"ids": {1, 2}, "names": ["café", "été"], "t": (1.5, None, True)}
    assert safe_pickle.load_pickle(str(path)) == expected
    assert safe_pickle.load_pickle(pickle.dumps(data, protocol=0)) == expected


def test_globals_missing_files_and_corrupt_bytes_are_named_errors(tmp_path):
    with pytest.raises(safe_pickle.UnsafePickleError, match="Refusing to load global"):
        safe_pickle.load_pickle(pickle.dumps(pytest.raises, protocol=2))
    with pytest.raises(safe_pickle.PickleFormatError, match="does not exist"):
        safe_pickle.load_pickle(str(tmp_path / "missing.p"))
    with pytest.raises(safe_pickle.PickleFormatError, match="<bytes> is not a readable pickle"):
        safe_pickle.load_pickle(b"\x80\x02]q\x00(K\x01")
    with pytest.raises(safe_pickle.UnsafePickleError, match="may only encode text"):
        safe_pickle._encode_text(b"bytes")
