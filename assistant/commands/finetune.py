"""`assistant finetune`: train on the device with llama.cpp's own optimizer, write a PEFT + GGUF LoRA and a recipe."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .options import threads_option

if TYPE_CHECKING:
    from ..finetune.train import Progress
    from .context import AppContext


@click.command("finetune")
@click.argument("base", metavar="BASE")
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Training data, repeatable: documents (txt, md, html, pdf...) or JSONL of {messages} chats or "
    "{question, context, answer} (rendered with the model's chat template).",
)
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Directory for the adapter (PEFT + GGUF LoRA), the recipe, the checkpoint and the record.",
)
@click.option(
    "--train",
    "train_spec",
    default="last:4",
    show_default=True,
    metavar="SPEC",
    help="What trains: last:N layers, A-B (a layer range), all; attn and/or ffn matrices "
    "(comma-separated, e.g. last:2,attn). Embeddings, norms and the head stay frozen.",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=1, show_default=True, help="Passes over the data."
)
@click.option(
    "--lr",
    type=float,
    default=1e-5,
    show_default=True,
    help="Peak learning rate (AdamW); warms up linearly, then cosine decay to a tenth.",
)
@click.option(
    "--warmup",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="Share of the steps spent warming up.",
)
@click.option(
    "--val-split",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.1,
    show_default=True,
    help="Share of the windows held out for validation (the last ones).",
)
@click.option(
    "--patience",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Stop after this many epochs without a better validation loss (0: never).",
)
@click.option(
    "--window",
    type=click.IntRange(min=256),
    default=256,
    show_default=True,
    help="Tokens per training window (a multiple of 256).",
)
@click.option(
    "--loss",
    type=click.Choice(["answers", "all"]),
    default="answers",
    show_default=True,
    help="Chat data: learn the assistant turns only (the sources, question and template are context, "
    "kept as the base model reads them) or every token. Documents always train on every token.",
)
@click.option(
    "--rank",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="LoRA rank of the extracted adapter (truncated SVD of the weight change).",
)
@click.option("--quant", default="Q8_0", show_default=True, help="Quantization the recipe builds.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Order of the windows each epoch, and the draws that label the context (--loss answers).",
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="TEXT",
    help="General text for the forgetting check: its loss before and after each epoch "
    "(default: convert's own eval text).",
)
@click.option(
    "--max-forgetting",
    type=click.FloatRange(min=0),
    metavar="SHARE",
    help="Stop when the reference text's perplexity grew by more than this share (0.1: 10 %); the adapter "
    "comes from the best-validating epoch within it.",
)
@click.option("--resume", is_flag=True, help="Continue from DIR's checkpoint (same base, data and settings).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with losses, speed and paths.")
@threads_option
@click.pass_obj
def finetune_command(
    app: AppContext,
    base: str,
    data: tuple[Path, ...],
    out_dir: Path,
    train_spec: str,
    epochs: int,
    lr: float,
    warmup: float,
    val_split: float,
    patience: int,
    window: int,
    loss: str,
    rank: int,
    quant: str,
    seed: int,
    reference: Path | None,
    max_forgetting: float | None,
    resume: bool,
    as_json: bool,
    threads: int | None,
) -> None:
    """Fine-tune BASE (a model name, .gguf or Hugging Face directory) on --data with llama.cpp's optimizer.

    HF and quantized bases are converted once to an F32 working copy (kept in the model home's
    finetune/ folder). DIR receives the PEFT LoRA (adapter_config.json, adapter_model.safetensors),
    its GGUF LoRA (adapter.gguf), a build recipe (DIR/DIR.toml), training.json and checkpoint/.
    Ctrl+C saves a checkpoint; --resume continues from it.
    """
    from .. import interrupt
    from ..engine.threads import auto_threads
    from ..finetune.train import Settings, run

    base_path = _resolve_base(app, base)
    settings = Settings(
        train=train_spec,
        epochs=epochs,
        lr=lr,
        warmup=warmup,
        window=window,
        val_split=val_split,
        patience=patience,
        rank=rank,
        quant=quant,
        seed=seed,
        reference=str(reference.expanduser().absolute()) if reference else None,
        max_forgetting=max_forgetting,
        loss=loss,
    )
    bar = _ProgressLine() if sys.stderr.isatty() else _ProgressLog()
    with interrupt.handling(), interrupt.terminate_as_interrupt():  # both checkpoint, then stop
        try:
            summary = run(
                base_path,
                base_path,
                list(data),
                out_dir.expanduser().absolute(),
                settings,
                cache_dir=app.home.root / "finetune",
                threads=threads or auto_threads(),
                resume=resume,
                progress=bar,
            )
        finally:
            bar.close()
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"train loss {_f(summary['train_loss_first'])} -> {_f(summary['train_loss_last'])}, "
        f"validation {_f(summary['val_loss_first'])} -> {_f(summary['val_loss_last'])}, "
        f"{_f(summary['train_tokens_per_s'], 1)} tok/s, {summary['seconds']:.0f} s"
    )
    answers = summary["val_target_losses"]
    if answers:
        click.echo(
            f"validation loss on the answers alone {_f(answers[0])} -> {_f(answers[-1])} "
            f"({summary['target_tokens']:,} of {summary['tokens']:,} tokens are answers)"
        )
    click.echo(f"reference text perplexity {summary['forgetting']:+.1%}" + _stopped(summary["stopped_early"]))
    share, best = summary["adapter"]["share_kept"], summary["best_epoch"]
    source = ""
    if best and best != summary["epochs_done"]:  # chosen on validation loss, within --max-forgetting if given
        source = f" of epoch {best} (reference text perplexity {summary['forgetting_best_epoch']:+.1%})"
    click.echo(f"adapter rank {rank} keeps {share:.1%} of the weight change{source}; wrote {out_dir}")


def _stopped(reason: str | None) -> str:
    if reason == "forgetting":
        return "; stopped: more than --max-forgetting"
    if reason == "validation":
        return "; stopped early: no better validation loss"
    return ""


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _resolve_base(app: AppContext, spec: str) -> Path:
    """A Hugging Face directory or .gguf path as is; otherwise a model name in the home."""
    from ..models.catalog import resolve_model

    p = Path(spec).expanduser()
    if p.is_dir() or p.is_file():
        return p.absolute()
    return resolve_model(spec, app.home).absolute()


def _progress_text(p: Progress) -> str:
    return (
        f"epoch {p.epoch}/{p.epochs}  step {p.step}/{p.steps}  loss {p.loss:.4f}  "
        f"lr {p.lr:.2e}  {p.tokens_per_s:.0f} tok/s  ETA {p.eta_s:.0f}s"
    )


class _ProgressLine:
    """One line on stderr at a terminal: epoch, step, loss, lr, tokens/s, ETA."""

    def __init__(self) -> None:
        self._open = False

    def __call__(self, p: Progress) -> None:
        sys.stderr.write(f"\r\x1b[2K{_progress_text(p)}")
        sys.stderr.flush()
        self._open = True

    def close(self) -> None:
        if self._open:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


class _ProgressLog:
    """Not at a terminal (a log file, CI, nohup): a plain line every 5% of the steps, and the last one."""

    def __call__(self, p: Progress) -> None:
        if p.step % max(-(-p.steps // 20), 1) == 0 or p.step == p.steps:
            sys.stderr.write(_progress_text(p) + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        pass
