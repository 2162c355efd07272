"""`assistant bench`: progress that says what runs (with an ETA at a terminal) and ratios whose
direction cannot be misread (issue 12, item 26). The real command on the default model, with the
smallest settings (one round, 64 tokens); the default run's wall time is measured by hand and
recorded in docs/BENCHMARKS.md, not asserted here."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.engine.bench import BenchFigures, BenchReport, speedup, versus

ROOT = Path(__file__).resolve().parents[2]


def test_speedups_read_the_same_way_for_times_and_rates() -> None:
    # a shorter time and a higher rate are both "faster"; the old ratio column said 0.79x for a
    # first token that came 1.27x sooner, and 1.07x for a decode that was 1.07x faster
    assert versus(speedup(110, 140, lower_is_better=True)) == "1.27x faster"
    assert versus(speedup(100.9, 94.0, lower_is_better=False)) == "1.07x faster"
    assert versus(speedup(196, 132, lower_is_better=True)) == "1.48x slower"
    assert versus(speedup(90, 100, lower_is_better=False)) == "1.11x slower"
    assert versus(speedup(100.2, 100, lower_is_better=False)) == "same (1.00x)"
    assert versus(speedup(0, 100, lower_is_better=False)) == "-"


def _bench_at_a_terminal(home: Path, *args: str) -> tuple[int, str, str]:
    """Run bench with stderr on a pseudo-terminal (as a user sees it), stdout on a pipe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "HF_"))}
    env.update(ASSISTANT_HOME=str(home), HF_HUB_OFFLINE="1")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "assistant", "bench", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
        cwd=ROOT,
        text=True,
    )
    os.close(follower)
    err = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        err += chunk
    os.close(leader)
    out = proc.stdout.read() if proc.stdout else ""
    return proc.wait(timeout=600), out, err.decode(errors="replace")


@pytest.mark.slow
def test_bench_shows_its_steps_with_an_eta_and_says_faster_or_slower(home_with_default: Path) -> None:
    code, out, err = _bench_at_a_terminal(home_with_default, "--rounds", "1", "--no-rss")
    assert code == 0, out + err
    steps = re.findall(r"\[(\d+)/(\d+)\] ([^\r\x1b·]+)", err)
    # one `assistant ask` process, the loads, then each engine: four steps, each saying what runs
    assert [(int(a), int(b)) for a, b, _ in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)], err
    whats = " | ".join(w.strip() for *_, w in steps)
    assert "`assistant ask` process 1/1" in whats and "loading the model" in whats
    assert "assistant's engine" in whats and "llama-cpp-python's loop" in whats
    assert re.search(r"about \d+ (s|min) left", err), err  # the ETA, from the second step on
    rows = [line for line in out.splitlines() if re.match(r"(load|prefill|decode|first token)", line)]
    assert len(rows) == 5, out
    for row in rows:
        assert re.search(r"  (\d+\.\d\dx (faster|slower)|same \(1\.00x\))$", row), row
    assert "ratio" not in out  # no bare ratio whose direction changes per row


def test_json_speedups_say_what_they_mean() -> None:
    r = BenchReport("m.gguf", 2, 512, 128, 3, peak_rss_mb=252.0, ask_decode_tps=117.7)
    r.ours = BenchFigures(load_ms=196, prefill_tps=330, decode_tps=100.9, ttft_ms=110)
    r.reference = BenchFigures(load_ms=132, prefill_tps=303, decode_tps=94.0, ttft_ms=140)
    d = r.as_dict()
    assert "above 1: faster" in d["speedup_meaning"]
    assert d["speedup"] == {
        "load_ms": 0.673,  # slower
        "prefill_tps": 1.089,
        "decode_tps": 1.073,
        "ttft_ms": 1.273,  # the first token came sooner: faster, not "0.79x"
        "ask_decode_tps": 1.252,
    }
