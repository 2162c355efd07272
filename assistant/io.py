"""Crash-safe file writing: temp file in the destination directory, fsync, rename.

A killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import StorageError


@contextlib.contextmanager
def atomic_writer(dest: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Yield a file object; on success it replaces ``dest`` atomically."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp-partial", dir=dest.parent)
    except OSError as exc:
        raise StorageError(
            f"cannot write {dest}: {exc.strerror}; check the directory exists and is writable"
        ) from exc
    tmp_path = Path(tmp)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the result should look like any new file
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_path, dest)
        fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    with atomic_writer(dest, "w") as fh:
        fh.write(text)


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    with atomic_writer(dest, "wb") as fh:
        fh.write(data)
