"""The authors' text rules and the vocabulary: the Python face (the builder, evaluation, predict).

The rules (the authors' `text_processing.sentence2vocab_indices`, made explicit):

1. Whitespace: every run of whitespace characters (`WHITESPACE`: ASCII and Unicode spaces, line
   and paragraph separators, all C0/C1 control characters, DEL, zero-width space and BOM) becomes
   one ASCII space, and the sentence is stripped.
2. Split into maximal runs of word characters and maximal runs of other characters (the authors'
   `re.compile(r'(\\W+)').split`), strip each piece and drop the empty ones. So punctuation runs
   are tokens: "man, left" -> "man", ",", "left"; " , ( " -> ", (".
3. Lower-case the pieces.
4. Drop a final "." token.
5. Map to ids: unknown tokens -> `<unk>`; `<pad>` is id 0; truncate to `max_length`.

One definition of a word character and of lower-casing, shared by both faces: ASCII. A word
character is `[0-9A-Za-z_]` and only `A-Z` are lower-cased; every other character (accented
letters, CJK, emoji, ...) is a symbol and is kept as written. This is exactly what the authors'
Python 2 code did (`\\W` and `str.lower` without `re.UNICODE` are ASCII there), it is all RE2 (the
regex engine of `tf.strings`) supports without Unicode tables, and it cannot drift with the
Unicode version of Python or ICU. The patterns below are written once and used by both faces; the
tests feed a few hundred varied sentences through both and require identical ids.

Padding: we pad at the END with `<pad>` (the authors padded at the front). CMSA has no word-order
signal (no LSTM, no position encoding), and a word mask marks the padding, so the side makes no
difference to the model; end padding keeps "the first k ids are the words" simple everywhere.

Vocabulary files: one token a line, line i holds id i, UTF-8, `<pad>` on the first line and
`<unk>` somewhere. The authors' files (`<pad>`, `<go>`, `<eos>`, `<unk>` first) use the same
layout and load as they are. Tokens never contain whitespace other than single inner spaces, so
a line always holds exactly one token.
"""

import collections
import os
import re

import numpy as np

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
AUTHORS_SPECIAL_TOKENS = ("<pad>", "<go>", "<eos>", "<unk>")

# Character classes, in the syntax Python's `re` and RE2 share (\xHH escapes, literal characters).
WORD_CHARACTERS = "[0-9A-Za-z_]"
WHITESPACE = (
    "[\\x00-\\x20\\x7f-\\xa0"  # C0 controls, space, DEL, C1 controls (incl. NEL), no-break space
    "\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]"
)
# The patterns of the rules, used by both faces.
WHITESPACE_RUN_PATTERN = WHITESPACE + "+"
WORD_RUN_PATTERN = "(" + WORD_CHARACTERS + "+)"
EDGE_SPACES_PATTERN = "^ +| +$"  # inputs never hold "\n" here, so "$" means end of text in both.
FINAL_DOT = "."

_WHITESPACE_RUN_RE = re.compile(WHITESPACE_RUN_PATTERN)
_WORD_RUN_RE = re.compile(WORD_RUN_PATTERN)
_EDGE_SPACES_RE = re.compile(EDGE_SPACES_PATTERN)
_WHITESPACE_EDGES_RE = re.compile(f"^{WHITESPACE}+|{WHITESPACE}+$")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# The TF face splits on this separator after marking word runs; rule 1 removes it from the text.
PIECE_SEPARATOR = "\n"


def _as_text(sentence, name="sentence"):
    if isinstance(sentence, bytes):
        try:
            return sentence.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{name} must be UTF-8 text; got undecodable bytes ({error})."
            ) from None
    if not isinstance(sentence, str):
        raise ValueError(f"{name} must be a str (or UTF-8 bytes), got {type(sentence).__name__}.")
    return sentence


def tokenize(sentence):
    """Splits a sentence into tokens with the authors' rules (see the module docstring).

    Args:
        sentence: `str` (or UTF-8 `bytes`).

    Returns:
        A list of `str` tokens, possibly empty.

    Example:
        >>> tokenize("The man, left.")
        ['the', 'man', ',', 'left']
    """
    text = _as_text(sentence)
    text = _WHITESPACE_RUN_RE.sub(" ", text)
    text = _EDGE_SPACES_RE.sub("", text)
    pieces = _WORD_RUN_RE.split(text)  # word runs and the runs between them, in order
    tokens = []
    for piece in pieces:
        piece = _EDGE_SPACES_RE.sub("", piece)
        if piece:
            tokens.append(piece.translate(_ASCII_LOWER))
    if tokens and tokens[-1] == FINAL_DOT:
        tokens.pop()
    return tokens


def check_max_length(max_length, allow_none: bool = False):
    if max_length is None and allow_none:
        return None
    if (
        isinstance(max_length, bool)
        or not isinstance(max_length, (int, np.integer))
        or max_length < 1
    ):
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}.")
    return int(max_length)


def _check_token(token, index):
    if not isinstance(token, str) or not token:
        raise ValueError(f"Vocabulary token {index} must be a non-empty str, got {token!r}.")
    if "\n" in token or "\r" in token or _WHITESPACE_EDGES_RE.search(token):
        raise ValueError(
            f"Vocabulary token {index} ({token!r}) has a line break or leading/trailing "
            "whitespace; it cannot be stored one token a line."
        )


def read_vocabulary_lines(path) -> list[str]:
    """The lines of a UTF-8 vocabulary file, split on "\\n", without the empty piece after a final
    newline; a clear error for a missing or non-UTF-8 file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Vocabulary file {path!r} does not exist.")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"Vocabulary file {path!r} is not UTF-8 ({error}).") from None
    lines = text.split("\n")
    if lines[-1] == "":  # after the last "\n" (or an empty file): no line
        lines.pop()
    return lines


class Vocabulary:
    """Token <-> id mapping with the authors' text rules.

    Args:
        tokens: sequence of `str`, token i has id i. `tokens[0]` must be `<pad>` and `<unk>` must
            be present; no duplicates.

    Example:
        >>> vocab = Vocabulary.build(["the red ball.", "a red cup"])
        >>> vocab.tokens
        ('<pad>', '<unk>', 'red', 'a', 'ball', 'cup', 'the')
        >>> vocab.encode("The red dog")
        [6, 2, 1]
        >>> vocab.encode_padded("red cup", max_length=4)[0]
        array([2, 5, 0, 0], dtype=int32)

    Reference:
        The authors' `util/text_processing.py` (CMSA / RRN code): `load_vocab_dict_from_file`,
        `sentence2vocab_indices`, `preprocess_sentence`.
    """

    def __init__(self, tokens):
        tokens = tuple(tokens)
        for index, token in enumerate(tokens):
            _check_token(token, index)
        if not tokens or tokens[0] != PAD_TOKEN:
            first = tokens[0] if tokens else None
            raise ValueError(f"A vocabulary must start with {PAD_TOKEN!r} (id 0), got {first!r}.")
        index = {}
        for i, token in enumerate(tokens):
            if token in index:
                raise ValueError(
                    f"Vocabulary token {token!r} appears twice (ids {index[token]} and {i})."
                )
            index[token] = i
        if UNK_TOKEN not in index:
            raise ValueError(f"A vocabulary must contain {UNK_TOKEN!r}.")
        self._tokens = tokens
        self._index = index

    @property
    def tokens(self):
        """The tokens, a tuple; token i has id i."""
        return self._tokens

    @property
    def pad_id(self):
        return 0

    @property
    def unk_id(self):
        return self._index[UNK_TOKEN]

    @property
    def layout(self):
        """`"authors"` if the file starts with the authors' special tokens, else `"cmsa_tf"`."""
        if self._tokens[: len(AUTHORS_SPECIAL_TOKENS)] == AUTHORS_SPECIAL_TOKENS:
            return "authors"
        return "cmsa_tf"

    def __len__(self):
        return len(self._tokens)

    def __contains__(self, token):
        return token in self._index

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and self._tokens == other._tokens

    def __hash__(self):
        return hash(self._tokens)

    def __repr__(self):
        return f"Vocabulary(size={len(self)}, layout={self.layout!r})"

    def token_to_id(self, token):
        return self._index.get(token, self.unk_id)

    def id_to_token(self, token_id):
        if not 0 <= int(token_id) < len(self._tokens):
            raise ValueError(f"token id {token_id} is outside [0, {len(self._tokens)}).")
        return self._tokens[int(token_id)]

    @classmethod
    def build(cls, sentences, min_count=1):
        """A vocabulary of the tokens of `sentences` seen at least `min_count` times.

        Order: `<pad>`, `<unk>`, then by count (descending), ties by token (code point order).
        """
        if isinstance(sentences, (str, bytes)):
            raise ValueError("sentences must be an iterable of sentences, not a single string.")
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive integer, got {min_count!r}.")
        counts = collections.Counter()
        for sentence in sentences:
            counts.update(tokenize(sentence))
        kept = sorted(
            (token for token, count in counts.items() if count >= min_count),
            key=lambda token: (-counts[token], token),
        )
        return cls([PAD_TOKEN, UNK_TOKEN] + [t for t in kept if t not in (PAD_TOKEN, UNK_TOKEN)])

    @classmethod
    def from_file(cls, path):
        """Loads a vocabulary file (ours or the authors'; see the module docstring).

        Lines are split on "\\n" only; a trailing "\\r" and surrounding whitespace are removed
        (the authors' loader stripped lines too). Empty lines are an error, except one final
        newline.
        """
        path = os.fspath(path)
        lines = read_vocabulary_lines(path)
        tokens = []
        for number, line in enumerate(lines):
            token = _WHITESPACE_EDGES_RE.sub("", line)
            if not token:
                raise ValueError(f"Vocabulary file {path!r}: line {number + 1} is empty.")
            tokens.append(token)
        try:
            return cls(tokens)
        except ValueError as error:
            raise ValueError(f"Vocabulary file {path!r}: {error}") from None

    def to_bytes(self):
        """The canonical file contents: UTF-8, one token a line, "\\n" after each."""
        return "".join(token + "\n" for token in self._tokens).encode("utf-8")

    def save(self, path):
        """Writes the vocabulary file (canonical form, written to a temporary file then renamed)."""
        path = os.fspath(path)
        tmp_path = path + ".tmp"
        with open(tmp_path, "wb") as f:
            f.write(self.to_bytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)

    def encode(self, sentence, max_length=None):
        """Token ids of `sentence`, unpadded, truncated to `max_length` if given."""
        max_length = check_max_length(max_length, allow_none=True)
        ids = [self._index.get(token, self.unk_id) for token in tokenize(sentence)]
        return ids if max_length is None else ids[:max_length]

    def encode_padded(self, sentence, max_length):
        """Ids truncated / end-padded to `max_length`.

        Returns:
            `(ids, mask)`: int32 [T] and bool [T], mask True on real words.
        """
        max_length = check_max_length(max_length)
        ids = self.encode(sentence, max_length)
        padded = np.full([max_length], self.pad_id, dtype=np.int32)  # [T]
        padded[: len(ids)] = ids
        mask = np.zeros([max_length], dtype=bool)  # [T]
        mask[: len(ids)] = True
        return padded, mask

    def decode(self, ids):
        """Tokens of `ids` (padding ids decode to `<pad>`)."""
        return [self.id_to_token(i) for i in ids]


# ----------------------------------------------------------------------------------------------
# The tokenizers a config selects (`config.data.tokenizer`).

TOKENIZERS = ("default", "authors")


def _check_tokenizer(name):
    if name not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {name!r}.")


def load_vocabulary(vocabulary_file, tokenizer="default"):
    """The vocabulary file in the format of `tokenizer`: a `Vocabulary` ("default", this module's
    rules) or an `authors_tokenizer.AuthorsVocabulary` ("authors")."""
    _check_tokenizer(tokenizer)
    if tokenizer == "authors":
        from cmsa_tf.data import authors_tokenizer  # it builds on this module

        return authors_tokenizer.AuthorsVocabulary.from_file(vocabulary_file)
    return Vocabulary.from_file(vocabulary_file)


def make_tf_tokenizer(vocabulary_file, max_length, tokenizer="default", name=None):
    """The in-graph tokenizer `tokenizer` names: `TFTokenizer` or `AuthorsTFTokenizer`."""
    _check_tokenizer(tokenizer)
    if tokenizer == "authors":
        from cmsa_tf.data import authors_tokenizer

        return authors_tokenizer.AuthorsTFTokenizer(vocabulary_file, max_length, name=name)
    from cmsa_tf.data import tf_tokenizer  # it builds on this module

    return tf_tokenizer.TFTokenizer(vocabulary_file, max_length, name=name)
