"""Reader of a REFER root: COCO-format instances, the refs pickle, and reference masks.

Layout (Licheng Yu's REFER toolkit):

    <refer_root>/<dataset>/instances.json        COCO format: images, annotations, categories
    <refer_root>/<dataset>/refs(<split_by>).p    pickle: list of refs, each with `ref_id`, `ann_id`,
                                                 `image_id`, `split`, `sentences` [{`sent_id`,
                                                 `raw`, `sent`, `tokens`}] (and a few more keys)

The refs files were written by Python 2. They are loaded with the restricted unpickler of
`cmsa_tf.data.safe_pickle`, which refuses every global that could run code (`UnsafePickleError`).

A ref's mask is the union of its annotation's polygons (or RLE parts) decoded with pycocotools,
uint8 [H, W] in {0, 1}.
"""

import dataclasses
import json
import os
import warnings

import numpy as np
from pycocotools import mask as mask_utils

from cmsa_tf.data import safe_pickle
from cmsa_tf.data.safe_pickle import UnsafePickleError  # noqa: F401 (raised by load_pickle)

VALID_SPLIT_BY = {
    "refcoco": ("unc", "google"),
    "refcoco+": ("unc",),
    "refcocog": ("google", "umd"),
    "refclef": ("unc", "berkeley"),
    "shapes": ("shapes",),
}
# Order in which splits are listed; others follow alphabetically.
_SPLIT_ORDER = ("train", "trainval", "val", "test", "testA", "testB", "testC")


class ReferFormatError(ValueError):
    """A REFER file is missing, unreadable, or does not have the expected structure."""


class AnnotationError(ValueError):
    """An annotation's segmentation cannot be decoded into a mask."""


def check_dataset(dataset, split_by):
    """Raises ValueError unless (dataset, split_by) is a known REFER combination."""
    if dataset not in VALID_SPLIT_BY:
        raise ValueError(f"Unknown dataset {dataset!r}; valid datasets: {sorted(VALID_SPLIT_BY)}.")
    if split_by not in VALID_SPLIT_BY[dataset]:
        valid = ", ".join(f"{d}: {'/'.join(s)}" for d, s in sorted(VALID_SPLIT_BY.items()))
        raise ValueError(
            f"Unknown split_by {split_by!r} for dataset {dataset!r}; valid: "
            f"{list(VALID_SPLIT_BY[dataset])} (all datasets: {valid})."
        )


def sort_splits(splits):
    """Split names in the conventional order (train, val, test, testA, ...), others after."""
    rank = {name: i for i, name in enumerate(_SPLIT_ORDER)}
    return sorted(splits, key=lambda s: (rank.get(s, len(rank)), s))


def load_pickle(path_or_bytes):
    """A REFER refs pickle (a path or its bytes), loaded with `safe_pickle.load_pickle`.

    Raises:
        UnsafePickleError: the pickle names a global that is not allowed.
        ReferFormatError: the file is missing or not a valid pickle.
    """
    try:
        return safe_pickle.load_pickle(path_or_bytes)
    except safe_pickle.PickleFormatError as error:
        raise ReferFormatError(str(error)) from None


# ----------------------------------------------------------------------------------------------
# Records.


@dataclasses.dataclass(frozen=True)
class Sentence:
    """One referring expression: `raw` as typed, `sent` REFER's cleaned version, its `tokens`."""

    sent_id: int
    raw: str
    sent: str
    tokens: tuple

    def text(self, field="sent"):
        """The expression text: `field` ("sent" or "raw"), or the other one if that is empty."""
        if field not in ("sent", "raw"):
            raise ValueError(f"field must be 'sent' or 'raw', got {field!r}.")
        first, second = (self.sent, self.raw) if field == "sent" else (self.raw, self.sent)
        return first if first else second


@dataclasses.dataclass(frozen=True)
class Ref:
    """A referred object (one annotation) and its expressions."""

    ref_id: int
    ann_id: int
    image_id: int
    category_id: int
    split: str
    sentences: tuple


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    image_id: int
    file_name: str
    height: int
    width: int


@dataclasses.dataclass(frozen=True)
class Annotation:
    ann_id: int
    image_id: int
    category_id: int
    segmentation: object  # polygons (list of lists), an RLE dict, or a list of RLE dicts


def _field(record, key, kind, where):
    """`record[key]` checked to be of `kind` (int, str, list, or object for anything)."""
    if not isinstance(record, dict):
        raise ReferFormatError(f"{where} must be a dict, got {type(record).__name__}.")
    if key not in record:
        raise ReferFormatError(f"{where} has no {key!r} (keys: {sorted(record)}).")
    value = record[key]
    if kind is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer, float))
            or int(value) != value
        ):
            raise ReferFormatError(f"{where}: {key!r} must be an integer, got {value!r}.")
        return int(value)
    if kind in (str, list) and not isinstance(value, kind):
        raise ReferFormatError(f"{where}: {key!r} must be a {kind.__name__}, got {value!r:.80}.")
    return value


def _parse_sentence(record, where):
    if not isinstance(record, dict):
        raise ReferFormatError(f"{where} must be a dict, got {type(record).__name__}.")
    sent_id = _field(record, "sent_id", int, where)
    raw = record.get("raw", "")
    sent = record.get("sent", "")
    if not isinstance(raw, str) or not isinstance(sent, str):
        raise ReferFormatError(
            f"{where}: 'raw' and 'sent' must be strings, got {raw!r} and {sent!r}."
        )
    tokens = record.get("tokens") or ()
    return Sentence(sent_id=sent_id, raw=raw, sent=sent, tokens=tuple(str(t) for t in tokens))


def _parse_ref(record, index):
    where = f"ref #{index}"
    ref_id = _field(record, "ref_id", int, where)
    where = f"ref {ref_id}"
    sentences = _field(record, "sentences", list, where)
    return Ref(
        ref_id=ref_id,
        ann_id=_field(record, "ann_id", int, where),
        image_id=_field(record, "image_id", int, where),
        category_id=int(record.get("category_id", -1)),
        split=_field(record, "split", str, where),
        sentences=tuple(
            _parse_sentence(s, f"{where} sentence #{i}") for i, s in enumerate(sentences)
        ),
    )


# ----------------------------------------------------------------------------------------------
# Masks.


def _check_rle(rle, height, width, where):
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise AnnotationError(
            f"{where}: an RLE must be a dict with 'size' and 'counts', got {rle!r:.80}."
        )
    size = [int(v) for v in rle["size"]]
    if size != [height, width]:
        raise AnnotationError(
            f"{where}: RLE size {size} differs from the image size {[height, width]}."
        )
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": size, "counts": counts}, height, width)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if not isinstance(counts, bytes):
        raise AnnotationError(
            f"{where}: RLE counts must be a list or a string, got {type(counts).__name__}."
        )
    return {"size": size, "counts": counts}


def decode_segmentation(segmentation, height, width, where="segmentation"):
    """The union of a COCO segmentation's parts as uint8 [H, W] in {0, 1}.

    Args:
        segmentation: polygons (list of flat [x0, y0, x1, y1, ...] lists), one RLE dict (compressed
            string counts or uncompressed list counts), or a list of RLE dicts.
        height, width: the image size.
        where: a description for error messages.

    Raises:
        AnnotationError: malformed segmentation.
    """
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise AnnotationError(f"{where}: image size must be positive, got {height}x{width}.")
    if isinstance(segmentation, dict):
        rles = [_check_rle(segmentation, height, width, where)]
    elif (
        isinstance(segmentation, list)
        and segmentation
        and all(isinstance(p, dict) for p in segmentation)
    ):
        rles = [_check_rle(p, height, width, where) for p in segmentation]
    elif isinstance(segmentation, list) and all(isinstance(p, (list, tuple)) for p in segmentation):
        polygons = []
        for i, polygon in enumerate(segmentation):
            if len(polygon) % 2:
                raise AnnotationError(
                    f"{where}: polygon {i} has an odd number of coordinates ({len(polygon)})."
                )
            if len(polygon) >= 6:  # fewer than 3 points enclose nothing
                polygons.append([float(v) for v in polygon])
        if not polygons:
            return np.zeros([height, width], np.uint8)
        rles = mask_utils.frPyObjects(polygons, height, width)
    else:
        raise AnnotationError(
            f"{where}: unsupported segmentation {segmentation!r:.80}; expected polygons, an RLE "
            "dict or a list of RLE dicts."
        )
    try:
        with warnings.catch_warnings():
            # pycocotools' result object predates NumPy 2's `copy` keyword; harmless.
            warnings.filterwarnings(
                "ignore",
                message=".*__array__ implementation doesn't accept a copy",
                category=DeprecationWarning,
            )
            masks = mask_utils.decode(rles)  # [H, W, N]
    except Exception as error:  # pycocotools raises bare exceptions on corrupt counts
        raise AnnotationError(f"{where}: pycocotools could not decode it ({error}).") from None
    return (masks.max(axis=2) > 0).astype(np.uint8)  # [H, W]


# ----------------------------------------------------------------------------------------------
# The dataset.


class ReferDataset:
    """One REFER dataset / split scheme, loaded in memory.

    Args:
        refer_root: the folder holding `<dataset>/instances.json` and `<dataset>/refs(...).p`.
        dataset: one of `VALID_SPLIT_BY` (refcoco, refcoco+, refcocog, refclef, shapes).
        split_by: a split scheme of that dataset (unc, google, umd, berkeley, shapes).

    Example:
        >>> data = ReferDataset("data/refer", "refcoco", "unc")
        >>> data.splits
        ('train', 'val', 'testA', 'testB')
        >>> for ref, sentence in data.sentences("val"):
        ...     mask = data.mask(ref)  # uint8 [H, W]

    Reference:
        Yu et al., "Modeling Context in Referring Expressions", ECCV 2016 (the REFER toolkit).
    """

    def __init__(self, refer_root, dataset, split_by):
        check_dataset(dataset, split_by)
        self.refer_root = os.fspath(refer_root)
        self.dataset = dataset
        self.split_by = split_by
        data_dir = os.path.join(self.refer_root, dataset)
        self.instances_path = os.path.join(data_dir, "instances.json")
        self.refs_path = os.path.join(data_dir, f"refs({split_by}).p")
        for path in (self.instances_path, self.refs_path):
            if not os.path.isfile(path):
                raise ReferFormatError(f"REFER file {path!r} does not exist.")
        self._load_instances()
        refs = load_pickle(self.refs_path)
        if not isinstance(refs, list):
            raise ReferFormatError(
                f"{self.refs_path} must hold a list of refs, got {type(refs).__name__}."
            )
        parsed = [_parse_ref(r, i) for i, r in enumerate(refs)]
        self.refs = tuple(sorted(parsed, key=lambda r: r.ref_id))
        self._ref_by_id = {}
        for ref in self.refs:
            if ref.ref_id in self._ref_by_id:
                raise ReferFormatError(f"{self.refs_path}: ref_id {ref.ref_id} appears twice.")
            self._ref_by_id[ref.ref_id] = ref

    def _load_instances(self):
        try:
            with open(self.instances_path, "rb") as f:
                instances = json.load(f)
        except (OSError, ValueError) as error:
            raise ReferFormatError(f"{self.instances_path} is not readable JSON: {error}") from None
        where = self.instances_path
        if not isinstance(instances, dict):
            raise ReferFormatError(f"{where} must hold a JSON object.")
        self.images = {}
        for record in _field(instances, "images", list, where):
            image = ImageInfo(
                image_id=_field(record, "id", int, f"{where} image"),
                file_name=_field(record, "file_name", str, f"{where} image"),
                height=_field(record, "height", int, f"{where} image"),
                width=_field(record, "width", int, f"{where} image"),
            )
            self.images[image.image_id] = image
        self.annotations = {}
        for record in _field(instances, "annotations", list, where):
            ann = Annotation(
                ann_id=_field(record, "id", int, f"{where} annotation"),
                image_id=_field(record, "image_id", int, f"{where} annotation"),
                category_id=int(record.get("category_id", -1)),
                segmentation=_field(record, "segmentation", object, f"{where} annotation"),
            )
            self.annotations[ann.ann_id] = ann
        self.categories = {
            int(c["id"]): str(c.get("name", ""))
            for c in instances.get("categories", [])
            if "id" in c
        }

    @property
    def splits(self):
        """The splits present in the refs file, in conventional order."""
        return tuple(sort_splits({ref.split for ref in self.refs}))

    def check_split(self, split):
        if split not in self.splits:
            raise ValueError(
                f"Split {split!r} is not in {self.refs_path}; present splits: {list(self.splits)}."
            )

    def refs_in_split(self, split):
        """The refs of `split`, sorted by ref_id."""
        self.check_split(split)
        return [ref for ref in self.refs if ref.split == split]

    def sentences(self, split):
        """Yields the (Ref, Sentence) pairs of `split`: refs by ref_id, sentences in file order."""
        for ref in self.refs_in_split(split):
            for sentence in ref.sentences:
                yield ref, sentence

    def ref(self, ref_id):
        if ref_id not in self._ref_by_id:
            raise ValueError(f"No ref with ref_id {ref_id} in {self.refs_path}.")
        return self._ref_by_id[ref_id]

    def image_info(self, image_id):
        if image_id not in self.images:
            raise ReferFormatError(f"Image id {image_id} is not in {self.instances_path}.")
        return self.images[image_id]

    def annotation(self, ann_id):
        if ann_id not in self.annotations:
            raise ReferFormatError(f"Annotation id {ann_id} is not in {self.instances_path}.")
        return self.annotations[ann_id]

    def mask(self, ref_or_ann_id):
        """The mask of a ref (a `Ref` or an annotation id): uint8 [H, W] in {0, 1}."""
        ann_id = ref_or_ann_id.ann_id if isinstance(ref_or_ann_id, Ref) else int(ref_or_ann_id)
        ann = self.annotation(ann_id)
        image = self.image_info(ann.image_id)
        return decode_segmentation(
            ann.segmentation, image.height, image.width, where=f"annotation {ann_id}"
        )
