#!/usr/bin/env python3
"""Benchmark `assistant convert` against llama.cpp's own path, in the same run.

Generates a ~1.1B-parameter llama (TinyLlama-1.1B shapes: hidden 2048, 22 layers, GQA 32/4,
vocab 32000; BF16, sharded safetensors, a SentencePiece-style tokenizer.json) plus a rank-16
PEFT LoRA on every linear layer, then measures wall time and peak RSS of:

  ours:      python -m convert convert MODEL --adapter LORA --quant Q4_K_M --threads N
  llama.cpp: convert_hf_to_gguf.py MODEL --outtype f16 (torch), then llama_model_quantize Q4_K_M
             (the anchor does no merge at all: it converts the base only, which favours it)

and prints the ratios. Peak RSS is each process's VmHWM-equivalent from wait4() (the parent stays
small, so nothing is inherited); for llama.cpp's two steps the larger of the two counts.

llama.cpp's converter needs torch, so it runs in a separate virtualenv that is never a project
dependency, e.g.:
  python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch==2.13.0 "numpy~=2.2.6" \\
      "sentencepiece>=0.1.98,<0.3.0" transformers==4.57.6 "protobuf>=4.21.0,<5.0.0"
  pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/x && tar xzf ... -C /tmp/x

  .venv/bin/python scripts/bench_convert.py --ref-python /tmp/refvenv/bin/python \\
      --llama-cpp /tmp/x/llama_cpp_python-0.3.36/vendor/llama.cpp [--workdir /tmp/bench-convert]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SHAPES = {"hidden": 2048, "ffn": 5632, "layers": 22, "heads": 32, "kv_heads": 4, "vocab": 32000}


def _bf16(x: Any) -> bytes:
    import numpy as np

    bits = x.astype(np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16).tobytes()


def _write_safetensors(
    path: Path, specs: list[tuple[str, tuple[int, ...], float]], rng: Any, dtype: str
) -> None:
    """Stream random tensors into one safetensors file (header first, then data tensor by tensor)."""
    import numpy as np

    size = 2 if dtype == "BF16" else 4
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, _ in specs:
        n = math.prod(shape) * size
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(head)))
        fh.write(head)
        for _, shape, std in specs:
            if std == 0:  # norms: ones
                x = np.ones(shape, dtype=np.float32)
            else:
                x = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
            fh.write(_bf16(x) if dtype == "BF16" else x.tobytes())


def _spm_tokenizer(n_vocab: int) -> dict[str, object]:
    """A SentencePiece-style BPE tokenizer.json (▁ words, byte fallback) with exactly n_vocab tokens."""
    chars = ["▁", *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()"]
    vocab: dict[str, int] = {}
    for t in ("<unk>", "<s>", "</s>"):
        vocab[t] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for c in chars:
        vocab[c] = len(vocab)
    merges: list[str] = []
    frontier = list(chars)
    while len(vocab) < n_vocab:
        grown = []
        for left in frontier:
            for c in chars:
                if len(vocab) >= n_vocab:
                    break
                tok = left + c
                if tok not in vocab:
                    vocab[tok] = len(vocab)
                    merges.append(f"{left} {c}")
                    grown.append(tok)
        frontier = grown
    added = [
        {
            "id": i,
            "content": t,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, t in enumerate(("<unk>", "<s>", "</s>"))
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            ],
        },
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def generate(workdir: Path, seed: int = 0) -> tuple[Path, Path, int]:
    model, adapter = workdir / "model", workdir / "adapter"
    s = SHAPES
    hd = s["hidden"] // s["heads"]
    specs: list[tuple[str, tuple[int, ...], float]] = [
        ("model.embed_tokens.weight", (s["vocab"], s["hidden"]), 0.02)
    ]
    linear = {
        "self_attn.q_proj": (s["heads"] * hd, s["hidden"]),
        "self_attn.k_proj": (s["kv_heads"] * hd, s["hidden"]),
        "self_attn.v_proj": (s["kv_heads"] * hd, s["hidden"]),
        "self_attn.o_proj": (s["hidden"], s["heads"] * hd),
        "mlp.gate_proj": (s["ffn"], s["hidden"]),
        "mlp.up_proj": (s["ffn"], s["hidden"]),
        "mlp.down_proj": (s["hidden"], s["ffn"]),
    }
    for i in range(s["layers"]):
        specs.append((f"model.layers.{i}.input_layernorm.weight", (s["hidden"],), 0))
        specs.extend((f"model.layers.{i}.{m}.weight", shape, 0.02) for m, shape in linear.items())
        specs.append((f"model.layers.{i}.post_attention_layernorm.weight", (s["hidden"],), 0))
    specs.append(("model.norm.weight", (s["hidden"],), 0))
    specs.append(("lm_head.weight", (s["vocab"], s["hidden"]), 0.02))
    n_params = sum(math.prod(sh) for _, sh, _ in specs)
    if (model / "config.json").is_file() and (adapter / "adapter_config.json").is_file():
        return model, adapter, n_params
    model.mkdir(parents=True, exist_ok=True)
    adapter.mkdir(parents=True, exist_ok=True)
    import numpy as np

    rng = np.random.default_rng(seed)
    # shards of about 1 GB, as transformers writes them
    shards: list[list[tuple[str, tuple[int, ...], float]]] = [[]]
    size = 0
    for spec in specs:
        n = math.prod(spec[1]) * 2
        if size + n > 1_000_000_000 and shards[-1]:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += n
    weight_map = {}
    for k, part in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        _write_safetensors(model / fname, part, rng, "BF16")
        weight_map.update({name: fname for name, _, _ in part})
    (model / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1)
    )
    (model / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": s["hidden"],
                "intermediate_size": s["ffn"],
                "num_hidden_layers": s["layers"],
                "num_attention_heads": s["heads"],
                "num_key_value_heads": s["kv_heads"],
                "max_position_embeddings": 2048,
                "rms_norm_eps": 1e-5,
                "rope_theta": 10000.0,
                "vocab_size": s["vocab"],
                "tie_word_embeddings": False,
                "bos_token_id": 1,
                "eos_token_id": 2,
                "hidden_act": "silu",
                "torch_dtype": "bfloat16",
            },
            indent=2,
        )
    )
    (model / "tokenizer.json").write_text(json.dumps(_spm_tokenizer(s["vocab"]), ensure_ascii=False))
    (model / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
                "model_max_length": 2048,
                "chat_template": "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}",
            }
        )
    )
    lora: list[tuple[str, tuple[int, ...], float]] = []
    for i in range(s["layers"]):
        for m, (out_f, in_f) in linear.items():
            key = f"base_model.model.model.layers.{i}.{m}"
            lora.append((f"{key}.lora_A.weight", (16, in_f), 1 / math.sqrt(in_f)))
            lora.append((f"{key}.lora_B.weight", (out_f, 16), 0.01))
    _write_safetensors(adapter / "adapter_model.safetensors", lora, rng, "F32")
    (adapter / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "r": 16,
                "lora_alpha": 32,
                "target_modules": [
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                ],
                "base_model_name_or_path": str(model),
            }
        )
    )
    return model, adapter, n_params


CPU: dict[str, float] = {}


def run(cmd: list[str], log: Path, **kw: object) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process; its output goes to ``log``.

    CPU seconds (user + system) are kept in CPU[log.stem]: on a shared machine they vary less than wall time.
    """
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    CPU[log.stem] = usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        sys.stderr.write(log.read_text(errors="replace")[-3000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return wall, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-convert"))
    ap.add_argument(
        "--ref-python", type=Path, help="python of a venv with torch + transformers (llama.cpp's converter)"
    )
    ap.add_argument(
        "--llama-cpp", type=Path, help="llama.cpp sources (vendor/llama.cpp of the llama-cpp-python sdist)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the output GGUF files")
    ap.add_argument("--small", action="store_true", help="a 2-layer model: checks the plumbing in seconds")
    ap.add_argument(
        "--repeat", type=int, default=1, help="rounds (ours and llama.cpp alternate); medians are reported"
    )
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.small:
        SHAPES.update(hidden=256, ffn=512, layers=2, heads=4, kv_heads=2)
        if not args.generate_only:
            args.workdir = args.workdir.with_name(args.workdir.name + "-small")
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.generate_only:
        model, adapter, n = generate(args.workdir)
        print(json.dumps([str(model), str(adapter), n]))
        return
    t0 = time.monotonic()
    # Generate in a child: this process must stay small, because Linux carries a parent's
    # resident size at fork() into the child's ru_maxrss, which would pollute every measurement.
    gen = subprocess.run(
        [sys.executable, __file__, "--generate-only", "--workdir", str(args.workdir)]
        + (["--small"] if args.small else []),
        capture_output=True,
        text=True,
        check=True,
    )
    model_s, adapter_s, n_params = json.loads(gen.stdout.strip().splitlines()[-1])
    model, adapter = Path(model_s), Path(adapter_s)
    print(
        f"model: {n_params / 1e9:.2f}B parameters, BF16, {len(list(model.glob('*.safetensors')))} shards "
        f"(generated/reused in {time.monotonic() - t0:.0f} s); adapter: rank 16 on all linear layers"
    )
    ours = args.workdir / "ours-Q4_K_M.gguf"
    f16 = args.workdir / "ref-f16.gguf"
    q4 = args.workdir / "ref-Q4_K_M.gguf"
    runs: dict[str, list[tuple[float, int, float]]] = {"ours": [], "ref-convert": [], "ref-quantize": []}

    def run_ours() -> None:
        cmd = [
            sys.executable,
            "-m",
            "convert",
            "convert",
            str(model),
            "-o",
            str(ours),
            "--adapter",
            str(adapter),
        ]
        w, r = run(
            [*cmd, "--quant", "Q4_K_M", "--threads", str(args.threads)], args.workdir / "ours.log", cwd=ROOT
        )
        runs["ours"].append((w, r, CPU["ours"]))
        print(f"  ours       {w:7.1f} s  {r / 1e9:5.2f} GB  cpu {CPU['ours']:6.1f} s", flush=True)

    def run_ref() -> None:
        cmd = [str(args.ref_python), str(args.llama_cpp / "convert_hf_to_gguf.py"), str(model)]
        w1, r1 = run(
            [*cmd, "--outtype", "f16", "--outfile", str(f16)],
            args.workdir / "ref-convert.log",
            cwd=args.llama_cpp,
        )
        quant = (
            "import ctypes, sys, llama_cpp as L; p = L.llama_model_quantize_default_params(); "
            f"p.nthread = {args.threads}; p.ftype = L.LLAMA_FTYPE_MOSTLY_Q4_K_M; "
            "sys.exit(L.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))"
        )
        w2, r2 = run([sys.executable, "-c", quant, str(f16), str(q4)], args.workdir / "ref-quantize.log")
        runs["ref-convert"].append((w1, r1, CPU["ref-convert"]))
        runs["ref-quantize"].append((w2, r2, CPU["ref-quantize"]))
        print(
            f"  llama.cpp  {w1 + w2:7.1f} s  {max(r1, r2) / 1e9:5.2f} GB  cpu {CPU['ref-convert'] + CPU['ref-quantize']:6.1f} s"
            f"  (convert {w1:.1f} s / {r1 / 1e9:.2f} GB, quantize {w2:.1f} s / {r2 / 1e9:.2f} GB)",
            flush=True,
        )
        f16.unlink(missing_ok=True)

    have_ref = bool(args.ref_python and args.llama_cpp)
    for i in range(args.repeat):  # alternate, so load from other processes hits both sides alike
        print(f"round {i + 1}/{args.repeat}", flush=True)
        run_ours()
        if have_ref:
            run_ref()

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    o_wall = med([w for w, _, _ in runs["ours"]])
    o_rss = max(r for _, r, _ in runs["ours"])
    o_cpu = med([c for _, _, c in runs["ours"]])
    summary: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "python": platform.python_version(),
        "rounds": args.repeat,
        "ours": {"wall_s": round(o_wall, 1), "peak_rss_gb": round(o_rss / 1e9, 3), "cpu_s": round(o_cpu, 1)},
    }
    print(
        f"ours       median {o_wall:7.1f} s  peak {o_rss / 1e9:5.2f} GB  cpu {o_cpu:6.1f} s  (merge + Q4_K_M)"
    )
    if have_ref:
        pairs = list(zip(runs["ref-convert"], runs["ref-quantize"], strict=True))
        r_wall = med([a[0] + b[0] for a, b in pairs])
        r_rss = max(max(a[1], b[1]) for a, b in pairs)
        r_cpu = med([a[2] + b[2] for a, b in pairs])
        summary["llama.cpp"] = {
            "wall_s": round(r_wall, 1),
            "peak_rss_gb": round(r_rss / 1e9, 3),
            "cpu_s": round(r_cpu, 1),
        }
        summary["ratio"] = {
            "wall": round(o_wall / r_wall, 2),
            "peak_rss": round(o_rss / r_rss, 2),
            "cpu": round(o_cpu / r_cpu, 2),
        }
        print(
            f"llama.cpp  median {r_wall:7.1f} s  peak {r_rss / 1e9:5.2f} GB  cpu {r_cpu:6.1f} s  (convert_hf_to_gguf f16 + quantize; no merge)"
        )
        print(
            f"ratio      {o_wall / r_wall:.2f}x wall  {o_rss / r_rss:.2f}x peak RSS  {o_cpu / r_cpu:.2f}x cpu"
            "   (targets: <= 1.0x wall, <= 0.5x peak RSS)"
        )
    if not args.keep:
        for p in (ours, f16, q4):
            p.unlink(missing_ok=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
