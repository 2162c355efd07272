"""Wheels of exactly what is installed here, made without a network or a compiler.

An air-gapped site must get the same versions this machine runs, llama-cpp-python included
(compiled once here, ~10 minutes and a compiler that the site may not have). So each installed
distribution of the runtime's dependency closure is packed back into a wheel from its own
files, as its RECORD lists them, with the tags its WHEEL file recorded when it was installed.
The project itself (an editable install in a checkout) is packed from its package directories
with the metadata of its installed dist-info.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import logging
import os
import re
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from ..errors import UsageError

log = logging.getLogger(__name__)

PROJECT = "edge-assistant"
PROJECT_PACKAGES = ("assistant", "convert")
# dist-info files pip writes at install time; a wheel must not carry them
_INSTALL_ONLY = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}
# zip timestamps fixed so the same installed files give the same wheel bytes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class PackedWheel:
    name: str  # distribution name as installed
    version: str
    path: Path


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name)


def runtime_closure(root: str = PROJECT, extras: Iterable[str] = ()) -> list[metadata.Distribution]:
    """The installed distributions ``root`` needs at run time (its requirements, recursively,
    markers evaluated for this interpreter), ``root`` first."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = default_environment()
    seen: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()  # (distribution, extra) whose requirements were followed
    todo: list[tuple[str, tuple[str, ...]]] = [(root, tuple(extras))]
    while todo:
        name, want = todo.pop()
        key = normalize(name)
        if key not in seen:
            try:
                seen[key] = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                raise UsageError(
                    f"{name} is required but not installed in {sys.prefix}; install the assistant's "
                    "dependencies (./setup.sh) before making a bundle"
                ) from None
        for extra in ("", *want):
            if (key, extra) in done:
                continue
            done.add((key, extra))
            for line in seen[key].requires or []:
                req = Requirement(line)
                marker_env = {**env, "extra": extra}
                if req.marker.evaluate(marker_env) if req.marker else extra == "":  # type: ignore[arg-type]
                    todo.append((req.name, tuple(req.extras)))
    return list(seen.values())


def _tags(wheel_file: str) -> str:
    """The compressed tag set of a WHEEL file ("cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64")."""
    tags = [v.strip() for k, v in _headers(wheel_file) if k == "Tag"]
    if not tags:
        raise UsageError("expected at least one Tag line in a WHEEL file, got none")
    parts = [t.split("-") for t in tags]
    return "-".join(".".join(dict.fromkeys(p[i] for p in parts)) for i in range(3))


def _headers(text: str) -> list[tuple[str, str]]:
    return list(Parser().parsestr(text).items())


def _record_line(arcname: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [arcname, f"sha256={digest}", str(len(data))]


class _WheelWriter:
    """A wheel written in a fixed order with a fresh RECORD (temp name, then renamed)."""

    def __init__(self, dest: Path, dist_info: str) -> None:
        self.dest, self.dist_info = dest, dist_info
        self.tmp = dest.with_name(f".{dest.name}.partial")
        self.zf = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_DEFLATED)
        self.record: list[list[str]] = []

    def add(self, arcname: str, data: bytes, mode: int = 0o644) -> None:
        info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
        info.external_attr = (mode & 0o777 | 0o100000) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zf.writestr(info, data)
        self.record.append(_record_line(arcname, data))

    def close(self) -> Path:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(self.record)
        writer.writerow([f"{self.dist_info}/RECORD", "", ""])
        info = zipfile.ZipInfo(f"{self.dist_info}/RECORD", date_time=_ZIP_TIME)
        info.external_attr = 0o100644 << 16
        self.zf.writestr(info, out.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
        self.zf.close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.dest)
        return self.dest

    def abort(self) -> None:
        self.zf.close()
        self.tmp.unlink(missing_ok=True)


def _skipped(rel: str) -> bool:
    return "__pycache__/" in rel or rel.endswith((".pyc", ".pyo"))


def _python_shebang(data: bytes) -> bool:
    return data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]


def _entry_point_scripts(dist: metadata.Distribution) -> set[str]:
    return {ep.name for ep in dist.entry_points if ep.group in ("console_scripts", "gui_scripts")}


def repack(dist: metadata.Distribution, out_dir: Path) -> PackedWheel:
    """Pack one installed (non-editable) distribution back into a wheel in ``out_dir``."""
    name, version = dist.metadata["Name"], dist.version
    files = dist.files
    if files is None:
        raise UsageError(
            f"{name} {version} has no RECORD (installed by something other than pip): "
            "reinstall it with pip before making a bundle"
        )
    base = Path(str(dist.locate_file(""))).resolve()  # site-packages
    info_dir = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info")), None)
    if info_dir is None:
        raise UsageError(f"{name} {version}: expected a .dist-info directory in its RECORD, found none")
    wheel_text = Path(str(dist.locate_file(f"{info_dir}/WHEEL"))).read_text(encoding="utf-8")
    dest = out_dir / f"{_wheel_name(name)}-{version}-{_tags(wheel_text)}.whl"
    data_dir = f"{_wheel_name(name)}-{version}.data"
    generated = _entry_point_scripts(dist)
    prefix = Path(sys.prefix).resolve()
    w = _WheelWriter(dest, info_dir)
    try:
        for f in sorted(files, key=lambda f: (f.parts[0] == info_dir, str(f))):
            rel = str(f).replace(os.sep, "/")
            if _skipped(rel) or (f.parts[0] == info_dir and f.name in _INSTALL_ONLY):
                continue
            path = (base / f).resolve()
            if not rel.startswith("../"):
                arc = rel
            else:  # outside site-packages: scripts in bin/, data under the prefix
                try:
                    under = path.relative_to(prefix)
                except ValueError:
                    raise UsageError(
                        f"{name}: {path} is installed outside {prefix}; cannot pack it into a wheel"
                    ) from None
                if under.parts[0] == "bin":
                    if path.name in generated:
                        continue  # pip writes entry-point scripts itself, for the new interpreter
                    arc = f"{data_dir}/scripts/{path.name}"
                else:
                    arc = f"{data_dir}/data/{under.as_posix()}"
            try:
                data = path.read_bytes()
                mode = path.stat().st_mode
            except FileNotFoundError:
                raise UsageError(
                    f"{name} {version}: {path} is listed in its RECORD but missing; "
                    f"reinstall it (pip install --force-reinstall {name}=={version})"
                ) from None
            if arc.startswith(f"{data_dir}/scripts/") and _python_shebang(data):
                data = b"#!python" + data[data.index(b"\n") :]  # pip points it at the new interpreter
            w.add(arc, data, mode)
        return PackedWheel(name, version, w.close())
    except BaseException:
        w.abort()
        raise


def pack_project(dist: metadata.Distribution, out_dir: Path) -> PackedWheel:
    """The project's own wheel, from its package directories and its installed metadata.

    Works for an editable install (a checkout) and a regular one alike; what is packed is the
    code this process runs.
    """
    name, version = dist.metadata["Name"], dist.version
    info_dir = f"{_wheel_name(name)}-{version}.dist-info"
    dest = out_dir / f"{_wheel_name(name)}-{version}-py3-none-any.whl"
    w = _WheelWriter(dest, info_dir)
    try:
        for pkg in PROJECT_PACKAGES:
            root = Path(__import__(pkg).__file__ or "").resolve().parent
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root.parent).as_posix()
                if path.is_file() and not _skipped(rel):
                    w.add(rel, path.read_bytes(), path.stat().st_mode)
        for rel, path in _setup_recipes():  # what pyproject's force-include puts into a built wheel
            w.add(f"convert/recipes/{rel}", path.read_bytes())
        w.add(f"{info_dir}/METADATA", _read_meta(dist, "METADATA"))
        w.add(
            f"{info_dir}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: edge-assistant bundle\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        eps = _read_meta(dist, "entry_points.txt", required=False)
        if eps:
            w.add(f"{info_dir}/entry_points.txt", eps)
        return PackedWheel(name, version, w.close())
    except BaseException:
        w.abort()
        raise


def _setup_recipes() -> list[tuple[str, Path]]:
    """build/'s recipes that setup runs and the adapter files they name, each with its path under
    convert/recipes/, from a checkout (an installed copy has them in convert/recipes/ already)."""
    import convert
    from convert.setup_recipes import SETUP_ADAPTERS, SETUP_RECIPES

    root = Path(convert.__file__).resolve().parent
    build = root.parent / "build"
    files = [build / name for name in SETUP_RECIPES]
    files += [p for d in SETUP_ADAPTERS for p in sorted((build / d).glob("*"))]
    found = [(p.relative_to(build).as_posix(), p) for p in files if p.is_file()]
    return [(rel, p) for rel, p in found if not (root / "recipes" / rel).is_file()]


def _read_meta(dist: metadata.Distribution, filename: str, required: bool = True) -> bytes:
    text = dist.read_text(filename)
    if text is None:
        if required:
            raise UsageError(f"{dist.metadata['Name']}: its installed metadata has no {filename}")
        return b""
    return text.encode("utf-8")
