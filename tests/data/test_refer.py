"""Tests of the REFER reader: restricted unpickler, records, masks, errors."""

import os
import pickle

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from cmsa_tf.data import refer


@pytest.fixture(scope="module")
def data(refer_fixture_root):
    return refer.ReferDataset(refer_fixture_root["refer_root"], "refcoco", "unc")


def test_refs_load_sorted_and_decoded(data, refer_fixture_root):
    assert data.splits == ("train", "val", "testA", "testB")
    assert [r.ref_id for r in data.refs] == list(range(1, 10))  # file order was shuffled
    expected = {r["ref_id"]: r for r in refer_fixture_root["refs"]}
    for ref in data.refs:
        source = expected[ref.ref_id]
        assert (ref.ann_id, ref.image_id, ref.split) == (
            source["ann_id"],
            source["image_id"],
            source["split"],
        )
        assert [s.sent_id for s in ref.sentences] == source["sent_ids"]
        for sentence, raw in zip(ref.sentences, source["sentences"]):
            # `raw` was pickled as Python 2 unicode, `sent` as a Python 2 byte string.
            assert type(sentence.raw) is str and type(sentence.sent) is str
            assert sentence.raw == raw["raw"] and sentence.sent == raw["raw"].lower()
            assert sentence.tokens == tuple(raw["raw"].lower().split())
    assert data.images[2].file_name == "img_b.png" and (
        data.images[2].height,
        data.images[2].width,
    ) == (40, 48)
    assert data.categories == {1: "thing"}


def test_sentences_of_a_split(data):
    pairs = list(data.sentences("val"))
    assert [(r.ref_id, s.sent_id) for r, s in pairs] == [(4, 40), (4, 41), (5, 50), (5, 51)]
    assert pairs[1][1].text() == "blob, right..." and pairs[1][1].text("raw") == "blob, right..."
    assert [r.ref_id for r in data.refs_in_split("testB")] == [8, 9]
    with pytest.raises(ValueError, match=r"present splits: \['train', 'val', 'testA', 'testB'\]"):
        data.refs_in_split("test")


def test_masks_equal_pycocotools(data, refer_fixture_root):
    for ann_id, expected in refer_fixture_root["masks"].items():
        mask = data.mask(ann_id)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        np.testing.assert_array_equal(mask, expected)
    # RLE annotations decode to exactly the arrays they were made from.
    for ann_id, source in refer_fixture_root["rle_masks"].items():
        np.testing.assert_array_equal(data.mask(ann_id), source)
    # The multi-polygon mask is the union of its parts, and bigger than each.
    parts = [
        refer.decode_segmentation([p], 32, 40) for p in refer_fixture_root["segmentations"][102]
    ]
    union = data.mask(data.ref(2))
    np.testing.assert_array_equal(union, np.maximum(parts[0], parts[1]))
    assert union.sum() > parts[0].sum() > 0 and union.sum() > parts[1].sum() > 0
    assert data.mask(106).sum() == 0


def test_decode_segmentation_forms(refer_fixture):
    a = np.zeros([10, 12], np.uint8)
    a[1:4, 2:6] = 1
    b = np.zeros([10, 12], np.uint8)
    b[6:9, 5:11] = 1
    # A list of RLE dicts (refclef style), compressed and uncompressed mixed: the union.
    seg = [refer_fixture.compressed_rle(a), refer_fixture.uncompressed_rle(b)]
    np.testing.assert_array_equal(refer.decode_segmentation(seg, 10, 12), a | b)
    # A polygon of two points would be read as a box by pycocotools: it encloses nothing.
    np.testing.assert_array_equal(
        refer.decode_segmentation([[1, 1, 8, 8]], 10, 12), np.zeros([10, 12])
    )
    with pytest.raises(refer.AnnotationError, match="differs from the image size"):
        refer.decode_segmentation(refer_fixture.compressed_rle(a), 12, 10)
    with pytest.raises(refer.AnnotationError, match="odd number"):
        refer.decode_segmentation([[1, 1, 5, 1, 5]], 10, 12)
    with pytest.raises(refer.AnnotationError, match="unsupported segmentation"):
        refer.decode_segmentation("polygon", 10, 12)


def test_unknown_dataset_and_split_by(refer_fixture_root):
    with pytest.raises(ValueError, match=r"Unknown dataset 'coco'.*refcoco\+.*refcocog.*shapes"):
        refer.ReferDataset(refer_fixture_root["refer_root"], "coco", "unc")
    with pytest.raises(
        ValueError, match=r"Unknown split_by 'umd' for dataset 'refcoco\+'; valid: \['unc'\]"
    ):
        refer.check_dataset("refcoco+", "umd")
    refer.check_dataset("shapes", "shapes")
    refer.check_dataset("refclef", "berkeley")
    with pytest.raises(refer.ReferFormatError, match=r"refs\(google\).p.*does not exist"):
        refer.ReferDataset(refer_fixture_root["refer_root"], "refcoco", "google")


def test_py2_pickle_strings(refer_fixture):
    data = refer_fixture.py2_pickle_dumps(
        {
            "utf8": "caf\u00e9".encode("utf-8"),
            "latin1": b"caf\xe9",
            "unicode": refer_fixture.Py2Unicode("日本"),
            "numbers": [1, -5, 70000, 2**40, 1.5, None, True],
            "pair": (1, "x"),
        }
    )
    assert refer.load_pickle(data) == {
        "utf8": "café",
        "latin1": "café",
        "unicode": "日本",
        "numbers": [1, -5, 70000, 2**40, 1.5, None, True],
        "pair": (1, "x"),
    }


def test_python3_protocol2_pickle_with_set_and_bytes():
    data = pickle.dumps({"ids": {3, 1}, "blob": b"\x00ab", "frozen": frozenset([2])}, protocol=2)
    assert b"_codecs" in data and b"set" in data  # the globals this test is about
    assert refer.load_pickle(data) == {"ids": {1, 3}, "blob": "\x00ab", "frozen": frozenset([2])}


class _Plain:
    def __init__(self):
        self.value = 1


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    for protocol in (0, 2, 4):
        data = pickle.dumps([{"ref_id": 1}, _Exploit(marker)], protocol=protocol)
        with pytest.raises(refer.UnsafePickleError, match=r"'(posix|os|nt)\.system'"):
            refer.load_pickle(data)
    assert not marker.exists()


def test_unpickler_refuses_objects_and_reconstructor(tmp_path):
    # Protocol 0/1 pickles of objects go through copy_reg._reconstructor; protocol 2 names the
    # class.
    with pytest.raises(refer.UnsafePickleError, match=r"copy_?reg\._reconstructor"):
        refer.load_pickle(pickle.dumps([_Plain()], protocol=1))
    with pytest.raises(refer.UnsafePickleError, match="Refusing to load global"):
        refer.load_pickle(pickle.dumps(refer.Sentence(1, "a", "a", ()), protocol=2))
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(_Exploit(tmp_path / "m"), protocol=2))
    with pytest.raises(
        refer.UnsafePickleError, match=str(path).replace("(", r"\(").replace(")", r"\)")
    ):
        refer.load_pickle(path)


def test_corrupt_pickle_is_a_format_error():
    with pytest.raises(refer.ReferFormatError, match="not a readable pickle"):
        refer.load_pickle(b"\x80\x02]q\x00(K\x01")


@pytest.mark.filterwarnings("ignore:.*__array__ implementation:DeprecationWarning")
def test_mask_matches_direct_pycocotools_call(data):
    # An independent check of one polygon mask against a direct pycocotools call.
    seg = data.annotation(105).segmentation
    direct = mask_utils.decode(mask_utils.frPyObjects(seg, 36, 36))[:, :, 0]
    np.testing.assert_array_equal(data.mask(105), direct)
    assert 500 < direct.sum() < 36 * 36
