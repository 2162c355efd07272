"""The weight change of a fine-tune as a PEFT LoRA adapter (truncated SVD), its GGUF LoRA and a build recipe.

llama.cpp trains the full matrices we let it train; the change (fine-tuned minus base, F32) of
each is factored as ``delta ~= B @ A`` with B = U_r S_r and A = V_r^T (the best rank-r
approximation). The adapter is written in PEFT's layout and naming, so our ``convert`` (and
PEFT itself) merge it like any other; rows of attn_q / attn_k are put back in the HF order
(llama.cpp interleaves each head's rotary pairs, ``convert.archs.llama.permute_rows``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError
from ..io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

SHARE_RANKS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_PREFIX = "base_model.model."


@dataclass
class Extraction:
    """What the SVD kept: per rank, the share of the change's energy (squared Frobenius norm)."""

    rank: int
    modules: int
    share_kept: float  # at the chosen rank, over all modules
    share_by_rank: dict[int, float] = field(default_factory=dict)
    max_abs_delta: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "modules": self.modules,
            "share_kept": self.share_kept,
            "share_by_rank": {str(k): v for k, v in self.share_by_rank.items()},
            "max_abs_delta": self.max_abs_delta,
        }


def unpermute_rows(arr: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of ``convert.archs.llama.permute_rows``: llama.cpp's interleaved rotary rows back to HF halves."""
    rows = arr.shape[0]
    rest = arr.shape[1:]
    return arr.reshape(n_head, rows // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(arr.shape)


def read_f32(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named tensors of a GGUF as float32 arrays in (rows, columns) order."""
    from gguf import GGMLQuantizationType, GGUFReader

    reader = GGUFReader(path)
    out = {}
    wanted = set(names)
    for t in reader.tensors:
        if t.name in wanted:
            if t.tensor_type != GGMLQuantizationType.F32:
                raise ConversionError(f"{path}: {t.name} is {t.tensor_type.name}, expected F32")
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            out[t.name] = np.array(t.data, dtype=np.float32).reshape(shape)
    missing = wanted - out.keys()
    if missing:
        raise ConversionError(f"{path} has no tensor {sorted(missing)[0]}")
    return out


def extract_lora(
    base: Path,
    tuned: Path,
    names: Sequence[str],
    out_dir: Path,
    *,
    rank: int,
    base_name: str,
) -> Extraction:
    """Write ``out_dir``/adapter_config.json + adapter_model.safetensors from the change of ``names``."""
    from safetensors.numpy import save

    from convert.source import open_base

    if rank < 1:
        raise ConversionError(f"--rank must be at least 1, got {rank}")
    src = open_base(base)
    try:
        arch, hp = src.arch, src.hp
    finally:
        src.close()
    before, after = read_f32(base, names), read_f32(tuned, names)
    tensors: dict[str, np.ndarray] = {}
    rank_pattern: dict[str, int] = {}
    targets: set[str] = set()
    energy_total = 0.0
    energy_at: dict[int, float] = dict.fromkeys(SHARE_RANKS, 0.0)
    kept = 0.0
    max_abs = 0.0
    for gname in names:
        hf = arch.hf_name(gname)
        if hf is None or not hf.endswith(".weight"):
            raise ConversionError(f"{base}: no Hugging Face name for {gname}; cannot write it as PEFT LoRA")
        module = hf[: -len(".weight")]
        delta = after[gname].astype(np.float64) - before[gname].astype(np.float64)
        max_abs = max(max_abs, float(np.abs(delta).max(initial=0.0)))
        if ".attn_q." in gname:
            delta = unpermute_rows(delta, int(hp["n_head"]))
        elif ".attn_k." in gname:
            delta = unpermute_rows(delta, int(hp["n_head_kv"]))
        u, s, vt = np.linalg.svd(delta, full_matrices=False)
        e = s**2
        energy_total += float(e.sum())
        for r in SHARE_RANKS:
            energy_at[r] += float(e[:r].sum())
        r_m = min(rank, len(s))
        kept += float(e[:r_m].sum())
        tensors[f"{_PREFIX}{module}.lora_A.weight"] = np.ascontiguousarray(vt[:r_m], dtype=np.float32)
        tensors[f"{_PREFIX}{module}.lora_B.weight"] = np.ascontiguousarray(
            u[:, :r_m] * s[:r_m], dtype=np.float32
        )
        if r_m != rank:
            rank_pattern[module] = r_m
        targets.add(module.rsplit(".", 1)[-1])
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_name,
        "r": rank,
        "lora_alpha": rank,  # scale alpha / r = 1: B @ A is the change itself
        "rank_pattern": rank_pattern,
        "alpha_pattern": dict(rank_pattern),
        "target_modules": sorted(targets),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "adapter_model.safetensors", save(tensors, metadata={"format": "pt"}))
    atomic_write_text(out_dir / "adapter_config.json", json.dumps(config, indent=2) + "\n")
    share = {r: (energy_at[r] / energy_total if energy_total else 1.0) for r in SHARE_RANKS}
    return Extraction(rank, len(names), kept / energy_total if energy_total else 1.0, share, max_abs)


def write_recipe(out_dir: Path, base_spec: Path, quant: str) -> Path:
    """A build recipe (build/README.md) that merges base + this adapter and quantizes: ``assistant build``."""
    name = out_dir.name
    base = os.path.relpath(base_spec, out_dir)
    text = (
        f"# {name}: the base plus the adapter `assistant finetune` extracted into this directory.\n"
        f"# Rebuild with: assistant build {name}.toml\n"
        f"base = {json.dumps(base)}\n"
        f"quant = {json.dumps(quant)}\n"
        f'description = "fine-tune of {base_spec.name} (assistant finetune)"\n'
        "\n[[adapter]]\n"
        'path = "."\n'
    )
    path = out_dir / f"{name}.toml"
    atomic_write_text(path, text)
    return path


def adapter_kld(
    work: Path, tuned: Path, out_dir: Path, text: str, threads: int, max_tokens: int = 2048
) -> dict[str, Any] | None:
    """How far base + the adapter (merged by our convert, F32) is from the full fine-tune on held-out text:
    mean and 99th-percentile KL divergence of the next-token distributions and top-1 agreement
    (convert's quality measure). None when the text is too short to score."""
    import tempfile

    from convert.api import convert_model
    from convert.quality import NextTokenEval

    from ..errors import RecipeError

    if not text.strip():
        return None
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".kld-") as tmp:
        merged = Path(tmp) / "merged.gguf"
        convert_model(work, merged, adapters=[(str(out_dir), 1.0)], quant="F32")
        ev = NextTokenEval(text, "the validation windows", max_tokens, threads, Path(tmp))
        try:
            ev.set_reference(tuned, "fine-tuned")
        except RecipeError as exc:
            log.info("no KL divergence: %s", exc)
            return None
        row = ev.compare(merged, "adapter", merged.stat().st_size)
        scored = ev.n_scored
        ev.ref_lp = None  # its memory map lives in tmp
    return {"mean_kld": row.mean_kld, "p99_kld": row.p99_kld, "top1": row.top1, "scored_tokens": scored}
