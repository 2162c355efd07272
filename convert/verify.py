"""``assistant verify MODEL.gguf``: is this GGUF what its lock says, and are its inputs still the same?

Checks, each reported as ok / differs / not checked:

1. the GGUF's sha256 and size against ``output`` in the lock; on a mismatch the header and
   every tensor are hashed again, so the report names what changed;
2. the provenance record embedded in the GGUF against the one in the lock;
3. the lock's own input list against that provenance (a hand-edited lock);
4. the recipe and every input file that is present here (located from the recipe's place as
   the lock records it, else from the absolute path of the build machine, else in the local
   Hugging Face cache at the recorded commit): hashed again. Inputs that are not present are
   reported and not counted as differences (a deployment site usually has only the GGUF).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import ModelNotFoundError
from assistant.io import sha256_file

from . import provenance as prov
from .lock import hash_gguf, lock_path_for, read_lock
from .recipe import expand, show


@dataclass
class Check:
    subject: str
    status: str  # "ok", "differs", "missing" (not present or not checkable here; not counted), "note"
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "status": self.status, "detail": self.detail}


@dataclass
class VerifyReport:
    model: Path
    lock: Path | None  # None: no lock; checked against the provenance embedded in the GGUF
    checks: list[Check] = field(default_factory=list)

    @property
    def differences(self) -> list[Check]:
        return [c for c in self.checks if c.status == "differs"]

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "lock": str(self.lock) if self.lock is not None else None,
            "against": "lock" if self.lock is not None else "embedded provenance",
            "ok": self.ok,
            "checks": [c.as_dict() for c in self.checks],
        }


def _diff_json(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths (dotted, [i] for lists) where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(a.keys() | b.keys()):
            p = f"{path}.{k}" if path else k
            if k not in a or k not in b:
                out.append(p)
            else:
                out += _diff_json(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path} (length {len(a)} vs {len(b)})"]
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += _diff_json(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [path]


def _short(h: Any) -> str:
    return f"{str(h)[:16]}…" if isinstance(h, str) and len(h) > 16 else str(h)


def _check_output(report: VerifyReport, model: Path, lock: dict[str, Any]) -> None:
    want = lock["output"]
    have = hash_gguf(model)
    if have["sha256"] == want["sha256"]:
        report.checks.append(
            Check("output", "ok", f"sha256 {_short(have['sha256'])} ({have['size']:,} bytes)")
        )
        return
    where = []
    if have["size"] != want.get("size"):
        where.append(f"size {have['size']:,} bytes, the lock says {want.get('size'):,}")
    if (
        "header_sha256" in have
        and want.get("header_sha256")
        and have["header_sha256"] != want["header_sha256"]
    ):
        where.append("the header (metadata or tensor table) differs")
    if "tensors" in have and isinstance(want.get("tensors"), dict):
        old, new = want["tensors"], have["tensors"]
        changed = [n for n in new if n in old and old[n] != new[n]]
        added = [n for n in new if n not in old]
        gone = [n for n in old if n not in new]
        for label, names in (
            ("tensor data differs", changed),
            ("new tensors", added),
            ("missing tensors", gone),
        ):
            if names:
                more = f" and {len(names) - 5} more" if len(names) > 5 else ""
                where.append(f"{label}: {', '.join(names[:5])}{more}")
    elif "tensors" not in have:
        where.append("the GGUF header cannot be read")
    detail = f"{show(model)}: sha256 {_short(have['sha256'])}, the lock says {_short(want['sha256'])}"
    report.checks.append(Check("output", "differs", detail + ("; " + "; ".join(where) if where else "")))


def _check_provenance(report: VerifyReport, model: Path, lock: dict[str, Any]) -> dict[str, Any] | None:
    from assistant.errors import ModelError
    from assistant.models.gguf_info import read_gguf_info

    try:
        value = read_gguf_info(model).get(prov.KEY)
    except ModelError as exc:
        report.checks.append(Check("provenance", "differs", f"cannot read the GGUF header: {exc}"))
        return None
    if value is None:
        report.checks.append(Check("provenance", "differs", f"{show(model)} has no {prov.KEY} metadata"))
        return None
    try:
        record = json.loads(str(value))
    except ValueError:
        report.checks.append(Check("provenance", "differs", f"{prov.KEY} in {show(model)} is not valid JSON"))
        return None
    diffs = _diff_json(record, lock["provenance"])
    if diffs:
        more = f" and {len(diffs) - 6} more" if len(diffs) > 6 else ""
        report.checks.append(
            Check("provenance", "differs", f"embedded record and lock differ at {', '.join(diffs[:6])}{more}")
        )
    else:
        report.checks.append(Check("provenance", "ok", "the embedded record is the lock's"))
    return record


def _check_lock_consistency(report: VerifyReport, lock: dict[str, Any]) -> None:
    record, inputs = lock["provenance"], lock["inputs"]

    def table(files: Any) -> dict[str, str]:
        return {str(f.get("file")): str(f.get("sha256")) for f in files or [] if isinstance(f, dict)}

    pairs = [("base", (record.get("base") or {}).get("files"), inputs["base"].get("files"))]
    rec_ads = record.get("adapters") or []
    for i, a in enumerate(inputs.get("adapters") or [], start=1):
        pairs.append(
            (f"adapter[{i}]", (rec_ads[i - 1] if i - 1 < len(rec_ads) else {}).get("files"), a.get("files"))
        )
    bad = [name for name, x, y in pairs if table(x) != table(y)]
    if len(rec_ads) != len(inputs.get("adapters") or []):
        bad.append("number of adapters")
    settings = (record.get("recipe") or {}).get("settings_sha256")
    if settings not in (None, (lock.get("recipe") or {}).get("settings_sha256")):
        bad.append("recipe settings_sha256")
    if bad:
        report.checks.append(
            Check(
                "lock", "differs", f"the lock's inputs disagree with its provenance record: {', '.join(bad)}"
            )
        )


def _hub_snapshot(revision: dict[str, Any] | None) -> Path | None:
    if not revision or not revision.get("repo") or not revision.get("commit"):
        return None
    from .build import _hub_cache_dir

    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                revision["repo"],
                revision=revision["commit"],
                local_files_only=True,
                cache_dir=_hub_cache_dir(),
            )
        )
    except Exception:
        return None


def _locate(entry: dict[str, Any], recipe_dir: Path | None, home: Path) -> Path | None:
    """Where the input's files are here: its root directory (files are recorded relative to it)."""
    spec, recorded_root, recorded_path = entry.get("spec"), entry.get("root"), entry.get("path")
    candidates: list[Path] = []
    if spec and recipe_dir is not None:
        p = expand(spec, recipe_dir, home)
        candidates.append(p if p.is_dir() else p.parent)
    if recorded_root:
        candidates.append(Path(recorded_root))
    elif recorded_path:
        candidates.append(Path(recorded_path) if Path(recorded_path).is_dir() else Path(recorded_path).parent)
    snap = _hub_snapshot(entry.get("revision"))
    if snap is not None:
        candidates.append(snap)
    files = [f.get("file") for f in entry.get("files") or [] if isinstance(f, dict)]
    for c in candidates:
        if files and all((c / f).is_file() for f in files if f):
            return c
    for c in candidates:
        if c.is_dir() and any((c / f).is_file() for f in files if f):
            return c
    return None


def _check_input(report: VerifyReport, label: str, entry: dict[str, Any], root: Path | None) -> None:
    files = [f for f in entry.get("files") or [] if isinstance(f, dict) and f.get("file")]
    if root is None:
        report.checks.append(
            Check(label, "missing", f"{entry.get('spec') or entry.get('path')}: not present here")
        )
        return
    diffs, missing = [], []
    for f in files:
        p = root / f["file"]
        if not p.is_file():
            missing.append(f["file"])
            continue
        size = p.stat().st_size
        digest = sha256_file(p)
        if digest != f.get("sha256"):
            diffs.append(
                f"{show(p)}: sha256 {_short(digest)} ({size:,} bytes), the lock says "
                f"{_short(f.get('sha256'))} ({f.get('size', 0):,} bytes)"
            )
    if diffs:
        report.checks.append(Check(label, "differs", "; ".join(diffs)))
    elif missing and len(missing) == len(files):
        report.checks.append(
            Check(label, "missing", f"{show(root)}: none of its {len(files)} files are here")
        )
    else:
        note = f" ({len(missing)} not present: {', '.join(missing)})" if missing else ""
        report.checks.append(
            Check(label, "ok", f"{show(root)}: {len(files) - len(missing)} file(s) hash the same{note}")
        )


def _recipe_changes(recipe_file: Path, rec: dict[str, Any], home: Path) -> str:
    """Which settings of the recipe changed since the build, as far as it can be read here."""
    from assistant.errors import AssistantError

    from .build import _changed_settings
    from .recipe import load_recipe

    try:
        now = load_recipe(recipe_file, home).settings()
    except AssistantError:
        return "changed"
    changed = _changed_settings(rec.get("settings") or {}, now)
    if changed:
        return f"changed: {', '.join(changed)}"
    return "changed in comments, layout, description or check_base only (`assistant build` records it)"


def verify_model(model: Path, lock_path: Path | None = None, home: Path | None = None) -> VerifyReport:
    """Compare ``model`` with its lock (``MODEL.lock.json`` unless given) and with the inputs present."""
    model = Path(os.path.normpath(Path(model).expanduser().absolute()))
    if not model.is_file():
        raise ModelNotFoundError(f"{show(model)}: no such model file")
    lock_file = Path(lock_path).expanduser().absolute() if lock_path else lock_path_for(model)
    if lock_path is None and not lock_file.exists():
        return verify_embedded(model, lock_file, home or model.parent)
    lock = read_lock(lock_file)
    home = home or model.parent
    report = VerifyReport(model, lock_file)
    _check_output(report, model, lock)
    _check_provenance(report, model, lock)
    _check_lock_consistency(report, lock)

    rec = lock.get("recipe") or {}
    candidates = []
    if rec.get("relpath"):
        candidates.append(lock_file.parent / str(rec["relpath"]))
    if rec.get("path"):
        candidates.append(Path(str(rec["path"])))
    recipe_file = next((Path(os.path.normpath(c)) for c in candidates if c.is_file()), None)
    if recipe_file is None:
        report.checks.append(
            Check("recipe", "missing", f"{rec.get('relpath') or rec.get('path')}: not present here")
        )
        recipe_dir = None
    else:
        digest = sha256_file(recipe_file)
        if digest == rec.get("sha256"):
            report.checks.append(Check("recipe", "ok", f"{show(recipe_file)} is unchanged"))
        else:
            what = _recipe_changes(recipe_file, rec, home)
            report.checks.append(
                Check(
                    "recipe",
                    "differs",
                    f"{show(recipe_file)} {what} (sha256 {_short(digest)}, the lock says {_short(rec.get('sha256'))})",
                )
            )
        recipe_dir = recipe_file.parent

    inputs = lock["inputs"]
    _check_input(report, "base", inputs["base"], _locate(inputs["base"], recipe_dir, home))
    for i, entry in enumerate(inputs.get("adapters") or [], start=1):
        _check_input(report, f"adapter[{i}]", entry, _locate(entry, recipe_dir, home))
    if isinstance(inputs.get("eval_text"), dict):
        entry = inputs["eval_text"]
        _check_input(report, "eval_text", entry, _locate(entry, recipe_dir, home))
    return report


def verify_embedded(model: Path, lock_file: Path, home: Path) -> VerifyReport:
    """No lock (a ``convert`` output): check what the provenance embedded in the GGUF allows.

    The inputs' sha256 (where the files are present), the output type and the tool version can
    be checked; the GGUF's own sha256 cannot (nothing records it), and is reported as skipped.
    """
    from assistant.errors import RecipeError
    from assistant.models.gguf_info import read_gguf_info

    from . import TOOL_NAME, __version__
    from .build import embedded_provenance

    record = embedded_provenance(model)
    if record is None:
        raise RecipeError(
            f"{show(lock_file)}: no such lock file, and {show(model)} has no embedded provenance ({prov.KEY}); "
            "there is nothing to verify it against"
        )
    report = VerifyReport(model, None)
    report.checks.append(
        Check(
            "output",
            "missing",
            f"no lock file {lock_file.name}: nothing records the GGUF's own sha256 (`assistant build` writes one)",
        )
    )
    kind = record.get("kind", "model")
    report.checks.append(Check("provenance", "ok", f"embedded record of a {kind} read"))
    want = str(record.get("output_type", ""))
    have = read_gguf_info(model).quant_type
    if kind == "model" and want:
        same = have.upper() == want.upper()
        report.checks.append(
            Check(
                "type", "ok" if same else "differs", f"{have}" + ("" if same else f", the record says {want}")
            )
        )
    tool, version = record.get("tool"), record.get("version")
    if (tool, version) == (TOOL_NAME, __version__):
        report.checks.append(Check("tool", "ok", f"made by {tool} {version}, the version installed here"))
    else:
        report.checks.append(
            Check("tool", "note", f"made by {tool} {version}; installed here: {TOOL_NAME} {__version__}")
        )
    entries = [("base", record.get("base"))]
    entries += [(f"adapter[{i}]", a) for i, a in enumerate(record.get("adapters") or [], start=1)]
    for label, entry in entries:
        if not isinstance(entry, dict):
            continue
        root = _locate({"path": entry.get("path"), "files": entry.get("files")}, None, home)
        _check_input(report, label, entry | {"spec": entry.get("path")}, root)
    return report
