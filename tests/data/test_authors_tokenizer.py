"""The authors' tokenizer: equal to their code (run as Python 2 did, on bytes), Python == graph."""

import re

import numpy as np
import pytest
import tensorflow as tf

from cmsa_tf.data import authors_tokenizer, tokenizer
from cmsa_tf.data.authors_tokenizer import (
    AuthorsTFTokenizer,
    AuthorsVocabulary,
    authors_tokenize,
    tf_authors_tokenize,
)

T = 20
LINES = ["<pad>", "<go>", "<eos>", "<unk>", "the", "man", "", "left", ".", ",", "", "man", "2nd"]


def their_indices(sentence, vocab_dict, max_length=T):
    """Their `preprocess_sentence(sentence2vocab_indices(...))` as Python 2 ran it on a UTF-8 `str`
    (bytes: `\\W`, `strip` and `lower` are ASCII); an empty result instead of their IndexError."""
    words = re.compile(rb"(\W+)").split(sentence.encode("utf-8").strip())
    words = [w.lower() for w in words if len(w.strip()) > 0]
    if words and words[-1] == b".":
        words = words[:-1]
    ids = [vocab_dict.get(w.decode("utf-8"), vocab_dict["<unk>"]) for w in words][:max_length]
    return [vocab_dict["<pad>"]] * (max_length - len(ids)) + ids


def their_vocab_dict(lines):
    words = [w.strip() for w in lines]
    return {words[n]: n for n in range(len(words))}


def varied_sentences(count=400, seed=0):
    rng = np.random.default_rng(seed)
    pieces = [
        "the", "Man", "LEFT", "2nd", "x_1", ",", ", ", " ,", ".", " .", "..", "!", "?!", "-",
        "(", ")", "'s", '"', "café", "Ünïcode", "中文", "😀", "\u00a0", "\t", "\n", " ", "  ",
        "\r\n", "\x0b", "\x0c", "—", "under_score", "A.B", "e.g.", "'", "/", "&", "99", "man",
    ]  # fmt: skip
    sentences = ["", " ", ".", " . ", "the man, on the left.", "the man ,left .", "a" * 50]
    sentences.append(" ".join(["word"] * 30) + ".")
    while len(sentences) < count:
        n = int(rng.integers(1, 30))
        parts = [pieces[i] for i in rng.integers(0, len(pieces), size=n)]
        joints = [" " if rng.random() < 0.6 else "" for _ in parts]
        sentence = "".join(p + j for p, j in zip(parts, joints))
        if rng.random() < 0.3:
            sentence += "."
        sentences.append(sentence)
    return sentences


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocabulary.txt"
    path.write_text("\n".join(LINES) + "\n")
    return str(path)


def test_pieces_are_kept_unstripped():
    assert authors_tokenize("The man, on the left.") == ["the", "man", ", ", "on", "the", "left"]
    assert authors_tokenize("the man .") == ["the", "man", " ."]  # " ." is not a final "."
    assert authors_tokenize("left.right.") == ["left", ".", "right"]
    assert authors_tokenize("  ÉTÉ ok\t") == ["É", "t", "É ", "ok"]  # ASCII-only lower-casing
    assert authors_tokenize("") == [] and authors_tokenize(" . ") == []


def test_python_and_graph_equal_their_code_on_varied_sentences(vocab_file):
    sentences = varied_sentences()
    vocab = AuthorsVocabulary.from_file(vocab_file)
    vocab_dict = their_vocab_dict(LINES)
    expected = np.array([their_indices(s, vocab_dict) for s in sentences], np.int32)
    python = np.stack([vocab.encode_padded(s, T)[0] for s in sentences])
    np.testing.assert_array_equal(python, expected)
    module = AuthorsTFTokenizer(vocab_file, T)
    graph = module(tf.constant(sentences)).numpy()
    np.testing.assert_array_equal(graph, expected)
    ragged = tf_authors_tokenize(tf.constant(sentences)).to_list()
    assert [[t.decode() for t in row] for row in ragged] == [authors_tokenize(s) for s in sentences]
    # Inside a tf.function too, and the tokens line up with the ids.
    ids, mask = tf.function(module.encode_padded)(tf.constant(sentences[:50]))
    np.testing.assert_array_equal(ids, expected[:50])
    tokens = module.padded_tokens(tf.constant(sentences[:50])).numpy()
    np.testing.assert_array_equal(tokens != b"", mask.numpy())
    assert sum(len(authors_tokenize(s)) > T for s in sentences) > 10  # long ones truncated


def test_vocabulary_reads_as_their_loader(vocab_file):
    vocab = AuthorsVocabulary.from_file(vocab_file)
    assert len(vocab) == len(LINES) and vocab.tokens[6] == ""
    assert vocab.index == their_vocab_dict(LINES)
    assert vocab.index["man"] == 11 and (vocab.pad_id, vocab.unk_id) == (0, 3)
    # The default format refuses this file; the factory reads it in the tokenizer's format.
    with pytest.raises(ValueError, match="line 7 is empty"):
        tokenizer.load_vocabulary(vocab_file)
    assert len(tokenizer.load_vocabulary(vocab_file, "authors")) == len(LINES)
    assert isinstance(tokenizer.make_tf_tokenizer(vocab_file, T, "authors"), AuthorsTFTokenizer)
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        tokenizer.make_tf_tokenizer(vocab_file, T, "bert")


def test_crlf_and_missing_final_newline(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"<pad>\r\n<unk>\r\n\r\nman")
    vocab = AuthorsVocabulary.from_file(path)
    assert vocab.tokens == ("<pad>", "<unk>", "", "man")
    np.testing.assert_array_equal(vocab.encode_padded("a man", 3)[0], [0, 1, 3])


@pytest.mark.parametrize("lines, problem", [(["<pad>", "man"], "'<unk>'"), (["<unk>"], "'<pad>'")])
def test_a_vocabulary_without_pad_or_unk_is_refused(tmp_path, lines, problem):
    path = tmp_path / "v.txt"
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=f"v.txt.*no {problem} line"):
        AuthorsVocabulary.from_file(path)


def test_front_padding_keeps_the_first_words():
    values = tf.ragged.constant([[1, 2, 3, 4], [5], []])
    np.testing.assert_array_equal(
        authors_tokenizer.front_pad(values, 3, 0), [[1, 2, 3], [0, 0, 5], [0, 0, 0]]
    )
