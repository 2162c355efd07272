"""Ctrl+C during `assistant bench`: exit 130 with one line (it used to be dropped inside llama.cpp)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from support.interrupting import assert_stopped_cleanly, run_and_interrupt

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.slow


def test_ctrl_c_stops_bench(home_with_default: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env["ASSISTANT_HOME"] = str(home_with_default)
    logs = tmp_path / "logs"
    r = run_and_interrupt(
        [sys.executable, "-m", "assistant", "bench", "--no-rss", "--rounds", "3"],
        busy=lambda: bool((logs / "stderr").read_text().strip()),  # its progress: the rounds are running
        env=env,
        cwd=ROOT,
        logs=logs,
    )
    assert_stopped_cleanly(r)
