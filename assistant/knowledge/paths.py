"""File paths as the knowledge base stores them: text SQLite can hold, mapping back to the same file.

A POSIX file name is bytes. Python gives a name that is not valid UTF-8 as a
str with lone surrogates (PEP 383), which SQLite cannot store as text. Such a
path is stored as a ``file://`` URI with the path's bytes percent-encoded
(``file:///docs/caf%FF.txt``): lossless, valid UTF-8, and distinct from every
plain path (stored paths are absolute, so they start with ``/``). Every other
path is stored as it is, as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

_URI = "file://"


def path_key(path: str | os.PathLike[str]) -> str:
    """The stored form of a path: itself if it is valid UTF-8, else a percent-encoded file:// URI."""
    s = os.fspath(path)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return _URI + quote(os.fsencode(s), safe="/")
    return s


def key_path(key: str) -> Path:
    """The path a stored key names (the inverse of path_key)."""
    if key.startswith(_URI):
        return Path(os.fsdecode(unquote_to_bytes(key[len(_URI) :])))
    return Path(key)


def display_name(name: str) -> str:
    """A file name for people and for text columns: undecodable bytes shown as U+FFFD."""
    return os.fsencode(name).decode("utf-8", errors="replace")


def key_prefixes(path: str | os.PathLike[str]) -> list[str]:
    """The stored prefixes of everything under a directory: its key, and the URI form names not UTF-8 take."""
    key = path_key(path)
    uri = _URI + quote(os.fsencode(os.fspath(path)), safe="/")
    return [key] if key == uri else [key, uri]
