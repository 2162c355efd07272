"""The commands themselves: help, JSON, progress at a TTY and quiet otherwise, bounded memory."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import cvt_models
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def test_help_texts(cli) -> None:
    for args in (["convert", "--help"], ["convert-adapter", "--help"]):
        res = cli(*args, assistant=True)
        assert res.returncode == 0 and "Usage:" in res.stdout
    res = cli("--help")
    assert res.returncode == 0 and "convert-adapter" in res.stdout


def test_assistant_convert_json_and_quiet_without_tty(tmp_path: Path, tiny_llama, tiny_adapter, cli) -> None:
    out = tmp_path / "o.gguf"
    res = cli(
        "convert",
        str(tiny_llama.path),
        "-o",
        str(out),
        "--adapter",
        f"{tiny_adapter.path}@0.5",
        "--quant",
        "q8_0",
        "--threads",
        "2",
        "--json",
        assistant=True,
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # no progress bar when stderr is not a terminal
    data = json.loads(res.stdout)
    assert data["type"] == "Q8_0" and data["provenance"]["adapters"][0]["scale"] == 0.5
    assert out.stat().st_size == data["size_bytes"]
    lora = tmp_path / "l.gguf"
    res = cli(
        "convert-adapter",
        str(tiny_adapter.path),
        "--base",
        str(tiny_llama.path),
        "-o",
        str(lora),
        "--outtype",
        "q8_0",
    )
    assert res.returncode == 0 and "GGUF LoRA" in res.stdout


def test_progress_bar_at_a_tty(tmp_path: Path, tiny_llama) -> None:
    master, slave = pty.openpty()
    out = tmp_path / "o.gguf"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "convert", "convert", str(tiny_llama.path), "-o", str(out), "--quant", "Q8_0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=ROOT,
        env=env,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "tensors" in text and "ETA" in text and "MB" in text


@pytest.mark.slow
def test_peak_memory_is_bounded_by_the_largest_tensor(tmp_path: Path) -> None:
    """A model much larger than the bound: peak RSS <= 3x the largest tensor (as float32) + 200 MB."""
    m = cvt_models.make_decoder(
        tmp_path / "m",
        hidden=512,
        heads=8,
        kv_heads=4,
        ffn=2048,
        layers=24,
        vocab_pad=30000,
        dtype="BF16",
        shards=3,
        std=0.05,
    )
    ad = cvt_models.make_adapter(tmp_path / "ad", m, r=16)
    largest = max(v.size for v in m.weights.values()) * 4
    model_bytes = sum(p.stat().st_size for p in m.path.glob("*.safetensors"))
    bound = 3 * largest + 200e6
    assert model_bytes * 2 > bound  # as float32 the model would not fit in the bound
    for quant in ("F16", "Q4_K_M"):
        code = (
            "import resource, sys; from convert.api import convert_model; "
            f"convert_model({str(m.path)!r}, {str(tmp_path / 'o.gguf')!r}, [({str(ad.path)!r}, 1.0)], quant={quant!r}, threads=2); "
            # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest) across exec
            "print(next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')))"
        )
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
        )
        assert res.returncode == 0, res.stderr
        peak = int(res.stdout.strip())
        assert peak <= bound, (quant, peak / 1e6, bound / 1e6)
