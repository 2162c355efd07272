"""Issue 12 item 16: a convert killed with SIGKILL leaves its hidden temp file; the next run to the
same destination removes it (only leftovers of processes that are gone and older than the run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cvt_models
import pytest

from assistant.io import _start_ticks, clean_partials, partial_prefix

ROOT = Path(__file__).resolve().parent.parent.parent


def _partials(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.name.endswith(".tmp-partial"))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftover(d: Path, dest: str, pid: int, start: int, *, age: float = 3600, is_dir: bool = False) -> Path:
    p = d / f".{dest}.@{pid}-{start}.{'d' if is_dir else 'f'}{int(age)}.tmp-partial"
    if is_dir:
        p.mkdir()
        (p / "F32.gguf").write_bytes(b"x" * 100)
    else:
        p.write_bytes(b"GGUF partial")
    past = time.time() - age
    os.utime(p, (past, past))
    return p


def test_clean_partials_removes_only_dead_and_older(tmp_path: Path) -> None:
    dest = tmp_path / "out.gguf"
    me = os.getpid()
    dead = _dead_pid()
    gone_file = _leftover(tmp_path, "out.gguf", dead, 12345)
    gone_dir = _leftover(tmp_path, "out.gguf", dead, 12345, is_dir=True)
    gone_lock = _leftover(tmp_path, "out.gguf.lock.json", dead, 12345)
    mine = _leftover(tmp_path, "out.gguf", me, _start_ticks(me) or 0)  # a live owner: kept
    reused = _leftover(tmp_path, "out.gguf", me, 1)  # our pid, but another start time: its owner is gone
    newer = _leftover(tmp_path, "out.gguf", dead, 12345, age=-60)  # newer than this process: kept
    other = _leftover(tmp_path, "other.gguf", dead, 12345)  # another destination: kept
    legacy = tmp_path / ".out.gguf.k2j3h4.tmp-partial"  # no owner recorded: kept
    legacy.write_bytes(b"")
    removed = clean_partials(dest)
    assert sorted(removed) == sorted([gone_file, gone_dir, gone_lock, reused])
    assert not gone_dir.exists() and mine.exists() and newer.exists() and other.exists() and legacy.exists()
    assert partial_prefix(dest).startswith(f".out.gguf.@{me}-")


def test_kill_9_mid_convert_then_rerun_cleans_up(tmp_path: Path) -> None:
    model = cvt_models.make_decoder(tmp_path / "model", hidden=512, heads=8, kv_heads=4, ffn=1536, layers=8)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "m.gguf"
    cmd = [
        sys.executable,
        "-m",
        "convert",
        "convert",
        str(model.path),
        "-o",
        str(out),
        "--quant",
        "Q8_0",
        "--threads",
        "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not _partials(outdir) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail(f"convert ended before it could be killed: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()  # type: ignore[union-attr]
    left = _partials(outdir)
    assert left and not out.exists(), "SIGKILL leaves the temp file and no output"
    assert all(f"@{proc.pid}-" in p.name for p in left)
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert out.is_file() and _partials(outdir) == []
