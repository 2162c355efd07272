"""Library entry points: :func:`convert_model` and :func:`convert_adapter`.

Both validate everything they can before writing a byte (architecture, adapter shapes and
targets, output path), then stream tensor by tensor into a temporary file next to OUT that
is renamed into place only when complete. Merges happen in float32 and each tensor is cast
once, to its output type (quantized types: straight from the float32 merge, see quantize.py).

For the build recipes::

    from convert.api import convert_model, convert_adapter
    result = convert_model("path/to/hf-model", "out.gguf", adapters=[("path/to/lora", 1.0)],
                           quant="Q4_K_M", threads=4, progress=None)
    result.provenance  # the JSON record embedded in the GGUF (inputs' sha256, adapters, type, version)
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import ConversionError
from assistant.io import clean_partials

from . import provenance as prov
from .peft import Adapter, LoraModule, load_adapter
from .quant_types import DEFAULT_QUANT, GGML_TYPE_BITS, QuantType
from .quantize import default_threads, llama_quantize, parse_quant
from .source import ADAPTER_PATTERNS, BaseModel, SourceTensor, open_base, resolve
from .tokenizer import build_vocab
from .writer import PlannedTensor, ProgressFn, atomic_path, temp_path, write_gguf

log = logging.getLogger(__name__)

AdapterSpec = tuple[str | os.PathLike[str], float]


@dataclass
class ConversionResult:
    out: Path
    output_type: str
    n_tensors: int
    size: int
    seconds: float
    provenance: dict[str, Any] = field(default_factory=dict)


def _check_out(out: Path, inputs: Sequence[Path]) -> None:
    if out.is_dir():
        raise ConversionError(f"output {out} is a directory; give a file name ending in .gguf")
    if not out.parent.is_dir():
        raise ConversionError(f"output directory {out.parent} does not exist; create it first")
    if not os.access(out.parent, os.W_OK):
        raise ConversionError(f"output directory {out.parent} is not writable; choose another -o")
    for p in inputs:
        try:
            same = out.exists() and os.path.samefile(out, p)
        except OSError:
            same = False
        if same or out.resolve() == Path(p).resolve():
            raise ConversionError(f"output {out} is one of the input files; write to another path")


@dataclass
class _Merge:
    """What the adapters do to one base tensor."""

    loras: list[tuple[Adapter, LoraModule]] = field(default_factory=list)
    replacement: tuple[Adapter, str] | None = None


def _adapter_targets(base: BaseModel, adapters: list[Adapter]) -> dict[str, _Merge]:
    """GGUF tensor name -> merge work; every target is checked against the base first."""
    arch = base.arch
    work: dict[str, _Merge] = {}
    embed_g = arch.gguf_name(f"{arch.embed_module}.weight") if arch.embed_module else None
    output_g = arch.gguf_name(f"{arch.output_module}.weight") if arch.output_module else None
    for ad in adapters:
        for module, m in ad.modules.items():
            hf_name = f"{arch.normalise(module)}.weight"
            gname = arch.gguf_name(hf_name)
            target = base.find(gname) if gname else None
            if gname == output_g and target is None and embed_g is not None:
                target = base.find(embed_g)  # tied embeddings: the head is the embedding matrix
            if gname is None or target is None:
                raise ConversionError(
                    f"adapter {ad.path} targets module {module}, which the base {base.name} ({arch.name}) does not have; "
                    "was it trained for another model?"
                )
            a = ad.file.tensors[m.a_key].shape
            b = ad.file.tensors[m.b_key].shape
            delta_shape = (a[1], b[0]) if m.embedding else (b[0], a[1])
            if tuple(delta_shape) != tuple(target.shape):
                raise ConversionError(
                    f"adapter {ad.path} does not fit the base {base.name}: module {module} gives a "
                    f"{list(delta_shape)} update for a {list(target.shape)} weight; was it trained for another model?"
                )
            work.setdefault(gname, _Merge()).loras.append((ad, m))
        for hf_name, key in ad.replacements.items():
            gname = arch.gguf_name(hf_name)
            target = base.find(gname) if gname else None
            if gname is None or (target is None and gname != output_g):
                raise ConversionError(
                    f"adapter {ad.path} replaces {hf_name}, which the base {base.name} ({arch.name}) does not have; "
                    "was it trained for another model?"
                )
            shape = ad.file.tensors[key].shape
            ref = target or (base.find(embed_g) if embed_g else None)
            resizable = gname in (embed_g, output_g)
            if (
                ref is not None
                and tuple(shape) != tuple(ref.shape)
                and not (resizable and len(shape) == 2 and shape[1:] == ref.shape[1:])
            ):
                raise ConversionError(
                    f"adapter {ad.path} does not fit the base {base.name}: {hf_name} is {list(shape)} "
                    f"in the adapter but {list(ref.shape)} in the base"
                )
            work.setdefault(gname, _Merge()).replacement = (ad, key)
        for hf_name, key in ad.base_copies.items():
            ref = _copy_target(base, hf_name)
            shape = tuple(ad.file.tensors[key].shape)
            if ref is None:
                raise ConversionError(
                    f"adapter {ad.path} has a copy of {hf_name} (save_embedding_layers), which the base {base.name} "
                    f"({arch.name}) does not have; was it trained for another model?"
                )
            if shape != tuple(ref.shape):
                raise ConversionError(
                    f"adapter {ad.path} was trained for another base: its copy of {hf_name} is {list(shape)}, "
                    f"the base {base.name} has {list(ref.shape)} (vocabulary resized?)"
                )
    return work


# Relative difference (Frobenius) a save_embedding_layers copy may have from the base's tensor:
# float storage only rounds (bf16: 2^-9 per value); a quantized GGUF base is further off.
COPY_TOLERANCE = {"float": 1e-2, "quantized": 0.25}


def _copy_target(base: BaseModel, hf_name: str) -> SourceTensor | None:
    """The base tensor an adapter's copy stands for (a tied head is the embedding matrix)."""
    arch = base.arch
    gname = arch.gguf_name(hf_name)
    target = base.find(gname) if gname else None
    output_g = arch.gguf_name(f"{arch.output_module}.weight") if arch.output_module else None
    if target is None and gname is not None and gname == output_g and arch.embed_module:
        embed_g = arch.gguf_name(f"{arch.embed_module}.weight")
        target = base.find(embed_g) if embed_g else None
    return target


def _check_base_copies(base: BaseModel, adapters: list[Adapter]) -> None:
    """PEFT's saved copy of a LoRA-wrapped embedding or head must be the base's own tensor."""
    for ad in adapters:
        for hf_name, key in ad.base_copies.items():
            t = _copy_target(base, hf_name)
            assert t is not None  # _adapter_targets checked it
            mine = base.arch.transform(t.gguf_name, ad.tensor(key), base.hp)
            theirs = t.load()
            t.release()
            kind = "float" if t.dtype in ("F32", "F16", "BF16", "F64") else "quantized"
            scale = float(np.linalg.norm(theirs)) or 1.0
            diff = float(np.linalg.norm(mine - theirs)) / scale
            del mine, theirs
            if not diff <= COPY_TOLERANCE[kind]:
                raise ConversionError(
                    f"adapter {ad.path} was trained for another base: its copy of {hf_name} differs from "
                    f"{base.name}'s (relative difference {diff:.3g}); use the base it was trained on"
                )
            log.info("adapter %s: its copy of %s matches the base (difference %.2g)", ad.path, hf_name, diff)


def _merged_loader(base: BaseModel, t: SourceTensor, gname: str, merge: _Merge) -> Any:
    arch, hp = base.arch, base.hp

    def load() -> np.ndarray:
        if merge.replacement is not None:
            ad, key = merge.replacement
            w = arch.transform(gname, ad.tensor(key), hp)
        else:
            w = t.load()
            t.release()
        if w.dtype != np.float32 or not w.flags.writeable:
            w = np.array(w, dtype=np.float32)
        for ad, m in merge.loras:
            d = arch.transform(gname, ad.delta(m, ad.user_scale), hp)
            if w.shape != d.shape:
                raise ConversionError(
                    f"adapter {ad.path}: the update for {m.module} is {list(d.shape)} but the weight is {list(w.shape)} "
                    "(vocabulary resized by another adapter?)"
                )
            w += d
            del d
            if m.magnitude_key is not None:
                mag = arch.transform(gname, ad.magnitude(m), hp)  # type: ignore[arg-type]
                norm = np.linalg.norm(w, axis=1)
                w *= (mag / np.maximum(norm, np.float32(1e-12)))[:, None].astype(np.float32)
        return w

    return load


def _plan(base: BaseModel, adapters: list[Adapter]) -> list[PlannedTensor]:
    arch = base.arch
    work = _adapter_targets(base, adapters)
    embed_g = arch.gguf_name(f"{arch.embed_module}.weight") if arch.embed_module else None
    output_g = arch.gguf_name(f"{arch.output_module}.weight") if arch.output_module else None
    plan: list[PlannedTensor] = []
    for t in base.tensors:
        merge = work.get(t.gguf_name)
        if merge is None:
            plan.append(
                PlannedTensor(
                    t.gguf_name,
                    t.shape,
                    t.load,
                    t.dtype,
                    False,
                    t.load_raw,
                    t.release,
                    t.origin,
                    release_range=t.release_range,
                )
            )
            continue
        shape = t.shape
        if merge.replacement is not None:
            ad, key = merge.replacement
            shape = ad.file.tensors[key].shape
        plan.append(
            PlannedTensor(
                t.gguf_name,
                tuple(shape),
                _merged_loader(base, t, t.gguf_name, merge),
                t.dtype,
                True,
                origin=t.origin,
            )
        )
    # Tied embeddings: the base has no output tensor. If an adapter changes the embedding or the
    # head, they are no longer the same matrix and the head is written explicitly.
    if output_g and embed_g and base.find(output_g) is None and base.find(embed_g) is not None:
        embed = base.find(embed_g)
        assert embed is not None
        head = work.get(output_g)
        embed_work = work.get(embed_g)
        if head is None and embed_work is not None:
            resized = embed_work.replacement is not None and any(
                p.name == embed_g and p.shape != embed.shape for p in plan
            )
            if not resized:
                head = _Merge()  # the head keeps the base embedding
            else:
                log.warning("adapter resizes the tied embedding and leaves lm_head alone: keeping them tied")
        if head is not None:
            head_merge = _Merge(head.loras, head.replacement)
            if head_merge.replacement is None:
                loader = _merged_loader(base, embed, output_g, head_merge)
                shape = embed.shape
            else:
                ad, key = head_merge.replacement
                loader = _merged_loader(base, embed, output_g, head_merge)
                shape = tuple(ad.file.tensors[key].shape)
            plan.append(PlannedTensor(output_g, shape, loader, embed.dtype, True, origin=embed.origin))
    for p in plan:
        p.force_f32 = p.name.startswith(arch.keep_f32) if arch.keep_f32 else False
    return plan


def _n_vocab(plan: list[PlannedTensor], base: BaseModel) -> int:
    embed_g = base.arch.gguf_name(f"{base.arch.embed_module}.weight") if base.arch.embed_module else None
    for p in plan:
        if p.name == embed_g:
            return int(p.shape[0])
    raise ConversionError(f"{base.path}: no token embedding tensor found")


def _open_adapters(adapters: Sequence[AdapterSpec]) -> list[Adapter]:
    opened: list[Adapter] = []
    try:
        for spec, scale in adapters:
            opened.append(load_adapter(resolve(spec, "adapter", ADAPTER_PATTERNS), float(scale)))
    except BaseException:
        for a in opened:
            a.close()
        raise
    return opened


def _tokenizer_dir(base: BaseModel, adapters: list[Adapter]) -> Path | None:
    with_tok = [a.tokenizer_dir for a in adapters if a.tokenizer_dir is not None]
    if with_tok:
        if len(with_tok) > 1:
            log.warning("several adapters bring a tokenizer; using the one of %s", with_tok[-1])
        return with_tok[-1]
    return base.path if base.kind == "hf" else None


def _metadata_writer(
    base: BaseModel,
    adapters: list[Adapter],
    n_vocab: int,
    record: dict[str, Any],
    file_type: int | None,
    *,
    quantized: bool = False,
    extra_metadata: dict[str, str] | None = None,
) -> tuple[Any, list[Path]]:
    tok_dir = _tokenizer_dir(base, adapters)
    vocab = (
        build_vocab(tok_dir, base.config if base.kind == "hf" else {}, n_vocab, base.arch.name)
        if tok_dir
        else None
    )
    if vocab is not None and base.kind == "gguf":
        log.info("using the tokenizer of %s", tok_dir)

    def write(w: Any) -> None:
        from gguf import GGUFValueType

        if base.kind == "hf":
            w.add_type("model")
            w.add_name(base.name)
            base.arch.metadata(w, base.config, base.path, base.hp)
            if base.arch.name != "bert":
                w.add_vocab_size(n_vocab)
        else:
            for key, value, vtype, sub in base.gguf_fields:
                if vocab is not None and key.startswith("tokenizer."):
                    continue
                if extra_metadata and key in extra_metadata:
                    continue
                if key == f"{base.arch.name}.vocab_size":
                    value = n_vocab
                if vtype == GGUFValueType.ARRAY:
                    w.add_key_value(key, value, vtype, sub_type=sub)
                else:
                    w.add_key_value(key, value, vtype)
        if file_type is not None:
            w.add_file_type(file_type)
        if quantized:
            w.add_quantization_version(2)  # GGML_QNT_VERSION, as llama_model_quantize records it
        if vocab is not None:
            vocab.write(w)
        for key, text in sorted((extra_metadata or {}).items()):
            w.add_string(key, text)
        w.add_string(prov.KEY, prov.dumps(record))

    return write, (vocab.files if vocab is not None else [])


def convert_model(
    base: str | os.PathLike[str],
    out: str | os.PathLike[str],
    adapters: Sequence[AdapterSpec] = (),
    quant: str = DEFAULT_QUANT,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    provenance_extra: dict[str, Any] | None = None,
    provenance_names: tuple[str, list[str]] | None = None,
    metadata: dict[str, str] | None = None,
) -> ConversionResult:
    """Merge ``adapters`` (path, scale) into ``base`` and write ``out`` as a GGUF of type ``quant``.

    ``adapters`` are (path or repo id, scale) pairs, merged as ``W + sum(scale * delta)``;
    ``provenance_extra`` adds keys to the provenance record (e.g. a recipe name);
    ``provenance_names`` (base, [adapter, ...]) are recorded instead of the resolved paths;
    ``metadata`` adds string keys to the GGUF (e.g. a default system prompt).
    """
    started = time.monotonic()
    q = parse_quant(quant)
    out_path = Path(out).expanduser().absolute()
    if threads is not None and threads < 1:
        raise ConversionError(f"--threads must be at least 1, got {threads}")
    src = open_base(base)
    opened: list[Adapter] = []
    try:
        _warn_requantize(src, q)
        opened = _open_adapters(adapters)
        inputs = list(src.files) + [f for a in opened for f in a.input_files()]
        _check_out(out_path, inputs)
        clean_partials(out_path)  # temp files of conversions that were killed
        plan = _plan(src, opened)
        _check_base_copies(src, opened)
        n_vocab = _n_vocab(plan, src)
        t0 = time.monotonic()
        record = prov.build(
            base=src.path,
            base_files=list(src.files),
            adapters=[(a.path, a.user_scale, a.input_files()) for a in opened],
            output_type=q.name,
            extra=provenance_extra,
            names=provenance_names,
        )
        log.info("hashed the inputs in %.1f s", time.monotonic() - t0)
        n_threads = threads or default_threads()
        types = None if q.is_float or src.desc is None else _quant_plan(src, plan, q)
        ftype = q.ftype if q.is_float or types is not None else None
        meta, _ = _metadata_writer(
            src, opened, n_vocab, record, ftype, quantized=types is not None, extra_metadata=metadata
        )
        if q.is_float:
            with atomic_path(out_path) as tmp:
                write_gguf(tmp, out_path, src.arch.name, meta, plan, q.name, progress)
        elif types is not None:
            # llama.cpp chose the per-tensor types; its ggml code quantizes each tensor as it streams by
            with atomic_path(out_path) as tmp:
                write_gguf(
                    tmp, out_path, src.arch.name, meta, plan, q.name, progress, types=types, threads=n_threads
                )
        else:
            _write_quantized(src, out_path, meta, plan, q, n_threads, progress)
    finally:
        for a in opened:
            a.close()
        src.close()
    return ConversionResult(
        out_path, q.name, len(plan), out_path.stat().st_size, time.monotonic() - started, record
    )


def _warn_requantize(src: BaseModel, q: QuantType) -> None:
    """A quantized GGUF base is dequantized and quantized again: the errors of both add up."""
    if src.kind != "gguf" or q.is_float:
        return
    kinds = Counter(
        t.dtype for t in src.tensors if len(t.shape) >= 2 and t.dtype not in ("F32", "F16", "BF16", "F64")
    )
    if not kinds:
        return
    dtype = kinds.most_common(1)[0][0]
    if GGML_TYPE_BITS.get(dtype, q.bits) < q.bits:  # e.g. Q4_1 -> Q8_0: the values are kept almost exactly
        log.info(
            "%s is quantized (%s): %s stores its values again at %d bits",
            src.path.name,
            dtype,
            q.name,
            q.bits,
        )
        return
    log.warning(
        "%s is already quantized (%s): converting it to %s quantizes it a second time and loses quality; "
        "start from its F16/F32 GGUF or the Hugging Face model if you have one",
        src.path.name,
        dtype,
        q.name,
    )


def _quant_plan(src: BaseModel, plan: list[PlannedTensor], q: QuantType) -> list[str] | None:
    """llama.cpp's per-tensor types for ``q`` (the Q4_K_M... mix), or None to use llama_model_quantize."""
    from .quantize import plan_types
    from .writer import storage_type

    assert src.desc is not None
    inputs = [(p.name, p.shape, storage_type(p, "exact")) for p in plan]
    return plan_types(src.desc, inputs, q)


def _write_quantized(
    src: BaseModel,
    out: Path,
    meta: Any,
    plan: list[PlannedTensor],
    q: QuantType,
    threads: int,
    progress: ProgressFn | None,
) -> None:
    from .writer import Progress

    with temp_path(out, "exact.") as mid:
        t0 = time.monotonic()
        write_gguf(mid, out, src.arch.name, meta, plan, "exact", progress)
        log.info("wrote the exact intermediate %s in %.1f s", mid.name, time.monotonic() - t0)
        src.close()  # the quantizer reads only the intermediate file
        if progress is not None:
            progress(Progress("quantize", 0, len(plan), 0, 0, time.monotonic()))
        with atomic_path(out) as tmp:
            try:
                t0 = time.monotonic()
                llama_quantize(mid, tmp, q, threads)
                log.info("llama.cpp quantized to %s in %.1f s", q.name, time.monotonic() - t0)
            except OSError as exc:  # pragma: no cover - llama.cpp reports errors as return codes
                raise ConversionError(f"cannot write {out}: {exc}") from exc
            if tmp.stat().st_size == 0:
                raise ConversionError(
                    f"llama.cpp wrote nothing for {out}; disk full? (--verbose shows its log)"
                )


# ----------------------------------------------------------------------------------------------
# GGUF LoRA export


def convert_adapter(
    adapter: str | os.PathLike[str],
    base: str | os.PathLike[str],
    out: str | os.PathLike[str],
    outtype: str = "f16",
    progress: ProgressFn | None = None,
) -> ConversionResult:
    """Write a PEFT LoRA adapter as a GGUF LoRA that llama.cpp applies at run time over ``base``."""
    started = time.monotonic()
    kind = outtype.strip().upper()
    if kind not in ("F32", "F16", "Q8_0"):
        raise ConversionError(f"--outtype {outtype!r}: expected f32, f16 or q8_0")
    out_path = Path(out).expanduser().absolute()
    src = open_base(base)
    opened: list[Adapter] = []
    try:
        opened = _open_adapters([(adapter, 1.0)])
        ad = opened[0]
        _check_out(out_path, list(src.files) + ad.input_files())
        clean_partials(out_path)
        arch = src.arch
        work = _adapter_targets(src, [ad])  # checks targets and shapes against the base
        _check_base_copies(src, [ad])
        if ad.use_dora:
            raise ConversionError(
                f"adapter {ad.path} uses DoRA, which GGUF LoRA cannot express; merge it with `assistant convert` instead"
            )
        if ad.replacements:
            names = ", ".join(sorted(ad.replacements))
            raise ConversionError(
                f"adapter {ad.path} replaces whole tensors ({names}: modules_to_save or trained biases), which a GGUF "
                "LoRA cannot carry; merge it with `assistant convert` instead"
            )
        output_g = arch.gguf_name(f"{arch.output_module}.weight") if arch.output_module else None
        embed_g = arch.gguf_name(f"{arch.embed_module}.weight") if arch.embed_module else None
        tied = output_g is not None and src.find(output_g) is None
        for g, module in ((output_g, "lm_head"), (embed_g, "embed_tokens")):
            if tied and g in work:
                # llama.cpp reuses token_embd as the head and would apply this LoRA there too (GGML_ASSERT)
                other = "embeddings" if module == "lm_head" else "output head"
                raise ConversionError(
                    f"adapter {ad.path} targets {module}, which is tied to the {other} in {src.name}; llama.cpp "
                    "cannot apply a runtime LoRA there: merge it with `assistant convert` instead"
                )
        alpha = float(ad.config.get("lora_alpha", ad.config.get("r", 8)))
        plan: list[PlannedTensor] = []
        for t in src.tensors:
            if t.gguf_name not in work:
                continue
            for _ad, m in work[t.gguf_name].loras:
                base_name = t.gguf_name  # llama.cpp: "<tensor name>.lora_a"
                # llama.cpp scales by alpha / rank; fold anything else (rsLoRA, patterns) into B
                fold = np.float32(m.scale * m.rank / alpha) if alpha else np.float32(m.scale)
                plan.extend(_lora_pair(ad, m, t.gguf_name, base_name, fold, src))
        if not plan:
            raise ConversionError(f"adapter {ad.path} has no LoRA weights for {src.name}")
        record = prov.build(
            base=src.path,
            base_files=list(src.files),
            adapters=[(ad.path, 1.0, ad.input_files())],
            output_type=kind,
            kind="adapter",
        )

        def meta(w: Any) -> None:
            w.add_type("adapter")
            w.add_name(ad.path.name)
            w.add_string("adapter.type", "lora")
            w.add_float32("adapter.lora.alpha", alpha)
            w.add_string(prov.KEY, prov.dumps(record))

        with atomic_path(out_path) as tmp:
            write_gguf(tmp, out_path, arch.name, meta, plan, kind, progress)
    finally:
        for a in opened:
            a.close()
        src.close()
    return ConversionResult(
        out_path, kind, len(plan), out_path.stat().st_size, time.monotonic() - started, record
    )


def _lora_pair(
    ad: Adapter, m: LoraModule, gname: str, base_name: str, fold: np.float32, src: BaseModel
) -> list[PlannedTensor]:
    arch, hp = src.arch, src.hp
    a_shape = ad.file.tensors[m.a_key].shape
    b_shape = ad.file.tensors[m.b_key].shape

    if m.embedding:
        # llama.cpp looks up rows of lora_a for token_embd: store A transposed, B as is
        def load_a() -> np.ndarray:
            return np.ascontiguousarray(ad.tensor(m.a_key).T)

        def load_b() -> np.ndarray:
            return ad.tensor(m.b_key) * fold

        return [
            PlannedTensor(
                f"{base_name}.lora_a",
                (a_shape[1], a_shape[0]),
                load_a,
                modified=True,
                origin=str(ad.file.path),
            ),
            PlannedTensor(
                f"{base_name}.lora_b", tuple(b_shape), load_b, modified=True, origin=str(ad.file.path)
            ),
        ]

    def load_a2() -> np.ndarray:
        return ad.tensor(m.a_key)

    def load_b2() -> np.ndarray:
        return arch.transform(gname, ad.tensor(m.b_key), hp) * fold  # same row permutation as W

    return [
        PlannedTensor(
            f"{base_name}.lora_a", tuple(a_shape), load_a2, modified=True, origin=str(ad.file.path)
        ),
        PlannedTensor(
            f"{base_name}.lora_b", tuple(b_shape), load_b2, modified=True, origin=str(ad.file.path)
        ),
    ]
