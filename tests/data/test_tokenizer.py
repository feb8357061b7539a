"""Tests of cmsa_tf/data/tokenizer.py and its TensorFlow face, cmsa_tf/data/tf_tokenizer.py."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import tokenizer
from cmsa_tf.data.tf_tokenizer import TFTokenizer, tf_encode, tf_tokenize
from cmsa_tf.data.tokenizer import Vocabulary, tokenize

# Pieces for generated sentences: words, digits, punctuation, whitespace of every kind, accents,
# case pairs that differ between Unicode and ASCII lower-casing, CJK, emoji, control characters.
ATOMS = [
    "the",
    "Man",
    "LEFT",
    "a",
    "dog's",
    "x2",
    "42",
    "3.5",
    "_under_score",
    "far-right",
    "café",
    "ÉCOLE",
    "straße",
    "İstanbul",
    "ıi",
    "ΣΟΦΙΑΣ",
    "naïve",
    "e\u0301",
    "日本語",
    "中文字",
    "😀",
    "👨\u200d👩\u200d👧",
    "½",
    "²",
    "٣",
    ",",
    ".",
    "...",
    "!?",
    "(",
    ")",
    "-",
    "--",
    "'",
    '"',
    "&",
    "#1",
    "@",
    "/",
    "\\",
    "$",
    "%",
    "<pad>",
    "<unk>",
    "\u00a0",
    "\t",
    "\n",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x85",
    "\u2003",
    "\u3000",
    "\u200b",
    "\ufeff",
    "\x00",
    "\x1f",
    "\x7f",
    "\u2028",
    " ",
    "   ",
]
SEPARATORS = ["", " ", " ", " ", "  ", "\t", " . ", ", ", "\u00a0"]
EDGE_CASES = [
    "",
    " ",
    ".",
    "..",
    " . ",
    "...",
    "only ... ?!",
    "trailing dot.",
    "trailing dots..",
    "a.",
    "A . ",
    "\t\tTabs\tand  spaces  .  ",
    "word.\n",
    "\n\n",
    "\u3000全角\u3000",
    "x" * 40,
    "the  man ,\t(left)",
    "ΣΣ σ ς",
    "İI ıi",
    "Straße STRASSE",
    ". . .",
    "a . b .",
    "!.",
]


def _sentences(count, seed=0):
    rng = np.random.default_rng(seed)
    sentences = list(EDGE_CASES)
    while len(sentences) < count:
        parts = []
        for _ in range(int(rng.integers(0, 13))):
            parts.append(ATOMS[int(rng.integers(len(ATOMS)))])
            parts.append(SEPARATORS[int(rng.integers(len(SEPARATORS)))])
        if rng.random() < 0.3:
            parts.append(".")
        sentences.append("".join(parts))
    return sentences


@pytest.fixture(scope="module")
def corpus():
    return _sentences(400)


@pytest.fixture(scope="module")
def corpus_vocab(corpus, tmp_path_factory):
    """A vocabulary of the first half of the corpus (so the second half has unknown tokens)."""
    vocab = Vocabulary.build(corpus[:200])
    path = os.path.join(tmp_path_factory.mktemp("vocab"), "vocab.txt")
    vocab.save(path)
    return vocab, path


@pytest.mark.parametrize(
    "sentence, tokens",
    [
        ("The man, left.", ["the", "man", ",", "left"]),
        ("  Hello   World  ", ["hello", "world"]),
        ("man on the left...", ["man", "on", "the", "left", "..."]),
        ("a , ( b", ["a", ", (", "b"]),
        ("a ,\t\n( b", ["a", ", (", "b"]),
        ("guy in red; far-right.", ["guy", "in", "red", ";", "far", "-", "right"]),
        ("x2 at 3.5", ["x2", "at", "3", ".", "5"]),
        ("snake_case_word", ["snake_case_word"]),
        ("end.\n", ["end"]),
        ("left . .", ["left", ". ."]),
        ("left!.", ["left", "!."]),
        ("<pad>", ["<", "pad", ">"]),
        ("Café ÉCOLE", ["caf", "é É", "cole"]),  # ASCII word characters and lower-casing
        ("", []),
        (".", []),
        ("\u00a0\t ", []),
    ],
)
def test_tokenize_hand_checked(sentence, tokens):
    assert tokenize(sentence) == tokens
    assert [t.decode("utf-8") for t in tf_tokenize(tf.constant([sentence]))[0].numpy()] == tokens


def test_tokenize_accepts_utf8_bytes_and_rejects_other_types():
    assert tokenize("Ünïcode man".encode("utf-8")) == ["Ü", "n", "ï", "code", "man"]
    assert tokenize("big MAN".encode("utf-8")) == ["big", "man"]
    with pytest.raises(ValueError, match="sentence must be a str"):
        tokenize(5)
    with pytest.raises(ValueError, match="UTF-8"):
        tokenize(b"\xff\xfe")


def test_whitespace_class_covers_python_whitespace():
    pattern = re.compile(tokenizer.WHITESPACE)
    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    assert len(spaces) > 20
    assert all(pattern.fullmatch(c) for c in spaces)
    for c in "aZ09_,.😀é中":
        assert not pattern.fullmatch(c)


def test_python_and_tf_faces_agree_on_tokens(corpus):
    tf_tokens = tf_tokenize(tf.constant(corpus)).to_list()
    for sentence, tokens in zip(corpus, tf_tokens):
        assert [t.decode("utf-8") for t in tokens] == tokenize(sentence), repr(sentence)


def test_python_and_tf_faces_agree_on_ids(corpus, corpus_vocab):
    vocab, path = corpus_vocab
    max_length = 8
    layer = TFTokenizer(path, max_length)
    ids, mask = layer.encode_padded(tf.constant(corpus))
    expected = np.stack([vocab.encode_padded(s, max_length)[0] for s in corpus])
    expected_mask = np.stack([vocab.encode_padded(s, max_length)[1] for s in corpus])
    assert ids.dtype == tf.int32 and ids.shape == (len(corpus), max_length)
    np.testing.assert_array_equal(ids.numpy(), expected)
    np.testing.assert_array_equal(mask.numpy(), expected_mask)
    # The test is meaningful: known, unknown, padded and truncated rows all occur.
    assert (expected == vocab.unk_id).any() and (expected > vocab.unk_id).any()
    assert (~expected_mask).any() and expected_mask.all(axis=1).any()
    # The vocabulary holds non-ASCII tokens and tokens with inner spaces, read back by TF.
    assert any(" " in t for t in vocab.tokens) and any(
        ord(c) > 127 for t in vocab.tokens for c in t
    )


def test_truncation_and_padding():
    vocab = Vocabulary.build(["a b c d e f"])
    assert vocab.encode("a b c d e f") == [2, 3, 4, 5, 6, 7]
    assert vocab.encode("a b c d e f", max_length=3) == [2, 3, 4]
    ids, mask = vocab.encode_padded("a b c d e f", max_length=4)
    np.testing.assert_array_equal(ids, [2, 3, 4, 5])
    assert ids.dtype == np.int32 and mask.all()
    ids, mask = vocab.encode_padded("f zz", max_length=4)
    np.testing.assert_array_equal(ids, [7, vocab.unk_id, 0, 0])
    np.testing.assert_array_equal(mask, [True, True, False, False])
    with pytest.raises(ValueError, match="max_length"):
        vocab.encode_padded("a", max_length=0)


def test_vocabulary_build_order_and_min_count():
    sentences = ["b a", "a c.", "C, a"]
    vocab = Vocabulary.build(sentences)
    assert vocab.tokens == ("<pad>", "<unk>", "a", "c", ",", "b")  # count desc, then token
    assert vocab.pad_id == 0 and vocab.unk_id == 1 and len(vocab) == 6
    assert Vocabulary.build(sentences, min_count=2).tokens == ("<pad>", "<unk>", "a", "c")
    assert Vocabulary.build(["z y"]).tokens == ("<pad>", "<unk>", "y", "z")
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build(sentences, min_count=0)
    with pytest.raises(ValueError, match="single string"):
        Vocabulary.build("a b")


def test_vocabulary_save_load_round_trip(corpus_vocab, tmp_path):
    vocab, path = corpus_vocab
    loaded = Vocabulary.from_file(path)
    assert loaded == vocab and loaded.tokens == vocab.tokens and loaded.layout == "cmsa_tf"
    with open(path, "rb") as f:
        data = f.read()
    assert data == "".join(t + "\n" for t in vocab.tokens).encode("utf-8")
    copy = tmp_path / "copy.txt"
    loaded.save(copy)
    assert copy.read_bytes() == data
    assert not os.path.exists(str(copy) + ".tmp")


def test_authors_vocabulary_format(tmp_path):
    path = tmp_path / "vocabulary_Gref.txt"
    path.write_bytes(b"<pad>\r\n<go>\r\n<eos>\r\n<unk>\r\nthe\r\nman\r\n,\r\n")
    vocab = Vocabulary.from_file(path)
    assert vocab.layout == "authors"
    assert vocab.tokens == ("<pad>", "<go>", "<eos>", "<unk>", "the", "man", ",")
    assert vocab.pad_id == 0 and vocab.unk_id == 3
    assert vocab.encode("The woman, man.") == [4, 3, 6, 5]
    # CRLF lines are not what the in-graph table reads: refused, and fine once re-saved.
    with pytest.raises(ValueError, match="canonical"):
        TFTokenizer(path, 5)
    canonical = tmp_path / "canonical.txt"
    vocab.save(canonical)
    ids = TFTokenizer(canonical, 5)(tf.constant(["The woman, man."]))
    np.testing.assert_array_equal(ids.numpy(), [[4, 3, 6, 5, 0]])


@pytest.mark.parametrize(
    "tokens, message",
    [
        (["<unk>", "<pad>"], "must start with '<pad>'"),
        (["<pad>", "a"], "must contain '<unk>'"),
        (["<pad>", "<unk>", "a", "a"], "appears twice"),
        (["<pad>", "<unk>", "a\nb"], "line break"),
        (["<pad>", "<unk>", " a"], "whitespace"),
        (["<pad>", "<unk>", ""], "non-empty"),
    ],
)
def test_vocabulary_rejects_bad_tokens(tokens, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(tokens)


def test_vocabulary_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Vocabulary.from_file(tmp_path / "nope.txt")
    bad = tmp_path / "gap.txt"
    bad.write_text("<pad>\n<unk>\n\nman\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3 is empty"):
        Vocabulary.from_file(bad)


def test_tf_tokenizer_in_tf_function_and_tf_data(corpus_vocab):
    vocab, path = corpus_vocab
    layer = TFTokenizer(path, 6)
    sentences = ["The man, left.", "", "ΣΟΦΙΑΣ 😀 x2 unknownword"]
    expected = np.stack([vocab.encode_padded(s, 6)[0] for s in sentences])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(batch):
        return layer(batch)

    np.testing.assert_array_equal(encode(tf.constant(sentences)).numpy(), expected)
    dataset = tf.data.Dataset.from_tensor_slices(sentences).map(layer)  # scalar per element
    np.testing.assert_array_equal(np.stack(list(dataset.as_numpy_iterator())), expected)
    batched = tf.data.Dataset.from_tensor_slices(sentences).batch(2).map(layer).unbatch()
    np.testing.assert_array_equal(np.stack(list(batched.as_numpy_iterator())), expected)
    np.testing.assert_array_equal(
        tf_encode(tf.constant(sentences), layer.table, 6, pad_id=0).numpy(), expected
    )
    with pytest.raises(ValueError, match="rank"):
        layer(tf.constant([sentences]))


def test_tf_tokenizer_survives_saved_model(corpus_vocab, tmp_path):
    vocab, path = corpus_vocab
    vocab_copy = tmp_path / "vocab.txt"
    vocab.save(vocab_copy)
    module = tf.Module()
    module.tokenizer = TFTokenizer(vocab_copy, 5)
    module.encode = tf.function(
        module.tokenizer.__call__, input_signature=[tf.TensorSpec([None], tf.string)]
    )
    export_dir = str(tmp_path / "saved")
    tf.saved_model.save(module, export_dir)
    os.remove(vocab_copy)  # the SavedModel must carry its own copy
    assert os.listdir(os.path.join(export_dir, "assets")) == ["vocab.txt"]
    loaded = tf.saved_model.load(export_dir)
    sentences = ["the man, left.", "日本語 and more words than five here"]
    expected = np.stack([vocab.encode_padded(s, 5)[0] for s in sentences])
    np.testing.assert_array_equal(loaded.encode(tf.constant(sentences)).numpy(), expected)
