"""Training augmentation that keeps the expression true: flips that rewrite the words.

A horizontal flip of the image moves the left object to the right, so the words must follow:
"left" <-> "right", "leftmost" <-> "rightmost" (`HORIZONTAL_SWAPS`). A vertical flip swaps the
vertical words ("top" <-> "bottom", "above" -> "below", "under" -> "above", ...;
`VERTICAL_SWAPS`). Each flip is a lookup table over token ids (`flip_table`), so it runs inside
the `tf.data` parser on the padded `words` (pad id 0 maps to itself). The paper used no
augmentation; `config.data.augment` (default `()`) enables these (docs/design.md, "Training
recipe").

A vertical flip is only meaningful where "up" carries no meaning beyond the words (ShapesRef's
flat shapes); in photographs (RefCOCO) use the horizontal flip alone, and only with a vocabulary
that names the sides the way these tables do.

Example:
    >>> augment = Augmenter(vocabulary.tokens, ("hflip",))
    >>> dataset = dataset.map(augment)  # on parsed examples: image, mask, words (+ info)
"""

from collections.abc import Sequence

import ml_collections
import numpy as np
import tensorflow as tf

from cmsa_tf.data import manifest
from cmsa_tf.data import tokenizer as tokenizer_lib

# (word, its mirror image); a word missing from the vocabulary is skipped.
HORIZONTAL_SWAPS = (
    ("left", "right"),
    ("right", "left"),
    ("leftmost", "rightmost"),
    ("rightmost", "leftmost"),
)
VERTICAL_SWAPS = (
    ("top", "bottom"),
    ("bottom", "top"),
    ("topmost", "bottommost"),
    ("bottommost", "topmost"),
    ("highest", "lowest"),
    ("lowest", "highest"),
    ("above", "below"),
    ("below", "above"),
    ("under", "above"),
)
AUGMENTATIONS = {"hflip": HORIZONTAL_SWAPS, "vflip": VERTICAL_SWAPS}


def check_augmentations(names: Sequence[str]) -> tuple[str, ...]:
    """`names` as a tuple of distinct entries of `AUGMENTATIONS`; a clear error otherwise."""
    if isinstance(names, str):
        names = tuple(n.strip() for n in names.split(",") if n.strip())
    names = tuple(names)
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(
            f"data.augment must list distinct names from {tuple(AUGMENTATIONS)}, got {names!r}."
        )
    return names


def flip_table(tokens: Sequence[str], swaps) -> np.ndarray:
    """int32 [V]: the id of each token's mirror word (`swaps`), or the token's own id."""
    index = {token: i for i, token in enumerate(tokens)}
    table = np.arange(len(tokens), dtype=np.int32)
    for word, mirror in swaps:
        if word in index and mirror in index:
            table[index[word]] = index[mirror]
    return table


class Augmenter:
    """Random flips of a parsed training example with the words rewritten to match.

    Args:
        tokens: the vocabulary, id order (`Vocabulary.tokens`).
        augmentations: names from `AUGMENTATIONS` ("hflip", "vflip").
        probability: chance of each flip, drawn independently per example.
        seed: op seed of the random draws (None: unseeded).

    Example:
        >>> augment = Augmenter(vocabulary.tokens, ("hflip", "vflip"))
        >>> example = augment(parser(decoder.decode(serialized)))
    """

    def __init__(
        self,
        tokens: Sequence[str],
        augmentations: Sequence[str] = ("hflip",),
        probability: float = 0.5,
        seed: int | None = None,
    ):
        self.augmentations = check_augmentations(augmentations)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability!r}.")
        self.probability = float(probability)
        self.seed = seed
        self.tables = {
            name: tf.constant(flip_table(list(tokens), AUGMENTATIONS[name]))
            for name in self.augmentations
        }

    def __call__(self, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        example = dict(example)
        for name in self.augmentations:
            flip = tf.random.uniform([], seed=self.seed) < self.probability
            example = tf.cond(
                flip, lambda e=example, n=name: self._flip(e, n), lambda e=example: dict(e)
            )
        return example

    def _flip(self, example, name):
        # Width or height of image [S, S, 3] and mask [S, S, 1], or of an image group's image
        # [S, S, 3] and masks [k, S, S, 1] (cmsa_tf.data.image_groups): one flip for the group.
        axis = -2 if name == "hflip" else -3
        out = dict(example)
        out["image"] = tf.reverse(example["image"], [axis])
        out["mask"] = tf.reverse(example["mask"], [axis])
        out["words"] = tf.gather(self.tables[name], example["words"])  # [T] or [k, T]
        # The resize-and-pad window moves to the mirrored side (preprocess.INFO_KEYS).
        size = tf.shape(example["image"])[axis]
        if name == "hflip" and "pad_left" in example:
            out["pad_left"] = size - example["pad_left"] - example["resized_width"]
        if name == "vflip" and "pad_top" in example:
            out["pad_top"] = size - example["pad_top"] - example["resized_height"]
        return out


def from_config(data: ml_collections.ConfigDict, seed: int | None = None) -> Augmenter | None:
    """The `Augmenter` of `data.augment` over `data.tfrecord_dir`'s vocabulary; None if empty."""
    names = check_augmentations(data.get("augment", ()) or ())
    if not names:
        return None
    vocabulary = tokenizer_lib.load_vocabulary(
        manifest.vocab_path(data.tfrecord_dir), data.get("tokenizer", "default")
    )
    return Augmenter(vocabulary.tokens, names, seed=seed)
