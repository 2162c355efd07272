"""`assistant bench`: speed of this machine against llama-cpp-python's own loop."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .options import threads_option

if TYPE_CHECKING:
    from .context import AppContext


class _Progress:
    """What runs now, one line per step; at a terminal one line that is rewritten, with an ETA
    from the time the finished steps took (steps are of similar size by design)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.open = False

    def __call__(self, what: str, done: int, total: int) -> None:
        line = f"[{done + 1}/{total}] {what}"
        if not self.tty:
            click.secho(line, err=True, dim=True)
            return
        if done:
            left = (time.monotonic() - self.started) / done * (total - done)
            line += f" · about {_duration(left)} left"
        click.echo("\r\x1b[2K" + line, err=True, nl=False)
        self.open = True

    def close(self) -> None:
        if self.open:
            click.echo("\r\x1b[2K", err=True, nl=False)
            self.open = False


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


@click.command("bench")
@click.option(
    "-m", "--model", metavar="NAME|PATH", help="Model to measure (default: the default chat model)."
)
@threads_option
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Alternating rounds (each: both engines and one `assistant ask` process); medians are reported.",
)
@click.option(
    "--no-rss", is_flag=True, help="Do not report the peak memory of the first `assistant ask` process."
)
@click.option(
    "--llama-bench",
    "llama_bench",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also run llama.cpp's llama-bench binary (same model, threads) and compare.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def bench_command(
    app: AppContext,
    model: str | None,
    threads: int | None,
    rounds: int,
    no_rss: bool,
    llama_bench: Path | None,
    as_json: bool,
) -> None:
    """Load time, prefill (512-token prompt), decode (128 tokens) and time to first token.

    Each figure is set next to llama-cpp-python's plain `Llama.generate` loop on
    the same model and threads in the same run, and said as "N x faster" or
    "N x slower" (for times and rates alike). About a minute on 2 cores.
    """
    from ..engine.bench import run_bench, versus
    from ..models.catalog import resolve_model

    path = resolve_model(model, app.home)
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores:  # llama.cpp's threads wait on each other: on a busy machine it crawls
        click.secho(
            f"note: load average {load:.1f} on {cores} cores: this run will be slow and its figures noisy",
            err=True,
        )
    progress = None if as_json else _Progress()
    try:
        r = run_bench(
            path,
            threads=threads,
            rounds=rounds,
            measure_rss=not no_rss,
            llama_bench=llama_bench,
            progress=progress,
        )
    finally:
        if progress:
            progress.close()
    if as_json:
        d = r.as_dict()
        d["date"] = date.today().isoformat()
        d["machine"] = platform.machine()
        d["load_average"] = round(load, 2)
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(
        f"{r.model}, {r.threads} threads, prompt {r.n_prompt} tokens, {r.n_gen} generated, "
        f"median of {r.rounds} rounds"
    )
    click.echo(f"{'':24}{'assistant':>10}{'llama-cpp-python':>18}  assistant is")
    rows = [
        ("load (ms)", r.ours.load_ms, r.reference.load_ms, "load_ms"),
        ("prefill (tokens/s)", r.ours.prefill_tps, r.reference.prefill_tps, "prefill_tps"),
        ("decode (tokens/s)", r.ours.decode_tps, r.reference.decode_tps, "decode_tps"),
        ("first token (ms)", r.ours.ttft_ms, r.reference.ttft_ms, "ttft_ms"),
        ("decode via ask (tok/s)", r.ask_decode_tps, r.reference.decode_tps, "ask_decode_tps"),
    ]
    speedups = r.speedups()
    for label, ours, ref, key in rows:
        click.echo(f"{label:24}{ours:>10.1f}{ref:>18.1f}  {versus(speedups[key])}")
    if r.llama_bench:
        lb = r.llama_bench
        click.echo(
            f"llama-bench: pp{r.n_prompt} {lb['pp_tps']:.1f}, tg{r.n_gen} {lb['tg_tps']:.1f} tokens/s; "
            f"assistant ask decode {versus(r.ask_decode_tps / lb['tg_tps'])} than tg{r.n_gen}, "
            f"prefill {versus(r.ours.prefill_tps / lb['pp_tps'])} than pp{r.n_prompt}"
        )
    if r.peak_rss_mb is not None:
        click.echo(f"peak RSS of `assistant ask` (4096-token window): {r.peak_rss_mb:.0f} MB")
