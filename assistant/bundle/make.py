"""Make a bundle: everything an air-gapped site needs to install and run the assistant.

    DIR/install.sh        the site runs this (python3 only: no network, no compiler)
    DIR/install.py        what install.sh runs: checks, venv, pip --no-index, models, verify
    DIR/manifest.json     every file with its sha256 and size; versions; where it was made
    DIR/README.txt        for the site's operators
    DIR/wheels/           the project and every dependency, exactly as installed here
    DIR/home/             files for the model home: models and locks, knowledge/, sources/
    DIR/recipes/          build recipes the site rebuilds from (adapters in home/sources/)

An update bundle (``update_from``) carries only the files whose sha256 differs from the old
manifest; its manifest still lists every file, so the site knows the whole intended state.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UsageError
from ..home import Home
from ..io import atomic_write_text, fsync_dir, sha256_file
from . import wheels as W

log = logging.getLogger(__name__)

FORMAT = 1
SITE_FILES = ("install.sh", "install.py")
Step = Callable[[str], None]


@dataclass
class BundleSpec:
    out: Path
    home: Home
    models: list[str] = field(default_factory=list)  # names or paths; [] means the default chat model
    kbs: list[str] = field(default_factory=list)
    adapters: list[Path] = field(default_factory=list)  # GGUF LoRA files applied at run time
    recipes: list[Path] = field(default_factory=list)
    llama_wheel: Path | None = None  # e.g. a portable build; default: the installed one, repacked
    update_from: Path | None = None
    tar: bool = False


@dataclass
class BundleResult:
    path: Path  # the directory (or the .tar.gz)
    manifest: dict[str, Any]
    manifest_sha256: str
    carried: int  # files in the bundle
    bytes: int
    seconds: float


def make_bundle(spec: BundleSpec, step: Step = lambda s: None) -> BundleResult:
    """Write the bundle into a temp directory next to ``spec.out``, then rename it into place."""
    started = time.monotonic()
    final = spec.out.with_name(spec.out.name + ".tar.gz") if spec.tar else spec.out
    if (spec.out.exists() and any(spec.out.iterdir())) or (spec.tar and final.exists()):
        raise UsageError(f"{final} already exists; choose a new output or remove it")
    old = _load_old_manifest(spec.update_from) if spec.update_from else None
    spec.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.out.name}.", dir=spec.out.parent))
    try:
        entries: list[dict[str, Any]] = []
        _add_wheels(work, spec, entries, step)
        models = _add_models(work, spec, entries, step)
        _add_kbs(work, spec, entries, step)
        recipes = _add_recipes(work, spec, entries, step)
        _add_site_files(work, entries)
        manifest = _manifest(entries, models, recipes, spec, old)
        if old is not None:
            _drop_unchanged(work, manifest, old)
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        atomic_write_text(work / "manifest.json", text)
        atomic_write_text(work / "README.txt", _readme(manifest))
        carried = [e for e in manifest["files"] if e.get("carried", True)]
        size = sum(e["size"] for e in carried)
        if spec.tar:
            step(f"writing {final.name}")
            _write_tar(work, final, spec.out.name)
            shutil.rmtree(work)
        else:
            if spec.out.exists():
                spec.out.rmdir()  # empty (checked above)
            os.replace(work, spec.out)
            fsync_dir(spec.out.parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    digest = _sha256_text(text)
    return BundleResult(final, manifest, digest, len(carried), size, time.monotonic() - started)


def _sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _entry(work: Path, rel: str, kind: str, **extra: Any) -> dict[str, Any]:
    p = work / rel
    return {"path": rel, "kind": kind, "size": p.stat().st_size, "sha256": sha256_file(p), **extra}


def _add_wheels(work: Path, spec: BundleSpec, entries: list[dict[str, Any]], step: Step) -> None:
    out = work / "wheels"
    out.mkdir()
    dists = W.runtime_closure()
    if not any(W.normalize(d.metadata["Name"]) == "pip" for d in dists):
        from importlib import metadata

        dists.append(metadata.distribution("pip"))  # the site's venv is made without ensurepip
    for i, dist in enumerate(dists, start=1):
        name = dist.metadata["Name"]
        step(f"wheel {i}/{len(dists)}: {name} {dist.version}")
        if W.normalize(name) == W.PROJECT:
            packed = W.pack_project(dist, out)
        elif W.normalize(name) == "llama-cpp-python" and spec.llama_wheel is not None:
            packed = _given_llama_wheel(spec.llama_wheel, dist.version, out)
        else:
            packed = W.repack(dist, out)
        entries.append(_entry(work, f"wheels/{packed.path.name}", "wheel", name=name, version=packed.version))


def _given_llama_wheel(path: Path, version: str, out: Path) -> W.PackedWheel:
    """A llama-cpp-python wheel built elsewhere (e.g. portable): same version as installed here."""
    parts = path.name.split("-")
    if len(parts) < 5 or not path.name.endswith(".whl") or W.normalize(parts[0]) != "llama-cpp-python":
        raise UsageError(f"--llama-wheel {path}: expected a llama_cpp_python-VERSION-...whl file")
    if parts[1] != version:
        raise UsageError(
            f"--llama-wheel {path}: expected llama-cpp-python {version} (installed here), got {parts[1]}"
        )
    dest = out / path.name
    shutil.copyfile(path, dest)
    return W.PackedWheel("llama_cpp_python", version, dest)


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)


def _add_models(
    work: Path, spec: BundleSpec, entries: list[dict[str, Any]], step: Step
) -> list[dict[str, Any]]:
    from ..knowledge.embed import resolve_embed_model
    from ..models.catalog import resolve_model

    chosen = [resolve_model(m, spec.home) for m in spec.models] or [resolve_model(None, spec.home)]
    models = [{"file": p.name, "role": "chat"} for p in chosen]
    embed = resolve_embed_model(spec.home.root)
    models.append({"file": embed.name, "role": "embedding"})
    models += [{"file": p.name, "role": "adapter"} for p in spec.adapters]
    for src in [*chosen, embed, *spec.adapters]:
        if not src.is_file():
            raise UsageError(f"{src}: no such model file")
        step(f"model {src.name}")
        _copy(src, work / "home" / src.name)
        entries.append(_entry(work, f"home/{src.name}", "model"))
        lock = src.with_name(src.name + ".lock.json")
        if lock.is_file():
            _copy(lock, work / "home" / lock.name)
            entries.append(_entry(work, f"home/{lock.name}", "lock"))
    return models


def _add_kbs(work: Path, spec: BundleSpec, entries: list[dict[str, Any]], step: Step) -> None:
    """Knowledge bases through SQLite's backup API: a consistent copy even while the WAL has pages."""
    from ..db import connect
    from ..knowledge.store import resolve_kb_path

    for kb in spec.kbs:
        path = resolve_kb_path(kb, spec.home.knowledge_dir)
        if not path.is_file():
            raise UsageError(f"--kb {kb}: no knowledge base at {path}; see `assistant index list`")
        step(f"knowledge base {path.name}")
        rel = f"home/knowledge/{path.name}"
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        src = connect(path, vec=False, readonly=True)
        dst = connect(work / rel, vec=False)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            dst.close()
            src.close()
        entries.append(_entry(work, rel, "knowledge"))


def _add_recipes(work: Path, spec: BundleSpec, entries: list[dict[str, Any]], step: Step) -> list[str]:
    """Recipes and their local inputs: the base and adapters must live in the model home (the
    site has no Hub), so they travel as home/ paths; the recipe goes to recipes/."""
    from convert.recipe import HOME_VAR, load_recipe

    names = []
    for path in spec.recipes:
        recipe = load_recipe(path, spec.home.root)
        step(f"recipe {path.name}")
        out_spec = recipe.raw.get("output")
        if out_spec is not None and not str(out_spec).startswith(HOME_VAR):
            raise UsageError(
                f"{path}: output = {out_spec!r} is not in the model home; a bundled recipe writes "
                f'"{HOME_VAR}/NAME.gguf" (or leave output out)'
            )
        for src in [recipe.base, *(a.source for a in recipe.adapters)]:
            if src.path is None:
                raise UsageError(
                    f"{path}: {src.field} = {src.spec!r} is a Hub id; a site has no network: put its files "
                    f"under {HOME_VAR}/sources/ and point the recipe there"
                )
            _add_home_tree(work, spec.home.root, src.path, f"{path.name}: {src.field}", entries)
        if recipe.eval_text is not None:
            rel_eval = _inside(recipe.eval_text, path.parent, f"{path}: eval_text")
            _copy(recipe.eval_text, work / "recipes" / rel_eval)
            entries.append(_entry(work, f"recipes/{rel_eval.as_posix()}", "recipe-input"))
        _copy(path, work / "recipes" / path.name)
        entries.append(_entry(work, f"recipes/{path.name}", "recipe"))
        names.append(path.name)
    return names


def _inside(path: Path, root: Path, what: str) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        raise UsageError(
            f"{what}: {path} is outside {root}; keep it next to the recipe or in the model home"
        ) from None


def _add_home_tree(work: Path, home: Path, src: Path, what: str, entries: list[dict[str, Any]]) -> None:
    rel = _inside(src, home, what)
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    for f in files:
        dest_rel = (
            f"home/{(rel / f.relative_to(src)).as_posix()}" if src.is_dir() else f"home/{rel.as_posix()}"
        )
        if any(e["path"] == dest_rel for e in entries):
            continue
        _copy(f, work / dest_rel)
        entries.append(_entry(work, dest_rel, "source"))


def _add_site_files(work: Path, entries: list[dict[str, Any]]) -> None:
    here = Path(__file__).parent
    shutil.copyfile(here / "install.sh", work / "install.sh")
    shutil.copyfile(here / "site_install.py", work / "install.py")
    os.chmod(work / "install.sh", 0o755)
    for name in SITE_FILES:
        entries.append(_entry(work, name, "installer"))


def _llama_build(spec: BundleSpec) -> dict[str, Any]:
    """Which llama.cpp build travels: a portable one has its CPU code in one library per x86-64
    level (libggml-cpu-<variant>.so, GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS)."""
    import zipfile
    from importlib import metadata

    if spec.llama_wheel is not None:
        with zipfile.ZipFile(spec.llama_wheel) as zf:
            names = [Path(n).name for n in zf.namelist()]
    else:
        names = [Path(str(f)).name for f in metadata.distribution("llama-cpp-python").files or []]
    variants = sorted(
        n.removeprefix("libggml-cpu-").removesuffix(".so") for n in names if n.startswith("libggml-cpu-")
    )
    return {
        "version": metadata.version("llama-cpp-python"),
        "wheel": f"given: {spec.llama_wheel.name}"
        if spec.llama_wheel
        else "repacked from this machine's install",
        "build": "portable (GGML_NATIVE=OFF, GGML_BACKEND_DL, CPU variants)"
        if variants
        else "as installed here (native unless built otherwise)",
        "cpu_variants": variants,
    }


def _manifest(
    entries: list[dict[str, Any]],
    models: list[dict[str, Any]],
    recipes: list[str],
    spec: BundleSpec,
    old: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": "update" if old is not None else "full",
        "update_of": {"created": old["created"], "sha256": old["_sha256"]} if old is not None else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "assistant_version": __version__,
        "requirement": f"{W.PROJECT}=={__version__}",
        "python": {
            "implementation": sys.implementation.name,
            "version": f"{sys.version_info.major}.{sys.version_info.minor}",
        },
        "platform": {
            "system": platform.system(),
            "machine": platform.machine(),
            "libc": "-".join(platform.libc_ver()),
        },
        "made_on": {"python": platform.python_version(), "node": platform.node()},
        "llama_cpp": _llama_build(spec),
        "models": models,
        "default_model": next(m["file"] for m in models if m["role"] == "chat"),
        "recipes": recipes,
        "files": sorted(entries, key=lambda e: e["path"]),
    }


def _load_old_manifest(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except FileNotFoundError:
        raise UsageError(f"--update-from {path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--update-from {path}: not a bundle manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), list):
        raise UsageError(f"--update-from {path}: expected a bundle manifest of format {FORMAT}")
    data["_sha256"] = _sha256_text(text)
    return data


def _drop_unchanged(work: Path, manifest: dict[str, Any], old: dict[str, Any]) -> None:
    """Keep only what the site does not have already (same path, same sha256); installers always travel."""
    before = {e["path"]: e["sha256"] for e in old["files"]}
    for e in manifest["files"]:
        if e["path"] not in SITE_FILES and before.get(e["path"]) == e["sha256"]:
            (work / e["path"]).unlink()
            e["carried"] = False
    for d in sorted((p for p in work.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            d.rmdir()


def _write_tar(work: Path, dest: Path, arcroot: str) -> None:
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tf:
            tf.add(work, arcname=arcroot, filter=_tar_filter)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _readme(m: dict[str, Any]) -> str:
    carried = "all files" if m["kind"] == "full" else "only the files changed since the bundle it updates"
    models = "\n".join(f"  {x['role']:<10} {x['file']}" for x in m["models"])
    return f"""Offline assistant {m["assistant_version"]}: {m["kind"]} bundle made {m["created"]}
for {m["python"]["implementation"]} {m["python"]["version"]} on {m["platform"]["system"]} {m["platform"]["machine"]}.
It carries {carried}; manifest.json lists every file with its sha256.

Install (needs python3 {m["python"]["version"]}; no network, no compiler):

    ./install.sh [PREFIX]        # default: ./assistant next to this directory

install.sh checks every file against manifest.json before it installs anything, creates a
virtual environment in PREFIX, installs the wheels with pip --no-index, puts the models into
PREFIX/models (the model home), checks them (assistant verify, one short answer) and prints the
command to start. An update bundle is applied to an existing PREFIX the same way; recipes in
PREFIX/recipes are rebuilt when their inputs changed, and verified.

Models:
{models}
llama.cpp: llama-cpp-python {m["llama_cpp"]["version"]}, {m["llama_cpp"]["build"]} ({m["llama_cpp"]["wheel"]})
"""
