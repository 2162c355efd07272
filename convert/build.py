"""``assistant build``: a recipe -> a merged, quantized GGUF + ``OUT.lock.json`` + a quality report.

:func:`plan_build` reads the recipe, resolves its inputs (local paths, Hub snapshots with
their commit), opens base and adapters to check they fit (shapes, targets,
``base_model_name_or_path``), hashes every input and compares with the lock: the plan says
whether to build and why. Every bad input is a :class:`RecipeError` raised here, before
anything is written. :func:`run_build` converts into a scratch directory next to OUT, builds
the unquantized merge (F32; F16 above 1B parameters) as the quality reference, measures,
then moves the GGUF into place and writes the lock.

What the GGUF records. ``convert`` embeds a provenance record (inputs' sha256, adapters,
scales, type, tool version). For a recipe build the base and adapters are recorded as the
recipe writes them (relative to the recipe file, ``{home}/...`` or a Hub id) instead of
absolute paths, plus the recipe's name, the sha256 of the settings that decide the output
(:meth:`Recipe.output_settings`) and resolved Hub commits. So the GGUF depends only on the
recipe's settings, the input bytes and the tools (not on comments): the same recipe built in
another checkout, another model home or another machine gives the same bytes, and two
builds can be compared by sha256. Machine-specific facts (absolute paths, build time,
library hashes) go to the lock only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import ConversionError, RecipeError, StorageError
from assistant.io import PARTIAL_SUFFIX, clean_partials, fsync_dir, partial_prefix, sha256_file

from . import provenance as prov
from .lock import (
    LOCK_TOOL,
    LOCK_VERSION,
    TRAINING_RECORD,
    hash_gguf,
    lock_path_for,
    read_lock,
    tool_versions,
    write_lock,
)
from .quality import AUTO_ORDER, DEFAULT_EVAL_TEXT, EmbeddingEval, NextTokenEval, Report
from .recipe import DEFAULT_MAX_KLD, DEFAULT_MIN_COSINE, Recipe, Source, load_recipe, show
from .source import ADAPTER_PATTERNS, MODEL_PATTERNS

log = logging.getLogger(__name__)

REF_F32_MAX_BYTES = 4 << 30  # reference in F32 up to 1B parameters, F16 above
# Below this size llama.cpp's thread synchronisation costs more than a second thread gives, and
# on a busy 2-core machine a spinning second thread can make the measurement 5x slower.
SMALL_MODEL_PARAMS = 50_000_000
_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<commit>[0-9a-f]{40})(?:/|$)")


@dataclass
class Resolved:
    """A recipe source made local: the directory or file, and its Hub revision when known."""

    source: Source
    path: Path
    revision: dict[str, str] | None = None


@dataclass
class Inspection:
    arch: str
    kind: str  # "chat" or "embedding"
    n_params: int
    base_files: list[Path]
    base_root: Path
    adapter_files: list[list[Path]]


@dataclass
class Plan:
    recipe: Recipe
    base: Resolved
    adapters: list[Resolved]
    inspection: Inspection
    inputs: dict[str, Any]
    budget: dict[str, float] | None
    reasons: list[str] = field(default_factory=list)  # why it builds; empty: up to date
    notes: list[str] = field(default_factory=list)
    old_lock: dict[str, Any] | None = None
    refresh_lock: bool = False  # up to date, but the recipe's text (comments) changed

    @property
    def needed(self) -> bool:
        return bool(self.reasons)

    @property
    def lock_path(self) -> Path:
        return lock_path_for(self.recipe.output)


@dataclass
class BuildResult:
    recipe: Recipe
    out: Path
    lock_path: Path
    built: bool
    reasons: list[str]
    notes: list[str]
    lock: dict[str, Any]
    quality: Report | None = None
    seconds: float = 0.0

    @property
    def output_type(self) -> str:
        return str(self.lock["output"]["type"])

    def as_dict(self) -> dict[str, Any]:
        out = self.lock["output"]
        return {
            "recipe": str(self.recipe.path),
            "output": str(self.out),
            "lock": str(self.lock_path),
            "status": "built" if self.built else "up-to-date",
            "reasons": self.reasons,
            "notes": self.notes,
            "type": out["type"],
            "sha256": out["sha256"],
            "size_bytes": out["size"],
            "seconds": round(self.seconds, 3),
            "quality": self.lock.get("quality"),
        }


# ---------------------------------------------------------------------------------------------- inputs


def _hub_cache_dir() -> str | None:
    """The Hugging Face cache as the environment says now (huggingface_hub reads it once at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cache_revision(path: Path) -> dict[str, str] | None:
    """The repo and commit of a directory inside a Hugging Face cache snapshot."""
    m = _SNAPSHOT.search(path.as_posix())
    if not m:
        return None
    return {"repo": f"{m.group('org')}/{m.group('name')}", "commit": m.group("commit")}


def resolve_source(recipe: Recipe, src: Source, patterns: list[str]) -> Resolved:
    if src.path is not None:
        return Resolved(src, src.path, cache_revision(src.path))
    from .source import _offline

    offline = _offline()
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            str(src.repo),
            revision=src.revision,
            allow_patterns=patterns,
            local_files_only=offline,
            cache_dir=_hub_cache_dir(),
        )
    except Exception as exc:
        why = (
            "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set (download it on a connected "
            "machine, or give a local directory)"
            if offline
            else f"could not be downloaded from the Hugging Face Hub ({type(exc).__name__}: {_one_line(str(exc))})"
        )
        local_try = show(recipe.path.parent / src.spec)
        raise recipe.error(
            src.field, f"{src.spec}: no such local path ({local_try}) and the Hub repo {why}"
        ) from exc
    path = Path(local)
    rev = cache_revision(path) or {"repo": str(src.repo), "commit": path.name}
    rev["requested"] = src.revision or "main"
    return Resolved(src, path, rev)


def _norm_name(name: str) -> str:
    return name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower().removesuffix(".gguf")


def _base_names(base: Resolved, src: Any) -> set[str]:
    names = {src.path.name}
    if base.source.repo:
        names.add(base.source.repo)
    if base.revision:
        names.add(base.revision["repo"])
    if src.kind == "gguf":
        names.add(src.path.stem)
        for key, value, *_ in src.gguf_fields:
            if key in ("general.name", "general.basename") and isinstance(value, str):
                names.add(value)
    cfg_name = src.config.get("_name_or_path") if isinstance(src.config, dict) else None
    if isinstance(cfg_name, str) and cfg_name:
        names.add(cfg_name)
    return {n for n in names if n}


def _same_base(adapter_base: str, names: set[str]) -> bool:
    a = _norm_name(adapter_base)
    for n in names:
        b = _norm_name(n)
        if a == b or b.startswith(a + "."):
            return True
    return False


def inspect_inputs(recipe: Recipe, base: Resolved, adapters: list[Resolved]) -> Inspection:
    """Open base and adapters with the converter's own readers: the checks a conversion makes, up front."""
    from assistant.models.archs import EMBEDDING_ARCHITECTURES

    from .api import _adapter_targets
    from .peft import load_adapter
    from .source import open_base

    try:
        src = open_base(base.path)
    except ConversionError as exc:
        raise recipe.error("base", str(exc)) from exc
    opened = []
    try:
        names = _base_names(base, src)
        adapter_files = []
        for entry, res in zip(recipe.adapters, adapters, strict=True):
            fname = entry.source.field
            try:
                ad = load_adapter(res.path, entry.scale)
            except ConversionError as exc:
                raise recipe.error(fname, str(exc)) from exc
            opened.append(ad)
            try:
                _adapter_targets(src, [ad])  # shapes and target modules
            except ConversionError as exc:
                raise recipe.error(fname, str(exc)) from exc
            claimed = ad.config.get("base_model_name_or_path")
            if entry.check_base and isinstance(claimed, str) and claimed and not _same_base(claimed, names):
                raise recipe.error(
                    fname,
                    f"{entry.source.spec} was trained on {claimed!r} (base_model_name_or_path in adapter_config.json), "
                    f"but the base is {src.name!r}; use that base, or set check_base = false in this [[adapter]] "
                    "if it is the same model under another name",
                )
            adapter_files.append(ad.input_files())
        if opened:
            try:
                _adapter_targets(src, opened)
            except ConversionError as exc:
                raise recipe.error("adapter", str(exc)) from exc
        n_params = 0
        for t in src.tensors:
            n = 1
            for d in t.shape:
                n *= int(d)
            n_params += n
        kind = "embedding" if src.arch.name in EMBEDDING_ARCHITECTURES else "chat"
        root = src.path if src.path.is_dir() else src.path.parent
        return Inspection(src.arch.name, kind, n_params, list(src.files), root, adapter_files)
    finally:
        for ad in opened:
            ad.close()
        src.close()


def _records(files: list[Path], root: Path) -> list[dict[str, Any]]:
    return [prov.file_record(p, root) for p in files]


def training_record(adapter_dir: Path) -> dict[str, Any]:
    """``{"training": ...}``: how an adapter made by `assistant finetune` was trained (its training.json:
    data sha256s, settings, losses, versions, time), so the lock says what an update cost; else ``{}``."""
    path = adapter_dir / TRAINING_RECORD if adapter_dir.is_dir() else None
    if path is None or not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{path}: not a readable training record ({exc}); fix or remove it") from exc
    if not isinstance(record, dict):
        raise RecipeError(f"{path}: expected a JSON object, got {type(record).__name__}; fix or remove it")
    record.pop("paths", None)  # this machine's paths at training time, not part of what the model is
    return {"training": record}


def input_records(
    recipe: Recipe, base: Resolved, adapters: list[Resolved], insp: Inspection
) -> dict[str, Any]:
    text_path = recipe.eval_text or DEFAULT_EVAL_TEXT
    return {
        "base": {
            "spec": recipe.base.spec,
            "path": str(base.path),
            "root": str(insp.base_root),
            "revision": base.revision,
            "files": _records(insp.base_files, insp.base_root),
        },
        "adapters": [
            {
                "spec": res.source.spec,
                "path": str(res.path),
                "root": str(res.path),
                "scale": entry.scale,
                "revision": res.revision,
                "files": _records(files, res.path),
                **training_record(res.path),
            }
            for entry, res, files in zip(recipe.adapters, adapters, insp.adapter_files, strict=True)
        ],
        "eval_text": {
            "spec": recipe.eval_text_spec,
            "path": str(text_path),
            "root": str(text_path.parent),
            "files": _records([text_path], text_path.parent),
        },
    }


def _check_output(recipe: Recipe, base: Resolved, adapters: list[Resolved]) -> None:
    out = recipe.output
    dirs = [("base", base.path)] + [(r.source.field, r.path) for r in adapters]
    for field_name, p in dirs:
        if p.is_dir() and (out == p or out.is_relative_to(p) or out.resolve().is_relative_to(p.resolve())):
            raise recipe.error(
                "output",
                f"{recipe.output_spec} is inside the input directory of {field_name} ({show(p)}); write it elsewhere",
            )
        if p.is_file() and out.resolve() == p.resolve():
            raise recipe.error(
                "output", f"{recipe.output_spec} is the {field_name} file itself; write it elsewhere"
            )
    if recipe.eval_text is not None and out.resolve() == recipe.eval_text.resolve():
        raise recipe.error("output", f"{recipe.output_spec} is the eval_text file; write it elsewhere")
    if not recipe.output_explicit:
        _check_output_place(recipe)


def _check_output_place(recipe: Recipe) -> None:
    """A recipe writes only into the model home or its own directory tree (``-o`` chooses freely)."""
    real = recipe.output.resolve()  # symlinks anywhere on the way count where they lead
    roots = (recipe.home, recipe.path.parent)
    if any(real.is_relative_to(r.resolve()) for r in roots):
        return
    raise recipe.error(
        "output",
        f"{recipe.output_spec} ({show(real)}) is outside the model home ({show(recipe.home)}) and the recipe's "
        f"directory ({show(recipe.path.parent)}); write it under one of them, or choose the file with -o",
    )


def _budget(recipe: Recipe, kind: str) -> dict[str, float] | None:
    if not recipe.auto:
        return None
    if kind == "embedding":
        if recipe.max_kld is not None:
            raise recipe.error(
                "max_kld",
                "next-token KLD does not apply to an embedding model; set min_cosine (e.g. 0.999) instead",
            )
        return {"min_cosine": recipe.min_cosine if recipe.min_cosine is not None else DEFAULT_MIN_COSINE}
    if recipe.min_cosine is not None:
        raise recipe.error(
            "min_cosine", "applies to embedding models; for a chat model set max_kld (e.g. 0.05)"
        )
    return {"max_kld": recipe.max_kld if recipe.max_kld is not None else DEFAULT_MAX_KLD}


# ---------------------------------------------------------------------------------------------- status


def embedded_provenance(path: Path) -> dict[str, Any] | None:
    import json

    from assistant.errors import ModelError
    from assistant.models.gguf_info import read_gguf_info

    try:
        value = read_gguf_info(path).get(prov.KEY)
        record = json.loads(str(value)) if value else None
    except (ModelError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _diff_files(label: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    a = {f["file"]: f for f in old if isinstance(f, dict) and "file" in f}
    b = {f["file"]: f for f in new}
    out = []
    for name in sorted(a.keys() | b.keys()):
        if name not in b:
            out.append(f"{label}: {name} is no longer an input")
        elif name not in a:
            out.append(f"{label}: new input file {name}")
        elif a[name].get("sha256") != b[name]["sha256"]:
            out.append(f"{label}: {name} changed")
    return out


def _input_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    reasons = []
    ob, nb = old.get("base") or {}, new["base"]
    if (ob.get("revision") or {}).get("commit") != (nb.get("revision") or {}).get("commit"):
        reasons.append(f"base: Hub revision is now {(nb.get('revision') or {}).get('commit')}")
    reasons += _diff_files("base", ob.get("files") or [], nb["files"])
    oa = old.get("adapters") or []
    for i, na in enumerate(new["adapters"], start=1):
        prev = oa[i - 1] if i - 1 < len(oa) else {}
        if (prev.get("revision") or {}).get("commit") != (na.get("revision") or {}).get("commit"):
            reasons.append(f"adapter[{i}]: Hub revision is now {(na.get('revision') or {}).get('commit')}")
        reasons += _diff_files(f"adapter[{i}] {na['spec']}", prev.get("files") or [], na["files"])
    if len(oa) > len(new["adapters"]):
        reasons.append(f"{len(oa) - len(new['adapters'])} adapter(s) fewer")
    reasons += _diff_files(
        "eval_text", (old.get("eval_text") or {}).get("files") or [], new["eval_text"]["files"]
    )
    return reasons


# Settings that change neither the GGUF nor its quality report: a change only updates the lock.
_NO_REBUILD = {"description", "check_base"}


def _changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = [k for k in new if k not in ("adapters", *_NO_REBUILD) and old.get(k) != new[k]]
    oa, na = old.get("adapters") or [], new["adapters"]
    for i, a in enumerate(na, start=1):
        prev = oa[i - 1] if i - 1 < len(oa) else {}
        out += [f"adapter[{i}].{k}" for k in a if k not in _NO_REBUILD and prev.get(k) != a[k]]
    if len(oa) > len(na):
        out.append(f"{len(oa) - len(na)} adapter(s) removed")
    return out


def _version_notes(old: dict[str, Any]) -> list[str]:
    now = tool_versions()
    was = old.get("versions") or {}
    notes = []
    for key in ("edge_assistant", "llama_cpp_python", "llama_cpp_libs", "gguf", "numpy"):
        if was.get(key) != now.get(key):
            label = key.replace("_", "-") if key != "llama_cpp_libs" else "llama.cpp build"
            notes.append(
                f"built with another {label} than installed now; --force rebuilds with the current one"
            )
    return notes


def _status(plan: Plan, force: bool, repair: bool) -> None:
    recipe = plan.recipe
    out, lock_path = recipe.output, plan.lock_path
    old = None
    if force:
        plan.reasons.append("--force")
    if lock_path.exists():
        try:
            old = read_lock(lock_path)
        except RecipeError:
            if not (force or repair):
                raise
            plan.reasons.append("the lock is unreadable")
    if out.exists():
        if old is not None:
            actual = sha256_file(out)
            if actual != old["output"]["sha256"]:
                if not (force or repair):
                    raise RecipeError(
                        f"{show(out)} does not match its lock {show(lock_path)}: output.sha256 is "
                        f"{old['output']['sha256'][:16]}…, the file's is {actual[:16]}…; it changed after the build "
                        f"(`assistant verify {show(out)}` says where); rebuild it with --force"
                    )
                plan.reasons.append("the output does not match its lock")
        else:
            record = embedded_provenance(out)
            built_by = (record or {}).get("recipe", {}).get("name") if isinstance(record, dict) else None
            if not (force or repair):
                if record is None:
                    raise recipe.error(
                        "output",
                        f"{show(out)} exists and was not built by a recipe (no {lock_path.name}, no provenance); "
                        "move it away, choose another output, or pass --force to replace it",
                    )
                if built_by not in (None, recipe.name):
                    raise recipe.error(
                        "output",
                        f"{show(out)} was built by the recipe {built_by!r}, not {recipe.name!r}; "
                        "choose another output, or pass --force to replace it",
                    )
            plan.reasons.append(f"no lock file {lock_path.name}")
    elif old is None:
        plan.reasons.append("not built yet")
    else:
        plan.reasons.append("the output is missing")
    if old is not None:
        was = old.get("recipe") or {}
        changed = _changed_settings(was.get("settings") or {}, recipe.settings())
        if changed:
            plan.reasons.append(f"the recipe {recipe.where} changed: {', '.join(changed)}")
        elif was.get("sha256") != recipe.sha256:
            plan.refresh_lock = True  # the same build: the lock gets the new text
            plan.notes.append(
                f"the recipe {recipe.where} changed in comments, layout, description or check_base only; "
                "no rebuild needed"
            )
        plan.reasons.extend(_input_changes(old.get("inputs") or {}, plan.inputs))
        plan.notes.extend(_version_notes(old))
    plan.old_lock = old


def plan_build(
    recipe: Recipe | str | os.PathLike[str],
    home: Path,
    *,
    force: bool = False,
    repair: bool = False,
    output: str | os.PathLike[str] | None = None,
) -> Plan:
    """Check a recipe and its inputs and decide whether to build (nothing is written).

    ``repair``: an output that does not match its lock, or has none, is rebuilt instead of refused
    (``assistant setup`` uses it for the models it owns). ``output``: the user's -o, instead of
    the recipe's output (which must stay in the model home or the recipe's tree).
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, home, output)
    base = resolve_source(recipe, recipe.base, MODEL_PATTERNS)
    adapters = [resolve_source(recipe, a.source, ADAPTER_PATTERNS) for a in recipe.adapters]
    _check_output(recipe, base, adapters)
    insp = inspect_inputs(recipe, base, adapters)
    budget = _budget(recipe, insp.kind)
    plan = Plan(recipe, base, adapters, insp, input_records(recipe, base, adapters, insp), budget)
    _status(plan, force, repair)
    return plan


# ---------------------------------------------------------------------------------------------- build


def _within(row: Any, budget: dict[str, float]) -> bool:
    if "max_kld" in budget:
        return row.mean_kld is not None and row.mean_kld <= budget["max_kld"]
    return row.mean_cosine is not None and row.mean_cosine >= budget["min_cosine"]


def _install_lock(lock_path: Path, lock: dict[str, Any], out: Path) -> None:
    write_lock(lock_path, lock)
    with contextlib.suppress(OSError):  # as readable as the model it describes
        os.chmod(lock_path, out.stat().st_mode & 0o777)


def run_build(plan: Plan, *, threads: int | None = None, progress: Any = None) -> BuildResult:
    """Convert, measure against the unquantized merge, then install OUT and its lock."""
    from .api import convert_model
    from .quantize import default_threads

    started = time.monotonic()
    recipe, insp = plan.recipe, plan.inspection
    n_threads = threads or default_threads()
    out, lock_path = recipe.output, plan.lock_path
    text_path = recipe.eval_text or DEFAULT_EVAL_TEXT
    text_name = recipe.eval_text_spec or "the default eval text (convert/data/eval.txt)"
    text = text_path.read_text(encoding="utf-8")
    ref_type = "F32" if insp.n_params * 4 <= REF_F32_MAX_BYTES else "F16"
    revisions = {
        r.source.spec: r.revision["commit"]
        for r in [plan.base, *plan.adapters]
        if r.source.is_hub and r.revision
    }
    extra: dict[str, Any] = {"recipe": {"name": recipe.name, "settings_sha256": recipe.settings_sha256}}
    if revisions:
        extra["revisions"] = revisions
    names = (recipe.base.spec, [a.source.spec for a in recipe.adapters])
    specs = [(str(r.path), a.scale) for r, a in zip(plan.adapters, recipe.adapters, strict=True)]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_partials(out)  # scratch dirs and temp files of builds that were killed
        prefix = partial_prefix(out, "build-")
        work = Path(tempfile.mkdtemp(prefix=prefix, suffix=PARTIAL_SUFFIX, dir=out.parent))
    except OSError as exc:
        raise StorageError(
            f"cannot write into {show(out.parent)}: {exc.strerror}; check it is writable"
        ) from exc

    def make(q: str) -> Any:
        log.info("%s: converting to %s", recipe.name, q)
        return convert_model(
            plan.base.path,
            work / f"{q}.gguf",
            adapters=specs,
            quant=q,
            threads=n_threads,
            progress=progress,
            provenance_extra=extra,
            provenance_names=names,
            metadata=recipe.metadata,
        )

    try:
        evaluator: NextTokenEval | EmbeddingEval
        eval_threads = 1 if insp.n_params < SMALL_MODEL_PARAMS else n_threads
        if insp.kind == "embedding":
            evaluator = EmbeddingEval(text, text_name, recipe.eval_tokens, eval_threads)
        else:
            evaluator = NextTokenEval(text, text_name, recipe.eval_tokens, eval_threads, work)
        if plan.budget is not None:
            ref = make(ref_type)
            evaluator.set_reference(ref.out, ref_type)
            report = evaluator.report()
            report.budget = dict(plan.budget)
            chosen = None
            for q in AUTO_ORDER:
                res = ref if q == ref_type else make(q)
                row = evaluator.compare(res.out, q, res.size)
                row.within_budget = q == ref_type or _within(row, plan.budget)
                report.rows.append(row)
                if row.within_budget:
                    chosen = res
                    break
                res.out.unlink()
            assert chosen is not None  # the reference itself is always within budget
        else:
            chosen = make(recipe.quant)
            ref = chosen if recipe.quant == ref_type else make(ref_type)
            evaluator.set_reference(ref.out, ref_type)
            report = evaluator.report()
            report.rows.append(evaluator.compare(chosen.out, recipe.quant, chosen.size))
        report.chosen = chosen.output_type
        hashes = hash_gguf(chosen.out)
        lock = {
            "lock_version": LOCK_VERSION,
            "tool": LOCK_TOOL,
            "built_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "seconds": round(time.monotonic() - started, 3),
            "threads": n_threads,
            "versions": tool_versions(),
            "recipe": {
                "name": recipe.name,
                "path": str(recipe.path),
                "relpath": os.path.relpath(recipe.path, lock_path.parent),
                "sha256": recipe.sha256,
                "text": recipe.text,
                "settings": recipe.settings(),
                "settings_sha256": recipe.settings_sha256,
            },
            "inputs": plan.inputs,
            "output": {
                "file": out.name,
                "path": str(out),
                "type": chosen.output_type,
                "n_tensors": chosen.n_tensors,
                **hashes,
            },
            "provenance": chosen.provenance,
            "quality": report.as_dict(),
        }
        # A crash between these steps leaves a GGUF without a lock: the next build rebuilds it.
        try:
            lock_path.unlink(missing_ok=True)
            os.replace(chosen.out, out)
            fsync_dir(out.parent)
        except OSError as exc:
            raise StorageError(f"cannot write {show(out)}: {exc.strerror}") from exc
        _install_lock(lock_path, lock, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("%s: built %s (%s) in %.1f s", recipe.name, out, chosen.output_type, time.monotonic() - started)
    return BuildResult(
        recipe, out, lock_path, True, plan.reasons, plan.notes, lock, report, time.monotonic() - started
    )


def up_to_date_result(plan: Plan) -> BuildResult:
    """Nothing to build; if only the recipe's comments changed, the lock gets its new text."""
    assert plan.old_lock is not None
    lock = plan.old_lock
    if plan.refresh_lock:
        recipe = plan.recipe
        lock = {
            **lock,
            "recipe": {
                **lock["recipe"],
                "sha256": recipe.sha256,
                "text": recipe.text,
                "settings": recipe.settings(),
            },
        }
        _install_lock(plan.lock_path, lock, plan.recipe.output)
    return BuildResult(plan.recipe, plan.recipe.output, plan.lock_path, False, [], plan.notes, lock)


def build_recipe(
    recipe: Recipe | str | os.PathLike[str],
    home: Path,
    *,
    force: bool = False,
    repair: bool = False,
    threads: int | None = None,
    progress: Any = None,
) -> BuildResult:
    """Plan, then build if an input or the recipe changed (or ``force``)."""
    plan = plan_build(recipe, home, force=force, repair=repair)
    if not plan.needed:
        return up_to_date_result(plan)
    return run_build(plan, threads=threads, progress=progress)


def find_recipes(directory: Path) -> list[Path]:
    """``*.toml`` directly in ``directory`` (sub-directories such as examples/ are not built by --all)."""
    if not directory.is_dir():
        raise RecipeError(f"{show(directory)}: no such recipe directory")
    return sorted(p for p in directory.glob("*.toml") if p.is_file())
