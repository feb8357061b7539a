"""Flips that keep the expression true: the image, mask and window mirror, the words follow."""

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import augment, pipeline, preprocess

TOKENS = ["<pad>", "<unk>", "the", "left", "right", "leftmost", "rightmost", "top", "bottom",
          "above", "below", "under", "circle", "of"]  # fmt: skip


def _ids(sentence):
    return [TOKENS.index(w) for w in sentence.split()]


def _example(rng, words, size=8, pad_left=0, width=8):
    return {
        "image": tf.constant(rng.normal(size=(size, size, 3)).astype("float32")),
        "mask": tf.constant((rng.uniform(size=(size, size, 1)) > 0.5).astype("float32")),
        "words": tf.constant(words + [0] * (6 - len(words)), tf.int32),
        "pad_top": tf.constant(1),
        "pad_left": tf.constant(pad_left),
        "resized_height": tf.constant(6),
        "resized_width": tf.constant(width),
    }


def test_flip_tables_swap_the_sides_and_keep_the_rest():
    table = augment.flip_table(TOKENS, augment.HORIZONTAL_SWAPS)
    assert [TOKENS[i] for i in table[_ids("the left circle right of the leftmost rightmost")]] == (
        "the right circle left of the rightmost leftmost".split()
    )
    assert table[0] == 0  # padding stays padding
    vertical = augment.flip_table(TOKENS, augment.VERTICAL_SWAPS)
    assert [TOKENS[i] for i in vertical[_ids("top bottom above below under left")]] == (
        "bottom top below above above left".split()
    )
    # A mirror word missing from the vocabulary leaves the word alone.
    assert list(augment.flip_table(["<pad>", "left"], augment.HORIZONTAL_SWAPS)) == [0, 1]


def test_horizontal_flip_mirrors_pixels_words_and_window():
    rng = np.random.default_rng(0)
    example = _example(rng, _ids("the circle left of the circle"), pad_left=1, width=5)
    out = augment.Augmenter(TOKENS, ("hflip",), probability=1.0)(example)
    np.testing.assert_array_equal(out["image"], example["image"].numpy()[:, ::-1])
    np.testing.assert_array_equal(out["mask"], example["mask"].numpy()[:, ::-1])
    assert out["words"].numpy().tolist() == _ids("the circle right of the circle")
    assert int(out["pad_left"]) == 8 - 1 - 5 and int(out["pad_top"]) == 1
    # Twice is the identity.
    twice = augment.Augmenter(TOKENS, ("hflip",), probability=1.0)(out)
    for key, value in example.items():
        np.testing.assert_array_equal(twice[key], value)


def test_vertical_flip_and_probability_zero():
    rng = np.random.default_rng(1)
    example = _example(rng, _ids("the top circle"))
    out = augment.Augmenter(TOKENS, ("vflip",), probability=1.0)(example)
    np.testing.assert_array_equal(out["image"], example["image"].numpy()[::-1])
    assert out["words"].numpy().tolist()[:3] == _ids("the bottom circle")
    assert int(out["pad_top"]) == 8 - 1 - 6
    same = augment.Augmenter(TOKENS, ("hflip", "vflip"), probability=0.0)(example)
    for key, value in example.items():
        np.testing.assert_array_equal(same[key], value)


def test_random_flips_happen_about_half_the_time_and_keep_pairs_consistent():
    rng = np.random.default_rng(2)
    example = _example(rng, _ids("the left circle"))
    augmenter = augment.Augmenter(TOKENS, ("hflip",), seed=3)
    flipped = 0
    for _ in range(200):
        out = augmenter(example)
        is_flipped = out["words"].numpy()[1] == TOKENS.index("right")
        expected = example["image"].numpy()[:, ::-1] if is_flipped else example["image"].numpy()
        np.testing.assert_array_equal(out["image"], expected)
        flipped += int(is_flipped)
    assert 60 < flipped < 140


def test_parser_hook_runs_the_augmenter():
    rng = np.random.default_rng(5)
    decoded = {
        "image": tf.constant(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)),
        "mask": tf.constant((rng.uniform(size=(8, 8, 1)) > 0.7).astype(np.uint8)),
        "ids": tf.constant(_ids("the left circle"), tf.int64),
    }
    augmenter = augment.Augmenter(TOKENS, ("hflip",), probability=1.0)
    out = pipeline.Parser(image_size=8, max_words=4, augment=augmenter)(decoded)
    plain = pipeline.Parser(image_size=8, max_words=4)(decoded)
    np.testing.assert_array_equal(out["image"], plain["image"].numpy()[:, ::-1])
    assert out["words"].numpy().tolist() == _ids("the right circle") + [0]
    assert set(out) == set(plain) == {"image", "words", "mask", *preprocess.INFO_KEYS}


def test_from_config(tiny_shapes_tfrecords):
    data = ml_collections.ConfigDict(dict(tfrecord_dir=tiny_shapes_tfrecords, augment=()))
    assert augment.from_config(data) is None
    data.augment = ("hflip", "vflip")
    augmenter = augment.from_config(data)
    vocab = [line.rstrip("\n") for line in open(f"{tiny_shapes_tfrecords}/vocab.txt")]
    assert augmenter.augmentations == ("hflip", "vflip")
    table = augmenter.tables["hflip"].numpy()
    assert vocab[table[vocab.index("left")]] == "right"
    dataset = pipeline.make_dataset(
        f"{tiny_shapes_tfrecords}/train-*",
        image_size=32,
        max_words=6,
        batch_size=4,
        training=True,
        augment=augmenter,
    )
    batch = next(iter(dataset))
    assert batch["image"].shape == (4, 32, 32, 3)


def test_bad_names_and_probability():
    with pytest.raises(ValueError, match="data.augment must list distinct names"):
        augment.Augmenter(TOKENS, ("rotate",))
    with pytest.raises(ValueError, match="data.augment must list distinct names"):
        augment.check_augmentations(("hflip", "hflip"))
    assert augment.check_augmentations("hflip, vflip") == ("hflip", "vflip")
    with pytest.raises(ValueError, match="probability"):
        augment.Augmenter(TOKENS, ("hflip",), probability=1.5)
