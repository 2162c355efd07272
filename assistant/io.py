"""Crash-safe file writing: temp file in the destination directory, fsync, rename.

A killed process leaves either the old file or the new one, never half of one. It can leave
its hidden temp file (``.NAME.…@PID-START.XXXX.tmp-partial``) behind, though: the name
records its owner (pid and start time), and :func:`clean_partials` removes, on the next run to
the same destination, those whose owner is gone and that are older than the running process.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import StorageError

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".tmp-partial"
_OWNER = re.compile(r"@(?P<pid>\d+)-(?P<start>\d+)\.[^./]*" + re.escape(PARTIAL_SUFFIX) + "$")
_STARTED = time.time()  # this process's start, near enough: the module is imported at start-up


def _start_ticks(pid: int) -> int | None:
    """A process's start time (clock ticks after boot, /proc/PID/stat field 22); None if it is gone,
    0 if it runs but the start is unknown (no /proc: not Linux)."""
    if not os.path.isdir("/proc/self"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:
            pass  # exists, owned by someone else
        return 0
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except FileNotFoundError:
        return None
    except (OSError, IndexError, ValueError):
        return 0


def _alive(pid: int, start: int) -> bool:
    ticks = _start_ticks(pid)
    if ticks is None:
        return False
    return ticks == 0 or start == 0 or ticks == start  # a reused pid with another start does not own it


def partial_prefix(dest: Path, tag: str = "") -> str:
    """Prefix of a temp file or directory next to ``dest``: hidden, named after it and its owner."""
    pid = os.getpid()
    return f".{dest.name}.{tag}@{pid}-{_start_ticks(pid) or 0}."


def clean_partials(dest: str | os.PathLike[str]) -> list[Path]:
    """Remove temp files/dirs of ``dest`` left by killed processes (owner gone, older than us)."""
    dest = Path(dest)
    prefix = f".{dest.name}."
    started = _STARTED
    removed: list[Path] = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    for entry in entries:
        m = _OWNER.search(entry.name)
        if not entry.name.startswith(prefix) or m is None:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= started or _alive(
                int(m.group("pid")), int(m.group("start"))
            ):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError as exc:
            log.warning("cannot remove the leftover %s: %s", entry.path, exc.strerror or exc)
            continue
        log.info("removed %s, left by a process that no longer runs", entry.path)
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_writer(dest: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Yield a file object; on success it replaces ``dest`` atomically."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=partial_prefix(dest), suffix=PARTIAL_SUFFIX, dir=dest.parent)
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
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageError(
                f"disk full writing {dest} ({exc.strerror}): free space and run the command again"
            ) from exc
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


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes as they are on disk now (read in 4 MiB blocks; no cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()
