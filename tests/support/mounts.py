"""Real full disks and read-only filesystems for tests: a small tmpfs, a read-only bind mount.

Both need root (CAP_SYS_ADMIN); where mounting is not allowed the test is skipped with
the reason. chmod is no substitute: root writes through it, so only a mount is real.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(args: list[str], what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (mount); not root here")
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"{what}: mount is not permitted here ({r.stderr.strip() or r.returncode})")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "256k") mounted at ``path``: a disk that really fills up."""
    path.mkdir(parents=True, exist_ok=True)
    _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], "a small tmpfs")
    try:
        yield path
    finally:
        _umount(path)


@contextmanager
def readonly_view(src: Path, path: Path) -> Iterator[Path]:
    """``src`` bind-mounted read-only at ``path``: writes fail with EROFS, for root too."""
    path.mkdir(parents=True, exist_ok=True)
    _mount(["--bind", "-o", "ro", str(src), str(path)], "a read-only bind mount")
    try:
        if os.access(path, os.W_OK):  # old util-linux: a bind ignores ro until remounted
            subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True)
        if os.access(path, os.W_OK):
            pytest.skip("a read-only bind mount stays writable here")
        yield path
    finally:
        _umount(path)
