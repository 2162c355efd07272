"""Fixtures for the terminal UI tests (helpers in tui_helpers.py, the fake engine in tui_fakes.py).

This directory is put on sys.path so tests import those two modules by name;
their names are unique so no other test directory's modules can shadow them.
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tui_fakes import FakeRetriever
from tui_helpers import SOURCES, Harness, fill_home

from assistant.home import Home


@pytest.fixture
def tui_home(tmp_path: Path) -> Home:
    """A model home with two chat models and an adapter (GGUF headers)."""
    return fill_home(tmp_path / "home")


@pytest.fixture
def snapshot_home() -> Any:
    """A home at a fixed path for snapshots (the palette lists its models)."""
    root = Path(tempfile.gettempdir()) / "assistant-tui-snapshots" / "home"
    shutil.rmtree(root, ignore_errors=True)
    yield fill_home(root)
    shutil.rmtree(root.parent, ignore_errors=True)


@pytest.fixture
def harness(tui_home: Home) -> Any:
    h = Harness(tui_home)
    yield h
    h.release()


@pytest.fixture
def make_harness(tui_home: Home) -> Any:
    made: list[Harness] = []

    def make(**engine_kwargs: Any) -> Harness:
        h = Harness(tui_home, **engine_kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.release()


@pytest.fixture
def kb() -> FakeRetriever:
    return FakeRetriever(list(SOURCES))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: Any) -> bool | None:
    """Run `async def` tests in a fresh event loop (Textual's Pilot needs one); no plugin needed."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**args))
    return True
