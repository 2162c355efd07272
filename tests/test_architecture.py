"""The house rules as checks: the import-linter contracts in pyproject.toml hold, and they catch a break."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project)}  # this tree's packages, not the installed ones
    return subprocess.run(
        [str(LINT), "--config", str(project / "pyproject.toml"), "--no-cache"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )


def test_the_contracts_hold() -> None:
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "4 kept, 0 broken" in r.stdout


def test_a_core_module_importing_the_tui_breaks_them(tmp_path: Path) -> None:
    for name in ("assistant", "convert"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    db = tmp_path / "assistant" / "db.py"
    db.write_text(db.read_text() + "\n\ndef _ui() -> None:\n    from .tui import app  # noqa: F401\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "BROKEN" in r.stdout and "assistant.db -> assistant.tui.app" in r.stdout
