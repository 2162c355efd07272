"""numpy reference forward passes with Hugging Face semantics (the oracle of the convert tests).

Written from the model definitions (BertModel, LlamaForCausalLM, Qwen2ForCausalLM), independent
of the converter: weights are HF-named float arrays, layouts are HF's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _erf(x: np.ndarray) -> np.ndarray:
    """erf, vectorised (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7: far below what the tests resolve)."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def bert_embedding(w: dict[str, np.ndarray], cfg: dict[str, Any], ids: list[int]) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embedding (sentence-transformers semantics)."""
    g = {k.removeprefix("bert."): v.astype(np.float64) for k, v in w.items()}
    n = len(ids)
    eps = cfg.get("layer_norm_eps", 1e-12)
    x = g["embeddings.word_embeddings.weight"][ids] + g["embeddings.position_embeddings.weight"][:n]
    x = x + g["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, g["embeddings.LayerNorm.weight"], g["embeddings.LayerNorm.bias"], eps)
    nh = cfg["num_attention_heads"]
    hd = cfg["hidden_size"] // nh
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(name: str, h: np.ndarray, p: str = p) -> np.ndarray:
            return h @ g[p + name + ".weight"].T + g[p + name + ".bias"]

        q = lin("attention.self.query", x).reshape(n, nh, hd).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(n, nh, hd).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(n, nh, hd).transpose(1, 0, 2)
        att = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(hd)) @ v
        att = att.transpose(1, 0, 2).reshape(n, -1)
        x = layer_norm(
            x + lin("attention.output.dense", att),
            g[p + "attention.output.LayerNorm.weight"],
            g[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        h = gelu(lin("intermediate.dense", x))
        x = layer_norm(
            x + lin("output.dense", h), g[p + "output.LayerNorm.weight"], g[p + "output.LayerNorm.bias"], eps
        )
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def llama3_inv_freq(inv: np.ndarray, scaling: dict[str, Any]) -> np.ndarray:
    """transformers' "llama3" rope_type: low frequencies slowed by factor, a smooth band in between."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > old / low, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    return np.where(medium, smoothed, scaled)


def _rope(x: np.ndarray, pos: np.ndarray, theta: float, scaling: dict[str, Any] | None = None) -> np.ndarray:
    """HF rotate_half RoPE on (heads, n, head_dim)."""
    hd = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    if scaling and scaling.get("rope_type") == "llama3":
        inv = llama3_inv_freq(inv, scaling)
    ang = pos[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, -1)
    sin = np.concatenate([np.sin(ang)] * 2, -1)
    half = hd // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


def decoder_logits(w: dict[str, np.ndarray], cfg: dict[str, Any], ids: list[int]) -> np.ndarray:
    """Logits (n, vocab) of a llama / qwen2 decoder (causal attention, GQA, SwiGLU, RMSNorm)."""
    g = {k: v.astype(np.float64) for k, v in w.items()}
    n = len(ids)
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or cfg["hidden_size"] // nh
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    pos = np.arange(n, dtype=np.float64)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    x = g["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."

        def lin(name: str, h: np.ndarray, p: str = p) -> np.ndarray:
            out = h @ g[p + name + ".weight"].T
            b = g.get(p + name + ".bias")
            return out + b if b is not None else out

        h = rms_norm(x, g[p + "input_layernorm.weight"], eps)
        q = lin("self_attn.q_proj", h).reshape(n, nh, hd).transpose(1, 0, 2)
        k = lin("self_attn.k_proj", h).reshape(n, nkv, hd).transpose(1, 0, 2)
        v = lin("self_attn.v_proj", h).reshape(n, nkv, hd).transpose(1, 0, 2)
        scaling = cfg.get("rope_scaling")
        q, k = _rope(q, pos, theta, scaling), _rope(k, pos, theta, scaling)
        rep = nh // nkv
        k, v = np.repeat(k, rep, 0), np.repeat(v, rep, 0)
        att = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(hd) + mask) @ v
        x = x + lin("self_attn.o_proj", att.transpose(1, 0, 2).reshape(n, nh * hd))
        h = rms_norm(x, g[p + "post_attention_layernorm.weight"], eps)
        gate = lin("mlp.gate_proj", h)
        x = x + lin("mlp.down_proj", gate / (1 + np.exp(-gate)) * lin("mlp.up_proj", h))
    x = rms_norm(x, g["model.norm.weight"], eps)
    head = g.get("lm_head.weight", g["model.embed_tokens.weight"])
    return x @ head.T
