"""Tiny random Hugging Face models and PEFT adapters, written the way transformers / peft write them.

numpy + safetensors for the weights (BF16 written as raw bits, numpy has no bfloat16), a real
tokenizer trained with the `tokenizers` package, config.json / tokenizer_config.json as HF
saves them. The adapters follow PEFT's on-disk format (adapter_config.json +
adapter_model.safetensors with ``base_model.model.<module>.lora_A.weight`` keys).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Offline assistants run small language models on laptops, with no network at all.",
    "def add(a, b):\n    return a + b\n\nprint(add(12, 345))\n",
    "for (int i = 0; i < 10; i++) { total += values[i] * 2; }",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 12345 3.14159 2026-11-24",
    "Ünïcödé tëxt: café, naïve, Straße, 東京, Привет мир, مرحبا, 🙂👍",
    "Whitespace   runs\tand\ttabs\n\n\nnew lines   and  spaces",
    "Question: what is GGUF? Answer: a file format for llama.cpp models.",
    "I'm sure you'll see they've done it; it's what we'd do.",
] * 4

BATTERY = [
    "Hello world",
    " leading space",
    "trailing space ",
    "Whitespace   runs\t\ttabs\n\n newline",
    "    indented code\n        more",
    "Numbers 1 12 123 1234 12345 3.14 -7",
    "café naïve Straße 東京 Привет 🙂 👍🏽",
    "def f(x):\n    return x ** 2  # square",
    "It's, I'm, we'll, they've, don't",
    "<|im_start|>user\nhi<|im_end|>",
    "special <|im_end|> in the middle",
    "mixed123abc 4x4 a1b2c3",
    "",
    " ",
    "\n",
    "ALL CAPS AND lower",
    "punctuation!!! ??? ... ---",
]

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# ---------------------------------------------------------------------------------------------- safetensors


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bits by truncation (tests use values that are exactly bf16)."""
    return (np.ascontiguousarray(x, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def round_to_bf16(x: np.ndarray) -> np.ndarray:
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "F32") -> None:
    """A safetensors file written by hand (so BF16 works without torch)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        if dtype == "BF16" and arr.dtype.kind == "f":
            raw, dt = bf16_bits(arr).tobytes(), "BF16"
        elif dtype == "F16" and arr.dtype.kind == "f":
            raw, dt = arr.astype(np.float16).tobytes(), "F16"
        else:
            raw, dt = np.ascontiguousarray(arr, dtype=np.float32).tobytes(), "F32"
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(head)))
        fh.write(head)
        for b in blobs:
            fh.write(b)


def write_sharded(dirpath: Path, tensors: dict[str, np.ndarray], n_shards: int, dtype: str) -> None:
    names = list(tensors)
    per = math.ceil(len(names) / n_shards)
    weight_map = {}
    for i in range(n_shards):
        part = names[i * per : (i + 1) * per]
        fname = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        write_safetensors(dirpath / fname, {n: tensors[n] for n in part}, dtype)
        weight_map.update(dict.fromkeys(part, fname))
    (dirpath / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}, indent=2)
    )


# ---------------------------------------------------------------------------------------------- tokenizers


def train_tokenizer(kind: str, vocab_size: int = 320) -> Any:
    """kind: bytelevel-llama3 / bytelevel-gpt2 / bytelevel-smollm / bytelevel-qwen2 / bytelevel-odd / spm / unigram / wordpiece."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    from convert.tokenizer import _GPT2_RE, _LLAMA3_RE, _QWEN2_RE

    if kind.startswith("bytelevel"):
        tok = Tokenizer(models.BPE())
        if kind == "bytelevel-gpt2":
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        elif kind == "bytelevel-smollm":
            tok.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Digits(individual_digits=True),
                    pre_tokenizers.ByteLevel(add_prefix_space=False),
                ]
            )
        else:
            regex = {
                "bytelevel-llama3": _LLAMA3_RE,
                "bytelevel-qwen2": _QWEN2_RE,
                "bytelevel-odd": r"\p{N}{1,3}| ?\p{L}+|\s+|[^\s\p{L}\p{N}]+",
            }.get(kind, _GPT2_RE)
            tok.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                ]
            )
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(CORPUS, trainer)
        return tok
    if kind == "spm-metaspace":
        # the newer layout of the same tokenizers: no normalizer, a Metaspace pre-tokenizer
        data = json.loads(train_tokenizer("spm", vocab_size).to_str())
        data["normalizer"] = None
        data["pre_tokenizer"] = {
            "type": "Metaspace",
            "replacement": "▁",
            "prepend_scheme": "first",
            "split": False,
        }
        return Tokenizer.from_str(json.dumps(data))
    if kind == "spm":
        # SentencePiece-style BPE as in Llama 2 / TinyLlama / Mistral tokenizer.json: ▁ words, byte fallback
        base = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        base.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
        )
        base.train_from_iterator(CORPUS, trainer)
        data = json.loads(base.to_str())
        vocab = data["model"]["vocab"]
        ordered = sorted(vocab.items(), key=lambda kv: kv[1])
        new: dict[str, int] = {}
        for t, _ in ordered[:3]:
            new[t] = len(new)
        for b in range(256):
            new[f"<0x{b:02X}>"] = len(new)
        for t, _ in ordered[3:]:
            if t not in new:
                new[t] = len(new)
        data["model"]["vocab"] = new
        for a in data["added_tokens"]:
            a["id"] = new[a["content"]]
        data["decoder"] = {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        }
        data["post_processor"] = {
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
            "special_tokens": {"<s>": {"id": "<s>", "ids": [new["<s>"]], "tokens": ["<s>"]}},
        }
        return Tokenizer.from_str(json.dumps(data))
    if kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=["<unk>", "<s>", "</s>"],
            unk_token="<unk>",
            show_progress=False,
        )
        tok.train_from_iterator(CORPUS, trainer)
        return tok
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=specials, show_progress=False
        )
        tok.train_from_iterator(CORPUS, trainer)
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
        )
        return tok
    raise ValueError(kind)


_TOKENIZER_CACHE: dict[tuple[str, int], str] = {}


def tokenizer_json(kind: str, vocab_size: int = 320) -> str:
    key = (kind, vocab_size)
    if key not in _TOKENIZER_CACHE:
        _TOKENIZER_CACHE[key] = train_tokenizer(kind, vocab_size).to_str()
    return _TOKENIZER_CACHE[key]


# ---------------------------------------------------------------------------------------------- models


@dataclass
class TinyModel:
    path: Path
    config: dict[str, Any]
    weights: dict[str, np.ndarray]  # HF names, float32 (what the files hold, as float32)
    tokenizer: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def make_decoder(
    path: Path,
    *,
    arch: str = "llama",
    tokenizer: str = "bytelevel-llama3",
    seed: int = 0,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    layers: int = 2,
    ffn: int = 128,
    tie: bool = False,
    dtype: str = "F32",
    shards: int = 1,
    attention_bias: bool = False,
    chat_template: str | None = "config",  # "config", "jinja" or None
    add_bos: bool | None = None,
    vocab_pad: int = 0,
    std: float = 0.15,
    hf_arch: str | None = None,
    rope_scaling: dict[str, Any] | None = None,
) -> TinyModel:
    from tokenizers import Tokenizer

    path.mkdir(parents=True, exist_ok=True)
    tj = tokenizer_json(tokenizer)
    (path / "tokenizer.json").write_text(tj)
    tok = Tokenizer.from_str(tj)
    n_vocab = tok.get_vocab_size() + vocab_pad
    rng = np.random.default_rng(seed)

    def rnd(*shape: int, s: float = std) -> np.ndarray:
        x = (rng.standard_normal(shape) * s).astype(np.float32)
        return round_to_bf16(x) if dtype == "BF16" else x

    head_dim = hidden // heads
    w: dict[str, np.ndarray] = {"model.embed_tokens.weight": rnd(n_vocab, hidden, s=std if tie else 1.0)}
    bias = attention_bias or arch == "qwen2"
    for i in range(layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + rnd(hidden, s=0.1)
        w[p + "self_attn.q_proj.weight"] = rnd(heads * head_dim, hidden)
        w[p + "self_attn.k_proj.weight"] = rnd(kv_heads * head_dim, hidden)
        w[p + "self_attn.v_proj.weight"] = rnd(kv_heads * head_dim, hidden)
        if bias:
            w[p + "self_attn.q_proj.bias"] = rnd(heads * head_dim, s=0.5)
            w[p + "self_attn.k_proj.bias"] = rnd(kv_heads * head_dim, s=0.5)
            w[p + "self_attn.v_proj.bias"] = rnd(kv_heads * head_dim, s=0.5)
        w[p + "self_attn.o_proj.weight"] = rnd(hidden, heads * head_dim)
        if attention_bias and arch == "llama":
            w[p + "self_attn.o_proj.bias"] = rnd(hidden, s=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + rnd(hidden, s=0.1)
        w[p + "mlp.gate_proj.weight"] = rnd(ffn, hidden)
        w[p + "mlp.up_proj.weight"] = rnd(ffn, hidden)
        w[p + "mlp.down_proj.weight"] = rnd(hidden, ffn)
    w["model.norm.weight"] = 1 + rnd(hidden, s=0.1)
    if not tie:
        w["lm_head.weight"] = rnd(n_vocab, hidden)
    if dtype == "BF16":
        w = {k: round_to_bf16(v) for k, v in w.items()}  # what the file holds exactly
    if shards > 1:
        write_sharded(path, w, shards, dtype)
    else:
        write_safetensors(path / "model.safetensors", w, dtype)
    if dtype == "F16":
        w = {k: v.astype(np.float16).astype(np.float32) for k, v in w.items()}
    specials = {
        t: tok.token_to_id(t) for t in [*SPECIALS, "<unk>", "<s>", "</s>"] if tok.token_to_id(t) is not None
    }
    bos = specials.get("<s>", specials.get("<|endoftext|>"))
    eos = specials.get("</s>", specials.get("<|im_end|>"))
    config = {
        "architectures": [hf_arch or ("Qwen2ForCausalLM" if arch == "qwen2" else "LlamaForCausalLM")],
        "model_type": arch,
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "num_hidden_layers": layers,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": n_vocab,
        "tie_word_embeddings": tie,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[dtype],
        "hidden_act": "silu",
    }
    if arch == "llama":
        config["attention_bias"] = attention_bias
    if rope_scaling:
        config["rope_scaling"] = rope_scaling
    (path / "config.json").write_text(json.dumps(config, indent=2))
    tc: dict[str, Any] = {
        "bos_token": tok.id_to_token(bos) if bos is not None else None,
        "eos_token": tok.id_to_token(eos) if eos is not None else None,
        "pad_token": tok.id_to_token(eos) if eos is not None else None,
        "model_max_length": 256,
    }
    if "<unk>" in specials:
        tc["unk_token"] = "<unk>"
    if add_bos is not None:
        tc["add_bos_token"] = add_bos
    if chat_template == "config":
        tc["chat_template"] = CHAT_TEMPLATE
    elif chat_template == "jinja":
        (path / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    (path / "tokenizer_config.json").write_text(json.dumps(tc, indent=2))
    return TinyModel(path, config, w, tok)


def make_bert(
    path: Path, *, seed: int = 0, hidden: int = 64, heads: int = 4, layers: int = 2, ffn: int = 128
) -> TinyModel:
    from tokenizers import Tokenizer

    path.mkdir(parents=True, exist_ok=True)
    tj = tokenizer_json("wordpiece")
    (path / "tokenizer.json").write_text(tj)
    tok = Tokenizer.from_str(tj)
    n_vocab = tok.get_vocab_size()
    rng = np.random.default_rng(seed)

    def rnd(*shape: int, s: float = 0.1) -> np.ndarray:
        return (rng.standard_normal(shape) * s).astype(np.float32)

    w = {
        "embeddings.word_embeddings.weight": rnd(n_vocab, hidden, s=1.0),
        "embeddings.position_embeddings.weight": rnd(128, hidden, s=0.3),
        "embeddings.token_type_embeddings.weight": rnd(2, hidden, s=0.3),
        "embeddings.LayerNorm.weight": 1 + rnd(hidden),
        "embeddings.LayerNorm.bias": rnd(hidden),
        "embeddings.position_ids": np.arange(128, dtype=np.float32)[None, :],
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            w[p + f"attention.self.{n}.weight"] = rnd(hidden, hidden, s=0.2)
            w[p + f"attention.self.{n}.bias"] = rnd(hidden)
        w[p + "attention.output.dense.weight"] = rnd(hidden, hidden, s=0.2)
        w[p + "attention.output.dense.bias"] = rnd(hidden)
        w[p + "attention.output.LayerNorm.weight"] = 1 + rnd(hidden)
        w[p + "attention.output.LayerNorm.bias"] = rnd(hidden)
        w[p + "intermediate.dense.weight"] = rnd(ffn, hidden, s=0.2)
        w[p + "intermediate.dense.bias"] = rnd(ffn)
        w[p + "output.dense.weight"] = rnd(hidden, ffn, s=0.2)
        w[p + "output.dense.bias"] = rnd(hidden)
        w[p + "output.LayerNorm.weight"] = 1 + rnd(hidden)
        w[p + "output.LayerNorm.bias"] = rnd(hidden)
    w["pooler.dense.weight"] = rnd(hidden, hidden)
    w["pooler.dense.bias"] = rnd(hidden)
    write_safetensors(path / "model.safetensors", w)
    del w["embeddings.position_ids"]
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "max_position_embeddings": 128,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "vocab_size": n_vocab,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "do_lower_case": True,
                "unk_token": "[UNK]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "mask_token": "[MASK]",
                "tokenizer_class": "BertTokenizer",
            }
        )
    )
    (path / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True})
    )
    return TinyModel(path, config, w, tok)


# ---------------------------------------------------------------------------------------------- adapters


@dataclass
class TinyAdapter:
    path: Path
    config: dict[str, Any]
    factors: dict[str, tuple[np.ndarray, np.ndarray, float]]  # module -> (A, B, scale)
    replacements: dict[str, np.ndarray] = field(default_factory=dict)  # HF tensor name -> new value
    magnitudes: dict[str, np.ndarray] = field(default_factory=dict)  # DoRA

    def merged(self, weights: dict[str, np.ndarray], user_scale: float = 1.0) -> dict[str, np.ndarray]:
        """HF semantics, written independently of convert/: W + s * B @ A (embeddings: transposed)."""
        out = {k: v.astype(np.float64) for k, v in weights.items()}
        for name, value in self.replacements.items():
            out[name] = value.astype(np.float64)
        for module, (a, b, scale) in self.factors.items():
            key = module + ".weight"
            base = out.get(key)
            if base is None and module == "lm_head":
                base = out["model.embed_tokens.weight"]
            delta = scale * (b.astype(np.float64) @ a.astype(np.float64))
            if module.endswith("embed_tokens"):
                delta = delta.T
            new = base + user_scale * delta
            if module in self.magnitudes:
                m = self.magnitudes[module].astype(np.float64)
                new = (m / np.linalg.norm(new, axis=1))[:, None] * new
            out[key] = new
        return out


LLAMA_ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
LLAMA_MLP = ["gate_proj", "up_proj", "down_proj"]


def make_adapter(
    path: Path,
    model: TinyModel,
    *,
    targets: list[str] = LLAMA_ATTN + LLAMA_MLP,
    r: int = 8,
    alpha: float = 16,
    rslora: bool = False,
    rank_pattern: dict[str, int] | None = None,
    alpha_pattern: dict[str, float] | None = None,
    fan_in_fan_out: bool = False,
    modules_to_save: dict[str, np.ndarray] | None = None,
    dora: bool = False,
    embedding_lora: bool = False,
    save_embedding_layers: bool = False,
    seed: int = 1,
    std: float = 0.3,
    layers: list[int] | None = None,
) -> TinyAdapter:
    """A PEFT LoRA adapter over ``model`` (random A and B: B is not zero, so the delta shows).

    ``save_embedding_layers``: as PEFT's get_peft_model_state_dict saves it when embed_tokens or
    lm_head is a LoRA target (its "auto" default): the wrapped layer's base weight too, under
    ``base_model.model.<module>.base_layer.weight`` (a tied head's is the embedding matrix).
    """
    import re

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cfg = model.config
    n_layers = cfg["num_hidden_layers"]
    tensors: dict[str, np.ndarray] = {}
    factors: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    magnitudes: dict[str, np.ndarray] = {}

    def pattern(patterns: dict[str, Any] | None, module: str) -> Any:
        for p, v in (patterns or {}).items():
            if re.match(rf"(.*\.)?({p})$", module):
                return v
        return None

    modules = []
    for i in layers if layers is not None else range(n_layers):
        for t in targets:
            sub = "self_attn" if t in LLAMA_ATTN else "mlp"
            if t in ("lm_head",):
                continue
            modules.append(f"model.layers.{i}.{sub}.{t}")
    if "lm_head" in targets:
        modules.append("lm_head")
    for module in modules:
        w = model.weights.get(module + ".weight")
        if w is None and module == "lm_head":
            w = model.weights["model.embed_tokens.weight"]
        out_f, in_f = w.shape
        rr = pattern(rank_pattern, module) or r
        aa = pattern(alpha_pattern, module) or alpha
        scale = aa / math.sqrt(rr) if rslora else aa / rr
        a = (rng.standard_normal((rr, in_f)) * std / math.sqrt(in_f) * 4).astype(np.float32)
        b = (rng.standard_normal((out_f, rr)) * std / math.sqrt(rr)).astype(np.float32)
        tensors[f"base_model.model.{module}.lora_A.weight"] = a
        tensors[f"base_model.model.{module}.lora_B.weight"] = b
        factors[module] = (a, b, scale)
        if dora:
            new = w.astype(np.float64) + scale * (b.astype(np.float64) @ a.astype(np.float64))
            m = (np.linalg.norm(new, axis=1) * (1 + rng.standard_normal(out_f) * 0.1)).astype(np.float32)
            tensors[f"base_model.model.{module}.lora_magnitude_vector"] = m
            magnitudes[module] = m
    if embedding_lora:
        emb = model.weights["model.embed_tokens.weight"]
        n, d = emb.shape
        a = (rng.standard_normal((r, n)) * std).astype(np.float32)
        b = (rng.standard_normal((d, r)) * std).astype(np.float32)
        tensors["base_model.model.model.embed_tokens.lora_embedding_A"] = a
        tensors["base_model.model.model.embed_tokens.lora_embedding_B"] = b
        factors["model.embed_tokens"] = (a, b, (alpha / math.sqrt(r)) if rslora else alpha / r)
    if save_embedding_layers:
        embed = model.weights["model.embed_tokens.weight"]
        if embedding_lora:
            tensors["base_model.model.model.embed_tokens.base_layer.weight"] = embed.copy()
        if "lm_head" in targets:
            head = model.weights.get("lm_head.weight", embed)
            tensors["base_model.model.lm_head.base_layer.weight"] = head.copy()
    replacements = {}
    for name, value in (modules_to_save or {}).items():
        tensors[f"base_model.model.{name}"] = value
        replacements[name] = value
    write_safetensors(path / "adapter_model.safetensors", tensors)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(model.path),
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "use_rslora": rslora,
        "use_dora": dora,
        "fan_in_fan_out": fan_in_fan_out,
        "target_modules": sorted(set(targets) | ({"embed_tokens"} if embedding_lora else set())),
        "rank_pattern": rank_pattern or {},
        "alpha_pattern": alpha_pattern or {},
        "modules_to_save": sorted({n.rsplit(".", 2)[-2] for n in (modules_to_save or {})}) or None,
        "bias": "none",
    }
    (path / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return TinyAdapter(path, config, factors, replacements, magnitudes)
