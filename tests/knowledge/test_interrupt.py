"""Ctrl+C during `index add` and `index sync`: exit 130 at once, the index consistent, a rerun continues.

SIGINT used to land inside llama.cpp's abort callback (asked after every graph node of an
embedding), where ctypes printed "Exception ignored ... KeyboardInterrupt" and went on.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from support.interrupting import assert_stopped_cleanly, run_and_interrupt

from assistant.knowledge.store import KnowledgeStore

from .conftest import ROOT, assert_consistent

pytestmark = pytest.mark.slow

N_FILES = 160  # ~300 tokens each, two chunks: five write batches of 64 chunks, ~12 s of embedding


def _corpus(root: Path) -> Path:
    rng = random.Random(12)
    words = [f"{a}{b}" for a in ("tor", "vel", "min", "sar", "qua", "lem", "dor", "pix") for b in "aeiouy"]
    root.mkdir()
    for i in range(N_FILES):
        paras = [" ".join(rng.choice(words) for _ in range(60)) + "." for _ in range(4)]
        (root / f"note{i:03d}.txt").write_text(f"Note {i}\n\n" + "\n\n".join(paras) + "\n")
    return root


def _documents(kb: Path) -> list[object]:
    """Committed documents, read as another process would ([] while the file is not there yet)."""
    if not kb.exists():
        return []
    try:
        s = KnowledgeStore(kb, readonly=True)
    except Exception:
        return []
    try:
        return list(s.documents())
    except Exception:
        return []
    finally:
        s.close()


def _check(kb: Path) -> int:
    s = KnowledgeStore(kb, readonly=True)
    try:
        assert_consistent(s)
        return sum(1 for d in s.documents() if d.complete)
    finally:
        s.close()


def test_ctrl_c_stops_index_add_and_sync_and_a_rerun_continues(kb_home: Path, tmp_path: Path) -> None:
    docs = _corpus(tmp_path / "notes")
    kb = tmp_path / "kb.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env["ASSISTANT_HOME"] = str(kb_home)
    base = [sys.executable, "-m", "assistant", "index"]  # --threads 1: no OpenMP spinning on a busy machine

    r = run_and_interrupt(
        [*base, "add", str(docs), "--kb", str(kb), "--threads", "1"],
        busy=lambda: len(_documents(kb)) >= 5,
        env=env,
        cwd=ROOT,
        logs=tmp_path / "add",
    )
    assert_stopped_cleanly(r)
    after_add = _check(kb)
    assert 5 <= after_add < N_FILES

    r = run_and_interrupt(
        [*base, "sync", "--kb", str(kb), "--threads", "1"],
        busy=lambda: len(_documents(kb)) >= after_add + 5,
        env=env,
        cwd=ROOT,
        logs=tmp_path / "sync",
    )
    assert_stopped_cleanly(r)
    after_sync = _check(kb)
    assert after_add < after_sync < N_FILES

    done = subprocess.run(
        [*base, "sync", "--kb", str(kb), "--threads", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert _check(kb) == N_FILES
