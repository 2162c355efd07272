"""Fixtures for build recipes: a scratch project tree (tiny generated HF model, two PEFT adapters,
a recipe), and the real `assistant` CLI run in process (fast) with its exit status."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CONVERT_TESTS = HERE.parent / "convert"
if str(CONVERT_TESTS) not in sys.path:
    sys.path.insert(0, str(CONVERT_TESTS))

if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import cvt_models  # noqa: E402  (tests/convert: the tiny model and adapter generators)
from bld_support import RECIPE, ROOT, Project  # noqa: E402

MINILM_SRC = ROOT / "models" / "sources" / "all-MiniLM-L6-v2"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the network: the Hub is offline and its cache is a scratch dir."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("ASSISTANT_HOME", raising=False)


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/base (rows of 256 so the k-quants are really used) and adapters a1 (every projection), a2."""
    root = tmp_path_factory.mktemp("sources")
    model = cvt_models.make_decoder(
        root / "models" / "base", hidden=256, heads=4, kv_heads=2, ffn=512, layers=2, std=0.06
    )
    cvt_models.make_adapter(root / "adapters" / "a1", model, seed=1)
    cvt_models.make_adapter(root / "adapters" / "a2", model, seed=2, targets=["q_proj", "down_proj"])
    return root


@pytest.fixture
def project(tmp_path: Path, sources: Path) -> Project:
    root = tmp_path / "proj"
    shutil.copytree(sources, root)
    (root / "build").mkdir()
    p = Project(root, tmp_path / "home")
    p.write(RECIPE)
    return p


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def assistant(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``assistant ARGS`` in this process (its real main(): one-line errors, exit status)."""
    from assistant.cli import main

    def run(*args: str | os.PathLike[str], home: Path | None = None) -> Run:
        argv = [str(a) for a in args]
        if home is not None:
            argv = ["--home", str(home), *argv]
        root = logging.getLogger()
        saved = (root.handlers[:], root.level, logging.getLogger("assistant").level)
        capsys.readouterr()
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            root.handlers[:], root.level = saved[0], saved[1]
            logging.getLogger("assistant").setLevel(saved[2])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def minilm_src() -> Path:
    if not (MINILM_SRC / "model.safetensors").is_file():
        pytest.fail(f"{MINILM_SRC} is missing: run ./setup.sh (it extracts all-MiniLM-L6-v2) first")
    return MINILM_SRC
