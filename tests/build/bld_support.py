"""Helpers shared by the build tests (a module of its own: `conftest` would be tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

RECIPE = """\
# two adapters over a tiny model
base = "../models/base"
quant = "Q4_K_M"
output = "out/bot.gguf"
system_prompt = "You are terse."

[[adapter]]
path = "../adapters/a1"

[[adapter]]
path = "../adapters/a2"
scale = 0.5
"""


@dataclass
class Project:
    root: Path
    home: Path

    @property
    def recipe(self) -> Path:
        return self.root / "build" / "bot.toml"

    @property
    def out(self) -> Path:
        return self.root / "build" / "out" / "bot.gguf"

    @property
    def lock(self) -> Path:
        return self.root / "build" / "out" / "bot.gguf.lock.json"

    def adapter(self, name: str) -> Path:
        return self.root / "adapters" / name

    def write(self, text: str, name: str = "bot") -> Path:
        path = self.root / "build" / f"{name}.toml"
        path.write_text(text)
        return path


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))
