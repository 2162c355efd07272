"""`assistant bench`: speed of this machine against llama-cpp-python's own loop."""

from __future__ import annotations

import json
import platform
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..cli import AppContext


@click.command("bench")
@click.option(
    "-m", "--model", metavar="NAME|PATH", help="Model to measure (default: the default chat model)."
)
@click.option("--threads", type=int, help="CPU threads (default: physical cores).")
@click.option(
    "--rounds", type=int, default=3, show_default=True, help="Alternating rounds; medians are reported."
)
@click.option("--no-rss", is_flag=True, help="Skip the peak-memory run of `assistant ask`.")
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
    the same model and threads in the same run, with the ratio.
    """
    from ..engine.bench import run_bench
    from ..models.catalog import resolve_model

    path = resolve_model(model, app.home)
    progress = None if as_json else (lambda msg: click.secho(msg, err=True, dim=True))
    r = run_bench(
        path,
        threads=threads,
        rounds=rounds,
        measure_rss=not no_rss,
        llama_bench=llama_bench,
        progress=progress,
    )
    if as_json:
        d = r.as_dict()
        d["date"] = date.today().isoformat()
        d["machine"] = platform.machine()
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(
        f"{r.model}, {r.threads} threads, prompt {r.n_prompt} tokens, {r.n_gen} generated, "
        f"median of {r.rounds} rounds"
    )
    click.echo(f"{'':22}{'assistant':>12}{'llama-cpp-python':>18}{'ratio':>8}")
    rows = [
        ("load (ms)", "load_ms"),
        ("prefill (tokens/s)", "prefill_tps"),
        ("decode (tokens/s)", "decode_tps"),
        ("first token (ms)", "ttft_ms"),
    ]
    for label, key in rows:
        ours, ref = getattr(r.ours, key), getattr(r.reference, key)
        ratio = f"{ours / ref:.2f}x" if ref else "-"
        click.echo(f"{label:22}{ours:>12.1f}{ref:>18.1f}{ratio:>8}")
    ratio = f"{r.ask_decode_tps / r.reference.decode_tps:.2f}x" if r.reference.decode_tps else "-"
    click.echo(
        f"{'decode via ask process':22}{r.ask_decode_tps:>12.1f}{r.reference.decode_tps:>18.1f}{ratio:>8}"
    )
    if r.llama_bench:
        lb = r.llama_bench
        click.echo(
            f"llama-bench: pp{r.n_prompt} {lb['pp_tps']:.1f}, tg{r.n_gen} {lb['tg_tps']:.1f} tokens/s; "
            f"assistant ask decode {r.ask_decode_tps / lb['tg_tps']:.2f}x tg, "
            f"prefill {r.ours.prefill_tps / lb['pp_tps']:.2f}x pp"
        )
    if r.peak_rss_mb is not None:
        click.echo(f"peak RSS of `assistant ask` (4096-token window): {r.peak_rss_mb:.0f} MB")
