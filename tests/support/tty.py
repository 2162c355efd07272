"""Run a command with stderr on a pseudo-terminal (what a user sees at a terminal), stdout captured."""

from __future__ import annotations

import os
import pty
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TtyRun:
    returncode: int
    stdout: str
    screen: str  # everything written to the terminal (stderr)


def run_with_tty_stderr(args: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float = 120) -> TtyRun:
    master, slave = pty.openpty()
    proc = subprocess.Popen(list(args), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)  # fmt: skip
    os.close(slave)
    seen = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the command closed the terminal
            break
        if not data:
            break
        seen += data
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    return TtyRun(proc.wait(timeout), out, seen.decode(errors="replace"))
