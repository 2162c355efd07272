"""Ctrl+C in tests: start a real command, wait until it is busy, send SIGINT, wait for its end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT = 20.0  # generous: the bound is "a second or two", the test asserts that it ends at all


@dataclass
class Interrupted:
    returncode: int | None  # None: still running STOP_TIMEOUT seconds after the SIGINT (then killed)
    stdout: str
    stderr: str


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll cond() until it holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _default_sigint() -> None:
    # a shell that started us in the background may have set SIGINT to ignored; Ctrl+C is what we test
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_and_interrupt(
    cmd: Sequence[str],
    *,
    busy: Callable[[], bool],
    env: dict[str, str],
    cwd: Path,
    logs: Path,
    start_timeout: float = 600,
    sig: int = signal.SIGINT,
) -> Interrupted:
    """Run cmd until busy() holds, send SIGINT (as Ctrl+C does; or ``sig``), then wait for it to exit."""
    logs.mkdir(parents=True, exist_ok=True)
    # The fixtures just wrote hundreds of MB (a test model): flush them now, or the command's own
    # fsync after the SIGINT may wait for them on a slow CI disk (a 20 s timeout failed there once).
    os.sync()
    out, err = logs / "stdout", logs / "stderr"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=fo,
            stderr=fe,
            env={**env, "PYTHONFAULTHANDLER": "1"},  # a hang shows where it hangs
            cwd=cwd,
            preexec_fn=_default_sigint,
        )
    try:
        wait_until(lambda: proc.poll() is not None or busy(), start_timeout, f"{cmd[2:4]} to get busy")
        assert proc.poll() is None, f"it ended before it was interrupted: {err.read_text()}"
        proc.send_signal(sig)
        try:
            rc: int | None = proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
            proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack into stderr
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Interrupted(rc, out.read_text(errors="replace"), err.read_text(errors="replace"))


def assert_stopped_cleanly(r: Interrupted) -> None:
    """Exit status 130 with a one-line message: no lost interrupt, no traceback."""
    assert r.returncode == 130, f"exit {r.returncode} after SIGINT; stderr:\n{r.stderr[-6000:]}"
    assert "Exception ignored" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("Interrupted"), r.stderr[-2000:]
