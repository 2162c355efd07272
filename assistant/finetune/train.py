"""The fine-tuning loop: an F32 working copy, which tensors train, lr warm-up and decay, epochs,
early stopping on validation loss, a checkpoint each epoch (and on Ctrl+C or SIGTERM), --resume,
and the adapter, GGUF LoRA and recipe written at the end, from the epoch that validated best.

Losses: ``train_loss`` of an epoch is the mean of its steps (each window's loss just before its
step); ``val_loss_first`` is measured before any step, every later one after an epoch. A resume
reloads the checkpointed weights; AdamW's moments are not saved by llama.cpp's API, so they start
again from zero (the warm-up does not repeat).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.lock import TRAINING_RECORD

from .. import interrupt
from ..errors import UsageError
from ..io import atomic_write_text, atomic_writer, sha256_file

log = logging.getLogger(__name__)

ATTN = ("attn_q", "attn_k", "attn_v", "attn_output")
FFN = ("ffn_gate", "ffn_up", "ffn_down")
_BLK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.weight$")
CHECKPOINT = "checkpoint"


@dataclass
class Settings:
    """Everything that decides the result (a resume must match these, except epochs)."""

    train: str = "last:4"
    epochs: int = 1
    lr: float = 1e-5
    warmup: float = 0.1  # share of all steps spent warming up linearly from 0
    lr_min: float = 0.1  # cosine decay ends at lr * lr_min
    window: int = 256
    val_split: float = 0.1
    patience: int = 1  # epochs without a better validation loss before stopping (0: never stop early)
    rank: int = 16
    quant: str = "Q8_0"
    seed: int = 0
    reference: str | None = None  # general text for the forgetting check (None: convert's default eval text)
    max_forgetting: float | None = None  # stop when its perplexity grew by more than this share
    loss: str = "answers"  # chat data: loss on the assistant turns ("answers") or on every token ("all")


@dataclass
class Progress:
    epoch: int
    epochs: int
    step: int  # steps done in this run and before
    steps: int
    loss: float
    lr: float
    tokens_per_s: float
    eta_s: float


@dataclass
class State:
    """The checkpoint's record: where training stands (checkpoint/state.json, with the weights file it names)."""

    key: str
    epoch: int = 0  # epochs completed
    next_window: int = 0  # within the current epoch
    step: int = 0
    train_losses: list[float] = field(default_factory=list)  # one mean per finished epoch
    epoch_loss_sum: float = 0.0  # of the unfinished epoch
    val_losses: list[float] = field(default_factory=list)  # [before, after epoch 1, ...]
    train_seconds: float = 0.0
    train_tokens: int = 0
    ref_losses: list[float] = field(
        default_factory=list
    )  # the reference text's loss: before, after each epoch
    stopped_early: str = ""  # why: "validation" (no better loss) or "forgetting" (--max-forgetting)
    val_target_losses: list[float] = field(default_factory=list)  # on the validation targets only
    best_epoch: int = 0  # the epoch with the lowest validation loss so far (0: none measured)
    best_model: str = ""  # its weights file in checkpoint/ (kept until a better epoch comes)
    model: str = ""  # the weights file in checkpoint/ this record goes with


def parse_train(spec: str, n_layer: int) -> tuple[list[int], tuple[str, ...]]:
    """``--train``: comma-separated ``last:N``, ``A-B`` (layers), ``all``, ``attn``, ``ffn``.
    Layers default to all, matrices to attn and ffn."""
    layers: set[int] = set()
    kinds: list[str] = []
    for raw in spec.split(","):
        item = raw.strip().lower()
        if m := re.fullmatch(r"last:(\d+)", item):
            n = int(m.group(1))
            if not 1 <= n <= n_layer:
                raise UsageError(f"--train {item}: expected 1 to {n_layer} layers (the model has {n_layer})")
            layers.update(range(n_layer - n, n_layer))
        elif m := re.fullmatch(r"(?:layers:)?(\d+)-(\d+)", item):
            a, b = int(m.group(1)), int(m.group(2))
            if not 0 <= a <= b < n_layer:
                raise UsageError(f"--train {item}: expected a layer range within 0-{n_layer - 1}")
            layers.update(range(a, b + 1))
        elif item == "all":
            layers.update(range(n_layer))
        elif item in ("attn", "ffn"):
            kinds.append(item)
        else:
            raise UsageError(
                f"--train {raw.strip()!r}: expected last:N, A-B, all, attn or ffn (comma-separated)"
            )
    return sorted(layers or range(n_layer)), tuple(kinds or ("attn", "ffn"))


def trainable(names: list[str], spec: str, n_layer: int) -> list[str]:
    """The GGUF weight matrices ``--train`` selects (norms, embeddings and the head never train)."""
    layers, kinds = parse_train(spec, n_layer)
    want = {k for kind in kinds for k in (ATTN if kind == "attn" else FFN)}
    out = []
    for name in names:
        m = _BLK.match(name)
        if m and int(m.group(1)) in layers and m.group(2) in want:
            out.append(name)
    if not out:
        raise UsageError(f"--train {spec}: selects no weight matrix of this model")
    return out


def lr_at(step: int, steps: int, s: Settings) -> float:
    """Linear warm-up over the first ``warmup`` share of the steps, then cosine decay to lr * lr_min."""
    warm = max(1, math.ceil(s.warmup * steps)) if s.warmup > 0 else 0
    if step < warm:
        return s.lr * (step + 1) / warm
    frac = (step - warm) / max(1, steps - warm)
    return s.lr * (s.lr_min + (1 - s.lr_min) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def working_copy(base: Path, cache_dir: Path) -> Path:
    """An F32 GGUF of the base (llama.cpp trains F32 weights only): the base itself when it is one,
    else made once by our convert and kept in ``cache_dir``."""
    from convert.api import convert_model

    from ..models.gguf_info import read_gguf_info

    if base.is_file() and base.suffix == ".gguf" and read_gguf_info(base).get("general.file_type") == 0:
        return base
    files = sorted(p for p in (base.rglob("*") if base.is_dir() else [base]) if p.is_file())
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    out = cache_dir / f"{base.stem}-{h.hexdigest()[:16]}.f32.gguf"
    if not out.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        log.info("converting %s to an F32 working copy %s", base, out)
        convert_model(base, out, quant="F32")
    return out


def _settings_key(work: Path, data_files: list[dict[str, Any]], s: Settings) -> str:
    st = work.stat()
    d = asdict(s)
    d.pop("epochs")
    d.pop("patience")
    d.pop("rank")
    d.pop("quant")
    d.pop("max_forgetting")
    blob = json.dumps([str(work), st.st_size, [f["sha256"] for f in data_files], d], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_state(out_dir: Path) -> State:
    """The checkpoint's record (for --resume); it names the weights file it goes with."""
    path = out_dir / CHECKPOINT / "state.json"
    try:
        state = State(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UsageError(
            f"--resume: no checkpoint in {out_dir / CHECKPOINT}; run without --resume to start"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"--resume: {path} is not a checkpoint record ({exc})") from exc
    if not (out_dir / CHECKPOINT / state.model).is_file():
        raise UsageError(
            f"--resume: {path} names {state.model}, which is missing; start again without --resume"
        )
    return state


def _save(trainer: Any, out_dir: Path, state: State) -> None:
    """The weights under a new name, then the record naming them, then older weights removed: a kill at
    any point leaves a record and the weights it names (never new weights under an old record)."""
    from convert.writer import atomic_path

    ck = out_dir / CHECKPOINT
    ck.mkdir(parents=True, exist_ok=True)
    name = f"model-{state.step}.gguf"
    with atomic_path(ck / name) as tmp:
        trainer.save(tmp)
    state.model = name
    if state.best_epoch == state.epoch and state.epoch > 0 and state.next_window == 0:
        state.best_model = name  # this epoch's end is the best so far
    atomic_write_text(ck / "state.json", json.dumps(asdict(state), indent=1) + "\n")
    for old in ck.glob("model-*.gguf"):
        if old.name not in (name, state.best_model):
            old.unlink(missing_ok=True)


def best_epoch(val: list[float], ref: list[float] | None = None, max_forgetting: float | None = None) -> int:
    """The epoch (1-based) whose validation loss is lowest; ``val[0]`` is before any training. 0 when
    no epoch has a finite validation loss (no validation split).

    With ``max_forgetting``, only epochs whose reference perplexity stayed within it compete (``ref``
    holds the reference losses, index 0 before training): a better validation loss bought by
    forgetting past the limit is not the adapter a user asked for. When every epoch went past it,
    the one that forgot least."""
    scored = [(v, i) for i, v in enumerate(val) if i > 0 and math.isfinite(v)]
    if not scored:
        return 0
    if max_forgetting is not None and ref and len(ref) == len(val):
        grown = {i: forgetting(ref[: i + 1]) for _, i in scored}
        within = [(v, i) for v, i in scored if grown[i] <= max_forgetting]
        return min(within)[1] if within else min(grown, key=lambda i: (grown[i], i))
    return min(scored)[1]


def run(
    base: Path,
    base_spec: Path,
    data: list[Path],
    out_dir: Path,
    settings: Settings,
    *,
    cache_dir: Path,
    threads: int,
    resume: bool = False,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune, checkpoint, extract; returns the summary ``assistant finetune --json`` prints."""
    from convert.quality import DEFAULT_EVAL_TEXT

    from ..engine.template import ChatTemplate
    from ..models.gguf_info import read_gguf_info
    from . import adapter as adp
    from . import data as dat
    from .llama_opt import Trainer

    started = time.monotonic()
    s = settings
    if s.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {s.epochs}")
    if not (s.lr > 0 and math.isfinite(s.lr)):
        raise UsageError(f"--lr must be a positive number, got {s.lr}")
    work = working_copy(base, cache_dir)
    info = read_gguf_info(work)
    arch = info.get("general.architecture")
    n_layer = int(info.get(f"{arch}.block_count"))
    from gguf import GGUFReader

    types = {t.name: t.tensor_type.name for t in GGUFReader(work).tensors}
    names = trainable(list(types), s.train, n_layer)
    not_f32 = [n for n in names if types[n] != "F32"]
    if not_f32:  # llama.cpp trains F32 weights only (it would abort)
        raise UsageError(
            f"{work}: {not_f32[0]} is {types[not_f32[0]]}; training needs F32 weights (give the HF base)"
        )
    template_src = info.get("tokenizer.chat_template")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume and (out_dir / CHECKPOINT / "state.json").is_file():
        raise UsageError(
            f"{out_dir} holds a checkpoint of an earlier run; pass --resume to continue it, or another -o DIR"
        )
    saved = _read_state(out_dir) if resume else None
    start = out_dir / CHECKPOINT / saved.model if saved else work  # the same tokenizer either way
    trainer = Trainer(start, window=s.window, threads=threads, trainable=set(names), lr=s.lr)
    try:
        template = ChatTemplate(template_src, "gguf", "", "", work.name) if template_src else None

        def render(msgs: list[dict[str, str]], add_generation_prompt: bool) -> str:
            if template is None:
                raise UsageError(f"{base_spec.name} has no chat template; JSONL chat data needs one")
            return template.render(msgs, add_generation_prompt=add_generation_prompt)

        ds = dat.load(
            data,
            window=trainer.window,
            val_split=s.val_split,
            tokenize=lambda t: trainer.tokenize(t, add_special=True),
            render=render,
            loss=s.loss,
        )
        ref_path = Path(s.reference) if s.reference else DEFAULT_EVAL_TEXT
        ref = dat.reference_windows(ref_path, lambda t: trainer.tokenize(t, add_special=True), trainer.window)
        key = _settings_key(work, [*ds.files, {"sha256": sha256_file(ref_path)}], s)
        if saved is not None and saved.key != key:
            raise UsageError(
                f"--resume: the checkpoint in {out_dir / CHECKPOINT} was made from another base, data or "
                "settings; use the same ones, or start again without --resume"
            )
        state = saved or State(key)
        labels = _labels(work, ds, out_dir / CHECKPOINT, key, threads, s.seed)
        _train(trainer, ds, labels, ref, s, state, out_dir, progress)
        # the adapter comes from the epoch that validated best (the last one when there is no validation)
        tuned = out_dir / CHECKPOINT / (state.best_model or state.model)
        held_out = trainer.model.detokenize(ds.val[:, 1:].ravel().tolist()) if len(ds.val) else ""
    finally:
        trainer.close()
    extraction = adp.extract_lora(work, tuned, names, out_dir, rank=s.rank, base_name=base_spec.name)
    adapter = dict(extraction.as_dict(), kld=adp.adapter_kld(work, tuned, out_dir, held_out, threads))
    from convert.api import convert_adapter

    lora = convert_adapter(out_dir, work, out_dir / "adapter.gguf", outtype="f32")
    recipe = adp.write_recipe(out_dir, base_spec, s.quant)
    summary = _summary(state, ds, s, names, adapter, threads, time.monotonic() - started)
    summary["paths"] = {
        "adapter_dir": str(out_dir),
        "adapter_config": str(out_dir / "adapter_config.json"),
        "adapter_model": str(out_dir / "adapter_model.safetensors"),
        "gguf_lora": str(lora.out),
        "recipe": str(recipe),
        "checkpoint": str(tuned),
        "working_copy": str(work),
        "record": str(out_dir / TRAINING_RECORD),
    }
    record = dict(summary, data=ds.files, settings=asdict(s), versions=_versions())
    atomic_write_text(out_dir / TRAINING_RECORD, json.dumps(record, indent=1) + "\n")
    return summary


def _labels(
    work: Path, ds: Any, ck: Path, key: str, threads: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The label rows of the train and validation windows: each target token as it is, each context
    position a token drawn from the base model's own prediction (llama_opt.base_labels says why). Computed once from
    the base and kept next to the checkpoint, so a resume labels as the first run did."""
    from .llama_opt import base_labels

    def fill(windows: np.ndarray, mask: np.ndarray, drawn: np.ndarray) -> np.ndarray:
        return np.where(mask[:, 1:], windows[:, 1:], drawn).astype(np.int32)

    if ds.train_mask[:, 1:].all() and ds.val_mask[:, 1:].all():
        return ds.train[:, 1:], ds.val[:, 1:]
    path = ck / f"labels-{key[:16]}.npz"
    if path.is_file():
        with np.load(path) as saved:
            train, val = saved["train"], saved["val"]
        if train.shape == (len(ds.train), ds.train.shape[1] - 1) and val.shape[0] == len(ds.val):
            return train, val
    contexts = int((~ds.train_mask[:, 1:]).sum() + (~ds.val_mask[:, 1:]).sum())
    log.info("labelling %d context positions with draws from the base model's own predictions", contexts)
    both = np.concatenate([ds.train, ds.val])
    drawn = base_labels(work, both, threads=threads, seed=seed)
    train = fill(ds.train, ds.train_mask, drawn[: len(ds.train)])
    val = fill(ds.val, ds.val_mask, drawn[len(ds.train) :])
    with atomic_writer(path) as fh:
        np.savez(fh, train=train, val=val)
    return train, val


def _validate(
    trainer: Any, ds: Any, labels: tuple[np.ndarray, np.ndarray], ref: np.ndarray, state: State
) -> None:
    state.val_losses.append(trainer.evaluate(ds.val, labels[1]))
    state.ref_losses.append(trainer.evaluate(ref))
    if not ds.val_mask[:, 1:].all():  # the loss that matters: on the answers alone
        state.val_target_losses.append(trainer.target_loss(ds.val, ds.val_mask))


def _train(
    trainer: Any,
    ds: Any,
    labels: tuple[np.ndarray, np.ndarray],
    ref: np.ndarray,
    s: Settings,
    state: State,
    out_dir: Path,
    progress: Callable[[Progress], None] | None,
) -> None:
    """Epochs of one step a window; a checkpoint after each; Ctrl+C checkpoints where it stands."""
    n_train = len(ds.train)
    steps = n_train * s.epochs
    if not state.val_losses:
        _validate(trainer, ds, labels, ref, state)
    run_started, run_tokens = time.monotonic(), 0
    try:
        while state.epoch < s.epochs and not state.stopped_early:
            order = np.random.default_rng(s.seed + state.epoch).permutation(n_train)
            while state.next_window < n_train:
                lr = lr_at(state.step, steps, s)
                i = order[state.next_window]
                loss = _step(trainer, ds.train[i], labels[0][i], lr, state)
                run_tokens += trainer.window
                if progress is not None:
                    el = time.monotonic() - run_started
                    tps = run_tokens / el if el > 0 else 0.0
                    left = (steps - state.step) * trainer.window / tps if tps else 0.0
                    progress(Progress(state.epoch + 1, s.epochs, state.step, steps, loss, lr, tps, left))
                interrupt.check()
            state.train_seconds += time.monotonic() - run_started
            run_started, run_tokens = time.monotonic(), 0
            state.train_losses.append(state.epoch_loss_sum / n_train)
            _validate(trainer, ds, labels, ref, state)
            state.epoch, state.next_window, state.epoch_loss_sum = state.epoch + 1, 0, 0.0
            val = state.val_target_losses or state.val_losses
            state.best_epoch = best_epoch(val, state.ref_losses, s.max_forgetting)
            if _no_better(val, s.patience):
                state.stopped_early = "validation"
            if s.max_forgetting is not None and forgetting(state.ref_losses) > s.max_forgetting:
                state.stopped_early = "forgetting"
            _save(trainer, out_dir, state)
            log.info(
                "epoch %d: train loss %.4f, val loss %.4f",
                state.epoch,
                state.train_losses[-1],
                state.val_losses[-1],
            )
    except KeyboardInterrupt:
        state.train_seconds += time.monotonic() - run_started
        _save(trainer, out_dir, state)  # the weights after the last whole step
        log.warning("interrupted: saved a checkpoint in %s; --resume continues", out_dir / CHECKPOINT)
        raise


@interrupt.c_callback  # not called from C, but deferred alike: a Ctrl+C never splits a step from its record
def _step(trainer: Any, window: np.ndarray, labels: np.ndarray, lr: float, state: State) -> float:
    """One optimizer step and its record in the state (a checkpoint then names exactly the steps its weights hold)."""
    trainer.set_lr(lr)
    loss = float(trainer.train_step(window, labels))
    state.epoch_loss_sum += loss
    state.next_window += 1
    state.step += 1
    state.train_tokens += trainer.window
    return loss


def forgetting(ref_losses: list[float]) -> float:
    """How much the reference text's perplexity grew since before training (0.1: 10 % higher)."""
    return math.exp(ref_losses[-1] - ref_losses[0]) - 1 if len(ref_losses) > 1 else 0.0


def _no_better(val: list[float], patience: int) -> bool:
    """Early stopping: the last ``patience`` epochs did not beat the best validation loss before them."""
    finite = [v for v in val if math.isfinite(v)]
    if patience < 1 or len(finite) <= patience:
        return False
    return min(finite[-patience:]) >= min(finite[:-patience])


def _nan_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _summary(
    state: State,
    ds: Any,
    s: Settings,
    names: list[str],
    extraction: dict[str, Any],
    threads: int,
    seconds: float,
) -> dict[str, Any]:
    return {
        "train_loss_first": _nan_none(state.train_losses[0] if state.train_losses else None),
        "train_loss_last": _nan_none(state.train_losses[-1] if state.train_losses else None),
        "train_losses": state.train_losses,
        "val_loss_first": _nan_none(state.val_losses[0] if state.val_losses else None),
        "val_loss_last": _nan_none(state.val_losses[-1] if state.val_losses else None),
        "val_losses": [_nan_none(v) for v in state.val_losses],
        "val_target_losses": [_nan_none(v) for v in state.val_target_losses],
        "loss": s.loss,
        "target_tokens": ds.targets,
        "tokens": ds.tokens,
        "epochs_done": state.epoch,
        "best_epoch": state.best_epoch or None,
        "stopped_early": state.stopped_early or None,
        "reference_loss_first": state.ref_losses[0] if state.ref_losses else None,
        "reference_loss_last": state.ref_losses[-1] if state.ref_losses else None,
        "reference_losses": state.ref_losses,
        "forgetting": forgetting(state.ref_losses),
        "forgetting_best_epoch": forgetting(state.ref_losses[: state.best_epoch + 1])
        if state.best_epoch
        else None,
        "steps": state.step,
        "train_windows": len(ds.train),
        "val_windows": len(ds.val),
        "window": s.window,
        "train_tokens": state.train_tokens,
        "train_seconds": state.train_seconds,  # the optimizer steps of every run (a resume adds to it)
        "train_tokens_per_s": state.train_tokens / state.train_seconds if state.train_seconds else None,
        "threads": threads,
        "trained_tensors": len(names),
        "adapter": extraction,
        "seconds": seconds,
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    from .. import __version__

    out = {"edge-assistant": __version__}
    for dist in ("llama_cpp_python", "numpy", "gguf", "safetensors"):
        try:
            out[dist] = version(dist)
        except Exception:
            out[dist] = "unknown"
    return out
