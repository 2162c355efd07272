"""A BF16 working copy of an F16/F32 embedding model, for CPUs that multiply BF16 natively.

On x86 CPUs with AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake / Sapphire
Rapids and later) llama.cpp multiplies BF16 weights with one ``vdpbf16ps``
per 32 products, twice the rate of F16 (converted to F32, then FMA). Measured
on the 2-core dev machine (AMD EPYC Zen 4, 1 thread, MiniLM, 200 SciFact
abstracts, docs/BENCHMARKS.md): F16 2,445 tokens/s, BF16 derived from the F16
file 3,352 (1.37x), cosine to the F32 model's vectors >= 0.99997. Without that
instruction BF16 is slower than F16 (llama-bench pp256 on an AVX2 build of the
same llama.cpp: 2,317 vs 2,827 tokens/s), and ggml has no NEON BF16 kernel at
all, so the copy is made only where llama.cpp reports ``AVX512_BF16 = 1``.

The model file itself stays what the user chose: its name and sha256 are what
a knowledge base records, so every home still shares one identical file and
indexes move between machines. The copy is derived from it once (about a
second for MiniLM), kept under ``.cache/`` next to the model (or the user's
cache directory when that is read-only) and named by the source's sha256, so a
changed model gets a new copy. Any failure here only logs and falls back to
the file as it is: an optimisation never stops an ingest.

``ASSISTANT_EMBED_BF16``: ``auto`` (default), ``on`` (make the copy even
without native BF16, e.g. to test this path), ``off``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import AssistantError, ConversionError, UsageError

log = logging.getLogger(__name__)

ENV = "ASSISTANT_EMBED_BF16"
MODES = ("auto", "on", "off")
FLOAT_TYPES = {"F32", "F16"}  # what a BF16 copy can be made from without going through a quantized type
_NATIVE = re.compile(r"\bAVX512_BF16 = 1\b")


def bf16_mode(explicit: str | None = None) -> str:
    mode = (explicit or os.environ.get(ENV) or "auto").strip().lower()
    if mode not in MODES:
        raise UsageError(f"{ENV} must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def native_bf16(system_info: str | None = None) -> bool:
    """Whether this llama.cpp build runs BF16 dot products in hardware (its own feature report)."""
    if system_info is None:
        from ..engine.backend import system_info as llama_system_info

        system_info = llama_system_info()
    return bool(_NATIVE.search(system_info))


def convertible(path: Path) -> bool:
    """An F16 or F32 model (weights only in those types): a BF16 copy loses nothing that matters."""
    from ..models.gguf_info import read_gguf_info

    types = {t.type_name for t in read_gguf_info(path).tensors}
    return bool(types) and types <= FLOAT_TYPES


def _cache_dirs(path: Path) -> list[Path]:
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-assistant" / "embed"
    return [path.resolve().parent / ".cache", user]


def copy_name(path: Path, sha256: str) -> str:
    return f"{path.stem}.{sha256[:16]}.BF16.gguf"


def working_copy(path: Path, sha256: str, *, mode: str | None = None) -> Path:
    """The file llama.cpp should load for the embedding model at ``path``: a BF16 copy or ``path`` itself."""
    mode = bf16_mode(mode)
    if mode == "off" or (mode == "auto" and not native_bf16()):
        return path
    name = copy_name(path, sha256)
    for d in _cache_dirs(path):
        if (d / name).is_file():
            return d / name  # made earlier, so the model was convertible: no second header read
    try:
        if not convertible(path):
            return path
    except AssistantError as exc:
        log.debug("no BF16 copy of %s: %s", path, exc)
        return path
    for d in _cache_dirs(path):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if not os.access(d, os.W_OK):
            continue
        try:
            return _derive(path, d / name)
        except (AssistantError, OSError) as exc:
            log.warning(
                "cannot make a BF16 copy of %s in %s (%s); using the file as it is", path.name, d, exc
            )
            return path
    log.info("no writable cache directory for a BF16 copy of %s; using the file as it is", path.name)
    return path


def _derive(src: Path, out: Path) -> Path:
    """Run the converter as a program, ``python -m convert``: the knowledge base never imports it
    (a layer of its own, 15 modules). Once per model, the same code and file as in-process; the
    process costs 1.3x the in-process conversion (docs/BENCHMARKS.md, "BF16 working copy")."""
    log.info("making a BF16 copy of %s for this CPU (once): %s", src.name, out)
    # -P: a `convert` in the current directory is not the converter
    cmd = [sys.executable, "-P", "-m", "convert", "convert", str(src), "-o", str(out), "--quant", "BF16"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    if proc.returncode in (130, -signal.SIGINT):
        raise KeyboardInterrupt
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise ConversionError(f"python -m convert failed: {last.removeprefix('Error: ')}")
    if out.parent == src.resolve().parent / ".cache":  # one model of this name here: drop its old copies
        for stale in out.parent.glob(f"{src.stem}.*.BF16.gguf"):
            if stale != out:
                stale.unlink(missing_ok=True)
    return out
