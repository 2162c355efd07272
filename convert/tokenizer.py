"""tokenizer.json (+ tokenizer_config.json, chat_template.jinja) -> GGUF tokenizer metadata.

Read without transformers or tokenizers: the JSON says everything llama.cpp needs.

* byte-level BPE (GPT-2 / Llama 3 / SmolLM / Qwen2 style) -> ``gpt2`` with merges; the
  pre-tokenizer is recognised from its regex or layout, and an unknown byte-level one falls
  back to the closest known type with a warning instead of failing;
* SentencePiece-style BPE (``▁`` words, byte fallback: Llama 2, TinyLlama, Mistral) -> ``llama``
  with scores derived from the merge ranks;
* Unigram (SentencePiece) -> ``t5`` (llama.cpp's Unigram tokenizer) with the model's scores;
* WordPiece (BERT) -> ``bert`` in llama.cpp's "phantom space" form.

Added tokens keep their kind: special ones are CONTROL, the others USER_DEFINED; rows of the
embedding beyond the tokenizer become UNUSED ``[PAD<i>]`` tokens.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.errors import ConversionError

from .hf import read_json

if TYPE_CHECKING:
    from gguf import GGUFWriter

log = logging.getLogger(__name__)

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Split regexes of byte-level pre-tokenizers llama.cpp knows, as written in tokenizer.json.
_LLAMA3_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
KNOWN_SPLIT_REGEXES = {_LLAMA3_RE: "llama-bpe", _QWEN2_RE: "qwen2", _GPT2_RE: "gpt-2"}


@dataclass
class Vocab:
    model: str
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] | None = None
    special: dict[str, int] = field(default_factory=dict)
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_sep: bool | None = None
    add_space_prefix: bool | None = None
    remove_extra_whitespaces: bool | None = None
    precompiled_charsmap: bytes | None = None
    token_type_count: int | None = None
    chat_template: str | list[dict[str, str]] | None = None
    files: list[Path] = field(default_factory=list)

    def write(self, w: GGUFWriter) -> None:
        w.add_tokenizer_model(self.model)
        w.add_tokenizer_pre(self.pre)
        w.add_token_list(self.tokens)
        w.add_token_types(self.types)
        if self.scores is not None:
            w.add_token_scores(self.scores)
        if self.merges is not None:
            w.add_token_merges(self.merges)
        if self.token_type_count is not None:
            w.add_token_type_count(self.token_type_count)
        adders = {
            "bos": w.add_bos_token_id,
            "eos": w.add_eos_token_id,
            "unk": w.add_unk_token_id,
            "sep": w.add_sep_token_id,
            "pad": w.add_pad_token_id,
            "mask": w.add_mask_token_id,
        }
        for kind, token_id in sorted(self.special.items()):
            adders[kind](token_id)
        if self.add_bos is not None:
            w.add_add_bos_token(self.add_bos)
        if self.add_eos is not None:
            w.add_add_eos_token(self.add_eos)
        if self.add_sep is not None:
            w.add_add_sep_token(self.add_sep)
        if self.add_space_prefix is not None:
            w.add_add_space_prefix(self.add_space_prefix)
        if self.remove_extra_whitespaces is not None:
            w.add_remove_extra_whitespaces(self.remove_extra_whitespaces)
        if self.precompiled_charsmap is not None:
            w.add_precompiled_charsmap(self.precompiled_charsmap)
        if self.chat_template:
            w.add_chat_template(self.chat_template)


def _content(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _walk(node: Any) -> list[dict[str, Any]]:
    """All components of a (possibly nested) normalizer / pre-tokenizer / processor."""
    if not isinstance(node, dict):
        return []
    out = [node]
    for key in ("pretokenizers", "normalizers", "processors"):
        for child in node.get(key) or []:
            out.extend(_walk(child))
    return out


def _model_type(model: dict[str, Any]) -> str:
    if "type" in model:
        return str(model["type"])
    if "merges" in model:
        return "BPE"
    if isinstance(model.get("vocab"), list):
        return "Unigram"
    if "continuing_subword_prefix" in model:
        return "WordPiece"
    raise ConversionError("tokenizer.json: cannot tell the tokenizer model type")


def byte_level_pre(tj: dict[str, Any], where: Path) -> str:
    """llama.cpp pre-tokenizer name for a byte-level BPE tokenizer.json."""
    parts = _walk(tj.get("pre_tokenizer"))
    kinds = [p.get("type") for p in parts]
    splits = [p for p in parts if p.get("type") == "Split"]
    digits = [p for p in parts if p.get("type") == "Digits"]
    byte_level = [p for p in parts if p.get("type") == "ByteLevel"]
    if byte_level and byte_level[0].get("add_prefix_space"):
        log.warning(
            "%s: ByteLevel add_prefix_space=true is not reproduced by llama.cpp; a leading space may differ",
            where,
        )
    if kinds == ["ByteLevel"] and byte_level[0].get("use_regex", True):
        return "gpt-2"
    if (
        len(digits) == 1
        and digits[0].get("individual_digits")
        and not splits
        and byte_level
        and byte_level[0].get("use_regex", True)
    ):
        return "smollm"
    if len(splits) == 1 and not digits:
        pattern = splits[0].get("pattern") or {}
        regex = pattern.get("Regex") if isinstance(pattern, dict) else None
        if regex in KNOWN_SPLIT_REGEXES:
            return KNOWN_SPLIT_REGEXES[regex]
    # Unknown: pick the closest type llama.cpp has and say so.
    text = json.dumps(tj.get("pre_tokenizer"))
    if r"\\p{N}{1,3}" in text:
        guess = "llama-bpe"
    elif (digits and digits[0].get("individual_digits")) or r"\\p{N}|" in text:
        guess = "qwen2" if splits else "smollm"
    else:
        guess = "gpt-2"
    log.warning(
        "%s: byte-level pre-tokenizer not recognised (%s); using llama.cpp's %r, the closest match. "
        "Tokenization of digits, whitespace runs or punctuation may differ slightly from the original",
        where,
        ", ".join(str(k) for k in kinds) or "none",
        guess,
    )
    return guess


def _chat_template(
    model_dir: Path, tc: dict[str, Any]
) -> tuple[str | list[dict[str, str]] | None, list[Path]]:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8"), [jinja]
    cj = model_dir / "chat_template.json"
    if cj.is_file():
        tmpl = read_json(cj, "a chat template").get("chat_template")
        if isinstance(tmpl, str):
            return tmpl, [cj]
    tmpl = tc.get("chat_template")
    if isinstance(tmpl, str) or (isinstance(tmpl, list) and all(isinstance(t, dict) for t in tmpl)):
        return tmpl, []
    return None, []


def _flag(tc: dict[str, Any], key: str) -> bool | None:
    value = tc.get(key)
    return value if isinstance(value, bool) else None


def _template_flags(
    tj: dict[str, Any], ids: dict[str, int], bos: int | None, eos: int | None
) -> tuple[bool, bool]:
    """add_bos/add_eos implied by a TemplateProcessing post-processor."""
    for proc in _walk(tj.get("post_processor")):
        if proc.get("type") != "TemplateProcessing":
            continue
        single = proc.get("single") or []
        if not single:
            continue

        def special_id(item: dict[str, Any]) -> int | None:
            tok = item.get("SpecialToken")
            return ids.get(tok["id"]) if isinstance(tok, dict) else None

        first, last = special_id(single[0]), special_id(single[-1])
        return (first is not None and first == bos), (last is not None and last == eos)
    return False, False


@dataclass
class _TokenizerFiles:
    """A Hugging Face tokenizer directory, read: tokenizer.json and its optional configs."""

    path: Path  # tokenizer.json
    tj: dict[str, Any]
    tc_path: Path  # tokenizer_config.json (may be missing: then tc is {})
    tc: dict[str, Any]
    stm: dict[str, Any]  # special_tokens_map.json, {} when missing
    files: list[Path]  # the files read, for provenance
    model: dict[str, Any]  # tokenizer.json's "model" section
    mtype: str  # BPE, Unigram or WordPiece


def build_vocab(model_dir: Path, config: dict[str, Any], n_vocab: int, arch: str) -> Vocab:
    """Read the tokenizer files of ``model_dir``; ``n_vocab`` is the number of embedding rows."""
    tf = _read_tokenizer(model_dir)
    text, scores_by_id, added = _vocab_texts(tf)
    ids = {t: i for i, t in sorted(text.items(), reverse=True)}  # lowest id wins on duplicates
    size = max(text) + 1 if text else 0
    if size > n_vocab:
        raise ConversionError(
            f"{tf.path} has {size} tokens but the model's embedding has {n_vocab} rows; "
            "the tokenizer belongs to another model (or the adapter's resized embedding is missing)"
        )
    special = _special_tokens(tf, config, ids, n_vocab)
    tokens, types = _tokens_and_types(text, added, special, bool(tf.model.get("byte_fallback")), n_vocab)
    tokens, vocab_kw = _model_kw(tf, config, tokens, types, ids, special, scores_by_id, n_vocab)
    if vocab_kw["model"] != "bert":
        _set_bos_eos(vocab_kw, tf, ids, special)
    template, template_files = _chat_template(model_dir, tf.tc)
    return Vocab(
        tokens=tokens,
        types=types,
        special=special,
        chat_template=template,
        files=tf.files + template_files,
        **vocab_kw,
    )


def _read_tokenizer(model_dir: Path) -> _TokenizerFiles:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        hint = (
            " (found tokenizer.model: save the tokenizer as tokenizer.json with a fast tokenizer)"
            if (model_dir / "tokenizer.model").is_file()
            else ""
        )
        raise ConversionError(f"missing tokenizer.json in {model_dir}{hint}")
    tj = read_json(path, "a Hugging Face tokenizer")
    tc_path = model_dir / "tokenizer_config.json"
    tc = read_json(tc_path, "a tokenizer config") if tc_path.is_file() else {}
    stm_path = model_dir / "special_tokens_map.json"
    stm = read_json(stm_path, "a special tokens map") if stm_path.is_file() else {}
    files = [path] + [p for p in (tc_path, stm_path) if p.is_file()]
    model = tj.get("model")
    if not isinstance(model, dict):
        raise ConversionError(f"{path} has no 'model' section; is it a Hugging Face tokenizer.json?")
    return _TokenizerFiles(path, tj, tc_path, tc, stm, files, model, _model_type(model))


def _vocab_texts(tf: _TokenizerFiles) -> tuple[dict[int, str], dict[int, float], dict[int, dict[str, Any]]]:
    """id -> text (the model's vocabulary, then the added tokens), Unigram scores, added tokens by id."""
    text: dict[int, str] = {}
    scores_by_id: dict[int, float] = {}
    raw_vocab = tf.model.get("vocab")
    if tf.mtype == "Unigram":
        if not isinstance(raw_vocab, list):
            raise ConversionError(f"{tf.path}: Unigram vocab should be a list of [piece, score]")
        for i, (piece, score) in enumerate(raw_vocab):
            text[i] = piece
            scores_by_id[i] = float(score)
    else:
        if not isinstance(raw_vocab, dict):
            raise ConversionError(f"{tf.path}: {tf.mtype} vocab should be an object of token -> id")
        for piece, i in raw_vocab.items():
            text[int(i)] = piece
    added: dict[int, dict[str, Any]] = {}
    for tok in tf.tj.get("added_tokens") or []:
        i = int(tok["id"])
        text[i] = tok["content"]
        added[i] = tok
    return text, scores_by_id, added


def _special_id(
    tf: _TokenizerFiles, config: dict[str, Any], ids: dict[str, int], n_vocab: int, kind: str
) -> int | None:
    """A special token: by its text in the tokenizer configs, else by its id in the model config."""
    for source in (tf.tc, tf.stm):
        c = _content(source.get(f"{kind}_token"))
        if c is not None and c in ids:
            return ids[c]
    cfg = config.get(f"{kind}_token_id")
    if isinstance(cfg, list):
        cfg = cfg[0] if cfg else None
    return int(cfg) if isinstance(cfg, int) and 0 <= cfg < n_vocab else None


def _special_tokens(
    tf: _TokenizerFiles, config: dict[str, Any], ids: dict[str, int], n_vocab: int
) -> dict[str, int]:
    special: dict[str, int] = {}
    for kind in ("bos", "eos", "unk", "pad", "sep", "mask"):
        sid = _special_id(tf, config, ids, n_vocab, kind)
        if sid is not None:
            special[kind] = sid
    unk_text = tf.model.get("unk_token")
    if "unk" not in special and isinstance(unk_text, str) and unk_text in ids:
        special["unk"] = ids[unk_text]
    if tf.mtype == "Unigram" and "unk" not in special and isinstance(tf.model.get("unk_id"), int):
        special["unk"] = int(tf.model["unk_id"])
    return special


def _token_type(
    i: int, t: str, added: dict[int, dict[str, Any]], special: dict[str, int], byte_fallback: bool
) -> int:
    if i in added:
        return CONTROL if added[i].get("special") else USER_DEFINED
    if i == special.get("unk"):
        return UNKNOWN
    if byte_fallback and len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
        return BYTE
    return NORMAL


def _tokens_and_types(
    text: dict[int, str],
    added: dict[int, dict[str, Any]],
    special: dict[str, int],
    byte_fallback: bool,
    n_vocab: int,
) -> tuple[list[str], list[int]]:
    """One token per embedding row; rows beyond the tokenizer are UNUSED ``[PAD<i>]``."""
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        if i not in text:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        else:
            tokens.append(text[i])
            types.append(_token_type(i, text[i], added, special, byte_fallback))
    return tokens, types


def _model_kw(
    tf: _TokenizerFiles,
    config: dict[str, Any],
    tokens: list[str],
    types: list[int],
    ids: dict[str, int],
    special: dict[str, int],
    scores_by_id: dict[int, float],
    n_vocab: int,
) -> tuple[list[str], dict[str, Any]]:
    """The llama.cpp tokenizer model for this tokenizer type: its Vocab fields (and the tokens,
    which WordPiece rewrites)."""
    pre_parts = _walk(tf.tj.get("pre_tokenizer"))
    norm_parts = _walk(tf.tj.get("normalizer"))
    dec_parts = _walk(tf.tj.get("decoder"))
    if tf.mtype == "WordPiece":
        return _wordpiece(tf, config, tokens, types, ids, special, norm_parts)
    if tf.mtype == "BPE" and any(p.get("type") == "ByteLevel" for p in pre_parts + dec_parts):
        return tokens, {"model": "gpt2", "pre": byte_level_pre(tf.tj, tf.path), "merges": _merges(tf.model)}
    if tf.mtype == "BPE":
        return tokens, _sentencepiece_bpe(tf, tokens, pre_parts, norm_parts)
    if tf.mtype == "Unigram":
        return tokens, _unigram(tf, scores_by_id, n_vocab, pre_parts, norm_parts)
    raise ConversionError(f"{tf.path}: tokenizer model {tf.mtype} is not supported (BPE, Unigram, WordPiece)")


def _merges(model: dict[str, Any]) -> list[str]:
    return [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]


def _wordpiece(
    tf: _TokenizerFiles,
    config: dict[str, Any],
    tokens: list[str],
    types: list[int],
    ids: dict[str, int],
    special: dict[str, int],
    norm_parts: list[dict[str, Any]],
) -> tuple[list[str], dict[str, Any]]:
    """BERT in llama.cpp's "phantom space" form; [CLS] becomes the BOS token (added to ``special``)."""
    prefix = tf.model.get("continuing_subword_prefix", "##")
    tokens = [
        tok if ty in (CONTROL, UNUSED) else (tok[len(prefix) :] if tok.startswith(prefix) else "\u2581" + tok)
        for tok, ty in zip(tokens, types, strict=True)
    ]
    if "bos" not in special:
        cls = _content(tf.tc.get("cls_token")) or _content(tf.stm.get("cls_token")) or "[CLS]"
        if cls in ids:
            special["bos"] = ids[cls]
    lower = any(p.get("lowercase") for p in norm_parts if p.get("type") == "BertNormalizer")
    if not lower:
        log.warning("%s: cased WordPiece; llama.cpp's BERT tokenizer always lower-cases", tf.path)
    return tokens, {
        "model": "bert",
        "pre": "default",
        "add_bos": True,
        "add_eos": False,
        "add_sep": True,
        "token_type_count": int(config.get("type_vocab_size", 1)),
    }


def _sentencepiece_bpe(
    tf: _TokenizerFiles, tokens: list[str], pre_parts: list[dict[str, Any]], norm_parts: list[dict[str, Any]]
) -> dict[str, Any]:
    """SentencePiece-style BPE -> llama.cpp's ``llama`` model, scores from the merge ranks."""
    rank: dict[str, int] = {}
    for r, m in enumerate(_merges(tf.model)):
        a, _, b = m.partition(" ")
        rank.setdefault(a + b, r)
    scores = [-float(rank[t]) if t in rank else 0.0 for t in tokens]
    if any(p.get("type") == "Metaspace" for p in pre_parts):
        log.info(
            "%s: Metaspace; text that starts with whitespace gets one more '▁' in llama.cpp than in HF",
            tf.path,
        )
    return {
        "model": "llama",
        "pre": "default",
        "merges": None,
        "scores": scores,
        "add_space_prefix": _adds_space_prefix(pre_parts, norm_parts),
    }


def _unigram(
    tf: _TokenizerFiles,
    scores_by_id: dict[int, float],
    n_vocab: int,
    pre_parts: list[dict[str, Any]],
    norm_parts: list[dict[str, Any]],
) -> dict[str, Any]:
    """Unigram (SentencePiece) -> llama.cpp's ``t5`` model with the model's own scores."""
    scores = [scores_by_id.get(i, -10000.0) for i in range(n_vocab)]
    log.info(
        "%s: Unigram tokenizer; text that starts with whitespace gets one more '▁' in llama.cpp than in HF",
        tf.path,
    )
    charsmap = next(
        (p.get("precompiled_charsmap") for p in norm_parts if p.get("type") == "Precompiled"), None
    )
    vocab_kw: dict[str, Any] = {
        "model": "t5",
        "pre": "default",
        "scores": scores,
        "add_space_prefix": _adds_space_prefix(pre_parts, norm_parts),
        "remove_extra_whitespaces": False,
    }
    if charsmap:
        import base64

        vocab_kw["precompiled_charsmap"] = base64.b64decode(charsmap)
    return vocab_kw


def _set_bos_eos(
    vocab_kw: dict[str, Any], tf: _TokenizerFiles, ids: dict[str, int], special: dict[str, int]
) -> None:
    """add_bos/add_eos: the tokenizer config's flags, else what the post-processor's template implies."""
    bos, eos = special.get("bos"), special.get("eos")
    t_bos, t_eos = _template_flags(tf.tj, ids, bos, eos)
    add_bos = _flag(tf.tc, "add_bos_token")
    add_eos = _flag(tf.tc, "add_eos_token")
    vocab_kw["add_bos"] = add_bos if add_bos is not None else t_bos
    vocab_kw["add_eos"] = add_eos if add_eos is not None else t_eos
    if vocab_kw["add_bos"] and bos is None:
        raise ConversionError(f"{tf.tc_path}: add_bos_token is true but no BOS token is defined")


def _adds_space_prefix(pre_parts: list[dict[str, Any]], norm_parts: list[dict[str, Any]]) -> bool:
    for p in pre_parts:
        if p.get("type") == "Metaspace":
            scheme = p.get("prepend_scheme")
            if scheme is not None:
                return scheme != "never"
            return bool(p.get("add_prefix_space", True))
    return any(p.get("type") == "Prepend" and p.get("prepend") == "\u2581" for p in norm_parts)
