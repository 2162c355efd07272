"""The results file: one JSON line per finished answer, appended and fsync'd as it comes, so a killed
run loses at most the answer it was writing; ``--resume`` reads it back and skips what is done.

The first line records the run (question file, setups, models, options): resuming with other
options is refused rather than mixing answers of two runs. It is an append-only log, not a file
replaced whole (atomic_writer): a torn last line (the kill) is cut off when it is reopened.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import UsageError

HEADER = "eval_run"


def run_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


class ResultsFile:
    """Rows of one run, read back on resume, appended one durable line at a time."""

    def __init__(self, path: Path, config: dict[str, Any], *, resume: bool) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume and path.is_file():
            self._read(config)
            self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 (held open for the run)
        else:
            self._fh = open(path, "w", encoding="utf-8")  # noqa: SIM115
            self._write({HEADER: config})

    def _read(self, config: dict[str, Any]) -> None:
        data = self.path.read_bytes()
        good = data[: data.rfind(b"\n") + 1]  # a kill mid-line leaves a torn last line
        lines = good.decode("utf-8", errors="replace").splitlines()
        try:
            header = json.loads(lines[0]).get(HEADER) if lines else None
        except ValueError:
            header = None
        if header is None:
            raise UsageError(f"{self.path}: not an `assistant eval` results file; give another --results")
        if header != config:
            changed = sorted(k for k in set(header) | set(config) if header.get(k) != config.get(k))
            raise UsageError(
                f"{self.path}: written by a run with other {', '.join(changed)}; "
                "drop --resume to start over, or resume with the same options"
            )
        for n, line in enumerate(lines[1:], start=2):
            try:
                self.rows.append(json.loads(line))
            except ValueError:
                raise UsageError(
                    f"{self.path} line {n}: not valid JSON; drop --resume to start over"
                ) from None
        if len(good) != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(len(good))

    @property
    def done(self) -> set[tuple[str, str]]:
        return {(r["setup"], r["id"]) for r in self.rows}

    def _write(self, obj: dict[str, Any]) -> None:
        self._fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, row: dict[str, Any]) -> None:
        self._write(row)
        self.rows.append(row)

    def close(self) -> None:
        self._fh.close()
