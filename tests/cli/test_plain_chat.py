"""`assistant chat --plain`: multi-turn, commands, Ctrl+C stops an answer, Ctrl+D quits."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def spawn(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "ASSISTANT_HOME": str(home), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "assistant", "chat", "--plain", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


def read_until(proc: subprocess.Popen, predicate, timeout: float = 60) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            if predicate(buf):
                return buf
    raise AssertionError(f"timed out; got {buf!r}")


def test_multi_turn_and_eof_quits(home_with_default):
    proc = spawn(home_with_default, "-n", "16", "-t", "0")
    out, err = proc.communicate(b"Hello!\n/help\nWhat is 2+2?\n/new\nBye.\n", timeout=120)
    assert proc.returncode == 0, err
    text = out.decode()
    assert "/new (new chat)" in text  # /help
    assert "(new chat)" in text
    assert len([line for line in text.splitlines() if line.strip()]) >= 4


def test_ctrl_c_stops_the_answer_and_keeps_the_session(home_with_default):
    proc = spawn(home_with_default, "-n", "400")
    proc.stdin.write(b"Write a very long story about a dragon, with many chapters.\n")
    proc.stdin.flush()
    read_until(proc, lambda b: len(b.strip()) > 20)  # the answer is streaming
    proc.send_signal(signal.SIGINT)
    read_until(proc, lambda b: b"(stopped)" in b)
    proc.stdin.write(b"/system Be brief.\nSay OK.\n")
    proc.stdin.close()
    rest = proc.stdout.read()
    proc.wait(timeout=120)
    assert proc.returncode == 0, proc.stderr.read()
    assert b"(system prompt set)" in rest
    assert rest.strip()  # the next question was answered in the same session
