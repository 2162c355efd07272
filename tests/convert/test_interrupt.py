"""Ctrl+C during `convert`: exit 130 with one line, no output and no partial file left behind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cvt_models
import pytest
from support.interrupting import assert_stopped_cleanly, run_and_interrupt

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.slow


def _partial_bytes(out_dir: Path) -> int:
    return sum(p.stat().st_size for p in out_dir.glob("*.tmp-partial*") if p.is_file())


def test_ctrl_c_stops_convert_and_leaves_nothing(tmp_path: Path) -> None:
    # ~100M parameters: seconds of merging and quantizing, so the SIGINT comes mid-write
    model = cvt_models.make_decoder(tmp_path / "base", hidden=512, heads=8, kv_heads=4, layers=24, ffn=2048)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "m.gguf"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env["HF_HUB_OFFLINE"] = "1"
    r = run_and_interrupt(
        [sys.executable, "-m", "assistant", "convert", str(model.path), "-o", str(out), "--quant", "Q8_0"],
        busy=lambda: _partial_bytes(out_dir) > 1 << 20,
        env=env,
        cwd=ROOT,
        logs=tmp_path / "logs",
    )
    assert_stopped_cleanly(r)
    assert not out.exists()
    assert list(out_dir.iterdir()) == []  # no partial file, no lock
