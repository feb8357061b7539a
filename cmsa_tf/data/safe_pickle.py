"""Loading data-only pickles (the REFER refs files) without letting them run code.

The refs files were written by Python 2. `load_pickle` reads them with `RestrictedUnpickler`:
plain containers, strings and numbers need no globals at all, so every global is refused
(`UnsafePickleError`) except `set` / `frozenset` and the `_codecs.encode` that Python 3 uses for
bytes in protocol-2 pickles (wrapped so it can only encode text). Byte strings (Python 2 `str`)
are decoded as UTF-8, falling back to Latin-1.
"""

import codecs
import io
import os
import pickle


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global that could run code."""


class PickleFormatError(ValueError):
    """A pickle file is missing, or its bytes are not a valid pickle."""


def _encode_text(text, encoding="latin1"):
    """Stand-in for `_codecs.encode` in protocol-2 pickles of bytes: text -> bytes only."""
    if not isinstance(text, str) or not isinstance(encoding, str):
        raise UnsafePickleError("_codecs.encode in a refs pickle may only encode text.")
    return codecs.encode(text, encoding)


_ALLOWED_GLOBALS = {
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _encode_text,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for data-only pickles: refuses every global except harmless builtins.

    Plain containers (dict, list, tuple), str / unicode / bytes, int / long, float, bool and None
    are pickled with opcodes of their own and never reach `find_class`.
    """

    def find_class(self, module, name):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafePickleError(
                f"Refusing to load global '{module}.{name}' from a refs pickle: only plain "
                "containers, strings and numbers are allowed (a global can run arbitrary code)."
            )
        return allowed


def _decode_bytes(value):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _to_text(value):
    """Recursively turns bytes (Python 2 `str`) into `str`, in keys and values."""
    if isinstance(value, bytes):
        return _decode_bytes(value)
    if isinstance(value, dict):
        return {_to_text(k): _to_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_text(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_text(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return type(value)(_to_text(v) for v in value)
    return value


def load_pickle(path_or_bytes):
    """Loads a data-only pickle (e.g. a REFER refs file) with `RestrictedUnpickler`.

    Args:
        path_or_bytes: a file path, or the pickle's bytes.

    Returns:
        The unpickled object with every byte string decoded to `str`.

    Raises:
        UnsafePickleError: the pickle names a global that is not allowed.
        PickleFormatError: the file is missing or not a valid pickle.
    """
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data, where = bytes(path_or_bytes), "<bytes>"
    else:
        where = os.fspath(path_or_bytes)
        if not os.path.isfile(where):
            raise PickleFormatError(f"Pickle file {where!r} does not exist.")
        with open(where, "rb") as f:
            data = f.read()
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{where}: {error}") from None
    except Exception as error:  # any other unpickling failure: corrupt or truncated file
        raise PickleFormatError(
            f"{where} is not a readable pickle: {type(error).__name__}: {error}"
        ) from None
    return _to_text(obj)
