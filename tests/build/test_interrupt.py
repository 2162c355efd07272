"""Ctrl+C during `build`'s quality measurement: exit 130 with one line, nothing installed, no scratch left."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cvt_models
import pytest
from bld_support import ROOT
from support.interrupting import assert_stopped_cleanly, run_and_interrupt

pytestmark = pytest.mark.slow


def test_ctrl_c_stops_build_while_it_measures(tmp_path: Path) -> None:
    cvt_models.make_decoder(tmp_path / "base", hidden=512, heads=8, kv_heads=4, layers=12, ffn=2048, std=0.06)
    (tmp_path / "build").mkdir()
    recipe = tmp_path / "build" / "m.toml"
    recipe.write_text('base = "../base"\nquant = "Q8_0"\noutput = "out/m.gguf"\n')
    out_dir = tmp_path / "build" / "out"
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "HF_HUB_CACHE"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), ASSISTANT_HOME=str(home))

    def measuring() -> bool:  # the F32 reference is written: the quality measurement runs on llama.cpp
        return any(out_dir.glob("*.tmp-partial/F32.gguf"))

    r = run_and_interrupt(
        [sys.executable, "-m", "assistant", "build", str(recipe)],
        busy=measuring,
        env=env,
        cwd=ROOT,
        logs=tmp_path / "logs",
    )
    assert_stopped_cleanly(r)
    assert list(out_dir.iterdir()) == []  # no model, no lock, no scratch directory
