"""The tokenizer's TensorFlow face: the rules of `tokenizer.tokenize` in graph ops, for the export.

`tf_tokenize` and `tf_encode` apply the same patterns as the Python face
(`cmsa_tf/data/tokenizer.py`, whose docstring states the rules); the tests feed the same
sentences through both and require identical ids. `TFTokenizer` carries the vocabulary file as
a lookup table, so a SavedModel that tracks it holds the file as an asset.
"""

import os

import tensorflow as tf

from cmsa_tf.data.tokenizer import (
    EDGE_SPACES_PATTERN,
    FINAL_DOT,
    PIECE_SEPARATOR,
    WHITESPACE_RUN_PATTERN,
    WORD_RUN_PATTERN,
    Vocabulary,
    check_max_length,
)


def tf_tokenize(sentences):
    """The rules of `tokenize` in TensorFlow ops.

    Args:
        sentences: string tensor [B] (UTF-8).

    Returns:
        A string `tf.RaggedTensor` [B, (tokens)].
    """
    sentences = tf.convert_to_tensor(sentences, dtype=tf.string)
    if sentences.shape.rank != 1:
        raise ValueError(
            f"sentences must be a string tensor of rank 1 [B], got shape {sentences.shape}."
        )
    text = tf.strings.regex_replace(sentences, WHITESPACE_RUN_PATTERN, " ")
    text = tf.strings.regex_replace(text, EDGE_SPACES_PATTERN, "")
    # Rule 1 removed every "\n", so it can mark the borders of word runs.
    text = tf.strings.regex_replace(
        text, WORD_RUN_PATTERN, PIECE_SEPARATOR + "\\1" + PIECE_SEPARATOR
    )
    pieces = tf.strings.split(text, sep=PIECE_SEPARATOR)  # [B, (pieces)]
    pieces = tf.ragged.map_flat_values(tf.strings.regex_replace, pieces, EDGE_SPACES_PATTERN, "")
    pieces = tf.ragged.boolean_mask(pieces, tf.strings.length(pieces) > 0)
    tokens = tf.ragged.map_flat_values(tf.strings.lower, pieces)  # no encoding: ASCII only
    # Drop a final "." of each row.
    lengths = tokens.row_lengths()  # [B]
    positions = tf.ragged.range(lengths)  # [B, (tokens)]
    is_last = tf.equal(positions, tf.expand_dims(lengths - 1, axis=1))
    drop = tf.logical_and(is_last, tf.equal(tokens, FINAL_DOT))
    return tf.ragged.boolean_mask(tokens, tf.logical_not(drop))


def tf_encode(sentences, table, max_length, pad_id=0):
    """Token ids of sentences inside the TensorFlow graph, end-padded to `max_length`.

    Args:
        sentences: string tensor [B] or a scalar string (e.g. inside a per-example `tf.data` map).
        table: a `tf.lookup` table mapping tokens to ids whose default value is the `<unk>` id
            (see `TFTokenizer`).
        max_length: T, a positive int.
        pad_id: the padding id.

    Returns:
        int32 [B, T] (or [T] for a scalar input).
    """
    max_length = check_max_length(max_length)
    sentences = tf.convert_to_tensor(sentences, dtype=tf.string)
    rank = sentences.shape.rank
    if rank not in (0, 1):
        raise ValueError(
            f"sentences must be a scalar or a rank-1 string tensor, got shape {sentences.shape}."
        )
    batch = sentences if rank == 1 else tf.expand_dims(sentences, 0)  # [B]
    tokens = tf_tokenize(batch)[:, :max_length]  # [B, (<= T)]
    ids = tf.ragged.map_flat_values(table.lookup, tokens)
    ids = tf.cast(ids, tf.int32).to_tensor(default_value=pad_id, shape=[None, max_length])  # [B, T]
    return ids if rank == 1 else ids[0]


def check_canonical(path, vocabulary) -> None:
    """Raises `ValueError` unless the file at `path` is byte for byte `vocabulary.to_bytes()`."""
    with open(path, "rb") as f:
        data = f.read()
    if data != vocabulary.to_bytes():
        raise ValueError(
            f"Vocabulary file {path!r} is not in canonical form (UTF-8, one token a line, '\\n' "
            "line endings, no surrounding spaces), so the in-graph table would differ from "
            "Vocabulary.from_file. Rewrite it with Vocabulary.from_file(path).save(new_path)."
        )


class TFTokenizer(tf.Module):
    """The tokenizer as a `tf.Module`: sentences -> end-padded ids, inside any graph.

    The lookup table is a `tf.lookup.StaticHashTable` initialised from the vocabulary file, so a
    SavedModel that tracks this module carries the file as an asset. Works eagerly, inside
    `tf.function` and inside `tf.data` maps.

    Args:
        vocabulary_file: path of a vocabulary file in canonical form (as written by
            `Vocabulary.save`; the builder's `vocab.txt`).
        max_length: T, the number of word slots.
        name: module name.

    Example:
        >>> tokenizer = TFTokenizer("vocab.txt", max_length=20)
        >>> ids, mask = tokenizer.encode_padded(tf.constant(["the man on the left"]))  # [1, 20]

    Reference:
        The authors' `util/text_processing.py` (CMSA / RRN code), see the module docstring.
    """

    def __init__(self, vocabulary_file, max_length, name=None):
        super().__init__(name=name)
        vocabulary_file = os.fspath(vocabulary_file)
        vocabulary = Vocabulary.from_file(vocabulary_file)
        check_canonical(vocabulary_file, vocabulary)
        self.max_length = check_max_length(max_length)
        self.pad_id = vocabulary.pad_id
        self.unk_id = vocabulary.unk_id
        self.vocabulary_size = len(vocabulary)
        self.vocabulary_file = vocabulary_file
        initializer = tf.lookup.TextFileInitializer(
            vocabulary_file,
            key_dtype=tf.string,
            key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64,
            value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            vocab_size=len(vocabulary),
        )
        self.table = tf.lookup.StaticHashTable(initializer, default_value=self.unk_id)

    def __call__(self, sentences):
        """int32 ids [B, T] (or [T] for a scalar string), padded with `pad_id` at the end."""
        return tf_encode(sentences, self.table, self.max_length, self.pad_id)

    def padded_tokens(self, sentences):
        """string [B, T]: the tokens behind `__call__`'s ids ("" on padding)."""
        tokens = tf_tokenize(sentences)[:, : self.max_length]
        return tokens.to_tensor(default_value="", shape=[None, self.max_length])

    def encode_padded(self, sentences):
        """`(ids, mask)`: int32 [B, T] and bool [B, T] (True on real words)."""
        ids = self(sentences)
        # Tokens never equal "<pad>" ("<" and ">" are not word characters), so the pad id marks
        # exactly the padding.
        return ids, tf.not_equal(ids, self.pad_id)
