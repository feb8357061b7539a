"""The authors' tokenizer and vocabulary format, exactly as their code applies them.

The rules of the authors' `util/text_processing.py` (`sentence2vocab_indices`,
`preprocess_sentence`, `load_vocab_dict_from_file`), run by Python 2 on byte strings:

1. Strip the sentence of leading and trailing ASCII whitespace (`AUTHORS_WHITESPACE`,
   Python 2's `str.strip()`).
2. Split it into maximal runs of word characters `[0-9A-Za-z_]` and of other characters
   (`re.split(r'(\\W+)', ...)`); keep the pieces whose stripped form is not empty, **without
   stripping them**, so ", " in "the man, on the left" is one token (an `<unk>` word, since no
   vocabulary line holds ", ").
3. Lower-case the pieces (ASCII only), then drop a last piece equal to ".".
4. Unknown pieces -> `<unk>`; keep the first T ids and pad at the FRONT with `<pad>` to T.

On a byte string every byte of a non-ASCII character is a non-word byte, so treating each
non-ASCII character as one non-word character (what this module does on `str`) gives the same
pieces. An empty sentence gives no token (their code raised an IndexError).

Vocabulary files (`AuthorsVocabulary`): line n (0-based) is id n, each line stripped of ASCII
whitespace; empty lines stay as ids no token maps to; a token on several lines maps to its last
line (their `{words[n]: n}`). So their `vocabulary_Gref.txt`, with five empty lines and "." twice,
loads with its 12,112 ids. The default format (`tokenizer.Vocabulary`) refuses such files.

The Python face (`authors_tokenize`, `AuthorsVocabulary.encode_padded`) and the TensorFlow face
(`tf_authors_tokenize`, `AuthorsTFTokenizer`, for the export) share the patterns below; the tests
require identical ids on a few hundred varied sentences. The TensorFlow face expects valid UTF-8
(the export checks it first).
"""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow as tf

from cmsa_tf.data.tokenizer import (
    PAD_TOKEN,
    UNK_TOKEN,
    _as_text,
    check_max_length,
    read_vocabulary_lines,
)

AUTHORS_WHITESPACE = " \t\n\r\x0b\x0c"
FINAL_DOT = "."
# Patterns shared by both faces (Python `re` and RE2 syntax alike).
_WHITESPACE_CLASS = "[ \\t\\n\\r\\x0b\\x0c]"
EDGE_WHITESPACE_PATTERN = f"^{_WHITESPACE_CLASS}+|{_WHITESPACE_CLASS}+$"
BLANK_PATTERN = f"{_WHITESPACE_CLASS}*"
WORD_RUN_PATTERN = "([0-9A-Za-z_]+)"
NON_WORD_RUN_PATTERN = "([^0-9A-Za-z_]+)"
# A byte that valid UTF-8 never holds: marks the borders of word runs in the TensorFlow face.
_SEPARATOR = b"\xff"

_EDGE_WHITESPACE_RE = re.compile(EDGE_WHITESPACE_PATTERN)
_NON_WORD_RUN_RE = re.compile(NON_WORD_RUN_PATTERN)
_BLANK_RE = re.compile(BLANK_PATTERN)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def authors_tokenize(sentence: str | bytes) -> list[str]:
    """The authors' tokens of `sentence` (see the module docstring).

    Example:
        >>> authors_tokenize("The man, on the left.")
        ['the', 'man', ', ', 'on', 'the', 'left']
    """
    text = _EDGE_WHITESPACE_RE.sub("", _as_text(sentence))
    pieces = [
        piece.translate(_ASCII_LOWER)
        for piece in _NON_WORD_RUN_RE.split(text)
        if not _BLANK_RE.fullmatch(piece)
    ]
    if pieces and pieces[-1] == FINAL_DOT:
        pieces.pop()
    return pieces


class AuthorsVocabulary:
    """A vocabulary file read as the authors' code reads it.

    Args:
        lines: the stripped lines of the file; line n is id n (empty lines allowed).

    Example:
        >>> vocab = AuthorsVocabulary(["<pad>", "<go>", "<eos>", "<unk>", "man", "", "man"])
        >>> vocab.encode_padded("the man", max_length=4)[0]
        array([0, 0, 3, 6], dtype=int32)

    Reference:
        The authors' `util/text_processing.py`: `load_vocab_dict_from_file`,
        `sentence2vocab_indices`, `preprocess_sentence`.
    """

    def __init__(self, lines):
        self._tokens = tuple(lines)
        for number, line in enumerate(self._tokens):
            if not isinstance(line, str) or _EDGE_WHITESPACE_RE.search(line):
                raise ValueError(f"Vocabulary line {number + 1} must be a stripped str: {line!r}.")
        index = {token: n for n, token in enumerate(self._tokens)}  # the last line wins
        for token in (PAD_TOKEN, UNK_TOKEN):
            if token not in index:
                raise ValueError(f"The vocabulary has no {token!r} line.")
        self._index = index

    @classmethod
    def from_file(cls, path) -> AuthorsVocabulary:
        """Reads a vocabulary file: lines split after "\\n", each stripped of ASCII whitespace."""
        path = os.fspath(path)
        lines = read_vocabulary_lines(path)
        try:
            return cls(_EDGE_WHITESPACE_RE.sub("", line) for line in lines)
        except ValueError as error:
            raise ValueError(f"Vocabulary file {path!r}: {error}") from None

    @property
    def tokens(self) -> tuple:
        """The lines, a tuple; line n is id n ("" for an empty line)."""
        return self._tokens

    @property
    def index(self) -> dict:
        """Token -> id, as their `load_vocab_dict_from_file` builds it."""
        return dict(self._index)

    @property
    def pad_id(self) -> int:
        return self._index[PAD_TOKEN]

    @property
    def unk_id(self) -> int:
        return self._index[UNK_TOKEN]

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return f"AuthorsVocabulary(size={len(self)})"

    def encode(self, sentence, max_length: int | None = None) -> list[int]:
        """Ids of the authors' tokens, unpadded, the first `max_length` kept if given."""
        max_length = check_max_length(max_length, allow_none=True)
        ids = [self._index.get(token, self.unk_id) for token in authors_tokenize(sentence)]
        return ids if max_length is None else ids[:max_length]

    def encode_padded(self, sentence, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """`(ids, mask)`, int32 [T] and bool [T]: the first T ids, padded at the front."""
        max_length = check_max_length(max_length)
        ids = self.encode(sentence, max_length)
        padded = np.full([max_length], self.pad_id, dtype=np.int32)  # [T]
        mask = np.zeros([max_length], dtype=bool)  # [T]
        if ids:
            padded[-len(ids) :] = ids
            mask[-len(ids) :] = True
        return padded, mask


# ----------------------------------------------------------------------------------------------
# TensorFlow face.


def tf_authors_tokenize(sentences) -> tf.RaggedTensor:
    """`authors_tokenize` in TensorFlow ops: string [B] (valid UTF-8) -> ragged string [B, (n)]."""
    sentences = tf.convert_to_tensor(sentences, dtype=tf.string)
    if sentences.shape.rank != 1:
        raise ValueError(
            f"sentences must be a string tensor of rank 1 [B], got shape {sentences.shape}."
        )
    text = tf.strings.regex_replace(sentences, EDGE_WHITESPACE_PATTERN, "")
    text = tf.strings.regex_replace(text, WORD_RUN_PATTERN, _SEPARATOR + b"\\1" + _SEPARATOR)
    pieces = tf.strings.split(text, sep=_SEPARATOR)  # [B, (pieces)], word and non-word runs
    blank = tf.ragged.map_flat_values(tf.strings.regex_full_match, pieces, BLANK_PATTERN)
    pieces = tf.ragged.boolean_mask(pieces, tf.logical_not(blank))
    tokens = tf.ragged.map_flat_values(tf.strings.lower, pieces)  # no encoding: ASCII only
    lengths = tokens.row_lengths()  # [B]
    is_last = tf.equal(tf.ragged.range(lengths), tf.expand_dims(lengths - 1, axis=1))
    drop = tf.logical_and(is_last, tf.equal(tokens, FINAL_DOT))
    return tf.ragged.boolean_mask(tokens, tf.logical_not(drop))


def front_pad(values: tf.RaggedTensor, max_length: int, pad_value) -> tf.Tensor:
    """The first `max_length` values of each row, padded at the front: [B, (n)] -> [B, T]."""
    values = values[:, :max_length]
    dense = values.to_tensor(default_value=pad_value, shape=[None, max_length])  # [B, T]
    shift = max_length - tf.cast(values.row_lengths(), tf.int32)  # [B], padding slots in front
    source = tf.range(max_length)[None, :] - shift[:, None]  # [B, T]
    gathered = tf.gather(dense, tf.maximum(source, 0), batch_dims=1)
    return tf.where(source >= 0, gathered, tf.fill(tf.shape(dense), pad_value))


class AuthorsTFTokenizer(tf.Module):
    """The authors' tokenizer as a `tf.Module`: sentences -> front-padded ids, inside any graph.

    The lookup table holds the vocabulary's token -> id pairs (the last line of a repeated token,
    no empty line) as constants, so a SavedModel that tracks this module needs no file.

    Args:
        vocabulary_file: a vocabulary file in the authors' format (`AuthorsVocabulary`).
        max_length: T, the number of word slots.
        name: module name.

    Example:
        >>> tokenizer = AuthorsTFTokenizer("vocabulary_Gref.txt", max_length=20)
        >>> ids, mask = tokenizer.encode_padded(tf.constant(["the man on the left"]))  # [1, 20]

    Reference:
        The authors' `util/text_processing.py`, see the module docstring.
    """

    def __init__(self, vocabulary_file, max_length: int, name: str | None = None):
        super().__init__(name=name)
        vocabulary = AuthorsVocabulary.from_file(vocabulary_file)
        self.vocabulary_file = os.fspath(vocabulary_file)
        self.max_length = check_max_length(max_length)
        self.pad_id = vocabulary.pad_id
        self.unk_id = vocabulary.unk_id
        self.vocabulary_size = len(vocabulary)
        pairs = sorted((token, n) for token, n in vocabulary.index.items() if token)
        initializer = tf.lookup.KeyValueTensorInitializer(
            tf.constant([token for token, _ in pairs], tf.string),
            tf.constant([n for _, n in pairs], tf.int64),
        )
        self.table = tf.lookup.StaticHashTable(initializer, default_value=self.unk_id)

    def __call__(self, sentences) -> tf.Tensor:
        """int32 ids [B, T] (or [T] for a scalar string), padded with `pad_id` at the front."""
        sentences = tf.convert_to_tensor(sentences, dtype=tf.string)
        rank = sentences.shape.rank
        if rank not in (0, 1):
            raise ValueError(
                f"sentences must be a scalar or a rank-1 string tensor, got {sentences.shape}."
            )
        batch = sentences if rank == 1 else sentences[None]  # [B]
        ids = tf.ragged.map_flat_values(self.table.lookup, tf_authors_tokenize(batch))
        ids = front_pad(tf.cast(ids, tf.int32), self.max_length, self.pad_id)  # [B, T]
        return ids if rank == 1 else ids[0]

    def padded_tokens(self, sentences) -> tf.Tensor:
        """string [B, T]: the tokens behind `__call__`'s ids ("" on padding)."""
        return front_pad(tf_authors_tokenize(sentences), self.max_length, "")

    def encode_padded(self, sentences) -> tuple[tf.Tensor, tf.Tensor]:
        """`(ids, mask)`: int32 [B, T] and bool [B, T] (True on real words)."""
        ids = self(sentences)
        # No token is "<pad>" ("<" and ">" are not word characters), so the pad id marks padding.
        return ids, tf.not_equal(ids, self.pad_id)
