"""Measure the engine against llama-cpp-python's plain generate loop, in the same run.

Shared machines are noisy, so absolute figures mean little on their own: each
round runs ours and the reference back to back on the same model, threads and
prompt, and the report gives medians and their ratio.
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .chat import ChatModel
from .context import Message
from .sampling import SamplingParams

log = logging.getLogger(__name__)

FILLER = (
    "The quick brown fox jumps over the lazy dog while the committee reviews the quarterly report "
    "on renewable energy, rainfall in mountain valleys, and the history of printing presses. "
)


@dataclass
class BenchFigures:
    load_ms: float = 0.0
    prefill_tps: float = 0.0
    decode_tps: float = 0.0
    ttft_ms: float = 0.0


@dataclass
class BenchReport:
    model: str
    threads: int
    n_prompt: int
    n_gen: int
    rounds: int
    ours: BenchFigures = field(default_factory=BenchFigures)
    reference: BenchFigures = field(default_factory=BenchFigures)
    peak_rss_mb: float | None = None
    system: str = ""

    def ratio(self, name: str) -> float:
        ref = getattr(self.reference, name)
        return getattr(self.ours, name) / ref if ref else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ratios"] = {k: round(self.ratio(k), 3) for k in ("prefill_tps", "decode_tps")}
        return d


def _prompt_of(model: ChatModel, n_tokens: int) -> list[Message]:
    """A user message whose rendered prompt is about n_tokens long."""
    base = model.count_tokens([Message("user", "")])
    per = len(model.tokenize(FILLER))
    text = FILLER * (max(1, (n_tokens - base) // per) + 2)
    toks = model.tokenize(text)
    return [Message("user", model.detokenize(toks[: max(1, n_tokens - base)]))]


def _ours_round(
    model: ChatModel, prompt: list[Message], short: list[Message], n_gen: int, params: SamplingParams
) -> BenchFigures:
    model._ctx.clear()
    pre = model.chat(prompt, params.with_(max_tokens=1))
    pre.text()
    model._ctx.clear()
    gen = model.chat(prompt, params.with_(max_tokens=n_gen, ignore_eos=True))
    gen.text()
    model._ctx.clear()
    first = model.chat(short, params.with_(max_tokens=1))
    first.text()
    assert pre.result and gen.result and first.result
    return BenchFigures(
        load_ms=model.load_ms,
        prefill_tps=pre.result.timings.prefill_tps,
        decode_tps=gen.result.timings.decode_tps,
        ttft_ms=first.result.timings.ttft_ms,
    )


def _reference_round(
    llm: object, tokens: list[int], short_tokens: list[int], n_gen: int, params: SamplingParams
) -> BenchFigures:
    kw = dict(
        top_k=params.top_k,
        top_p=params.top_p,
        min_p=params.min_p,
        temp=params.temperature,
        repeat_penalty=params.repeat_penalty,
    )
    llm.reset()  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    gen = llm.generate(tokens, **kw)  # type: ignore[attr-defined]
    next(gen)
    t1 = time.perf_counter()
    n = 1
    for _ in gen:
        n += 1
        if n >= n_gen:
            break
    t2 = time.perf_counter()
    gen.close()
    llm.reset()  # type: ignore[attr-defined]
    t3 = time.perf_counter()
    g2 = llm.generate(short_tokens, **kw)  # type: ignore[attr-defined]
    next(g2)
    t4 = time.perf_counter()
    g2.close()
    return BenchFigures(
        prefill_tps=len(tokens) / (t1 - t0),
        decode_tps=(n - 1) / (t2 - t1),
        ttft_ms=(t4 - t3) * 1000,
    )


def peak_rss_of_ask(model_path: Path, threads: int, n_ctx: int = 4096) -> float:
    """Peak RSS (MB) of a real `assistant ask --json` process on this model."""
    cmd = [
        sys.executable,
        "-m",
        "assistant",
        "ask",
        "--model",
        str(model_path),
        "--ctx",
        str(n_ctx),
        "-n",
        "64",
        "--json",
        "Name three colours.",
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"assistant ask failed while measuring memory: {err.strip()}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def run_bench(
    model_path: Path,
    *,
    threads: int | None = None,
    n_prompt: int = 512,
    n_gen: int = 128,
    rounds: int = 3,
    measure_rss: bool = True,
    progress=None,
) -> BenchReport:
    import llama_cpp

    from .backend import system_info

    params = SamplingParams()
    # Measure memory first: a child's peak RSS on Linux includes what it inherited
    # at fork, so the parent must not hold a model yet.
    peak_rss = None
    if measure_rss:
        if progress:
            progress("peak memory of assistant ask")
        peak_rss = round(peak_rss_of_ask(model_path, threads or 0), 1)
    t0 = time.perf_counter()
    model = ChatModel(model_path, n_threads=threads)
    load_ours = (time.perf_counter() - t0) * 1000
    threads = model.n_threads
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(
        str(model_path),
        n_ctx=model.n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=512,
        verbose=False,
    )
    load_ref = (time.perf_counter() - t0) * 1000
    prompt = _prompt_of(model, n_prompt)
    short = [Message("user", "What is the capital of France?")]
    tokens, short_tokens = model.prompt_tokens(prompt), model.prompt_tokens(short)
    report = BenchReport(
        model=model_path.name,
        threads=threads,
        n_prompt=len(tokens),
        n_gen=n_gen,
        rounds=rounds,
        system=system_info(),
    )
    ours, ref = [], []
    for i in range(rounds):
        if progress:
            progress(f"round {i + 1}/{rounds}")
        # alternate the order so neither side always runs on a warmer machine
        if i % 2 == 0:
            ours.append(_ours_round(model, prompt, short, n_gen, params))
            ref.append(_reference_round(llm, tokens, short_tokens, n_gen, params))
        else:
            ref.append(_reference_round(llm, tokens, short_tokens, n_gen, params))
            ours.append(_ours_round(model, prompt, short, n_gen, params))

    def med(rows: list[BenchFigures], name: str) -> float:
        return round(statistics.median(getattr(r, name) for r in rows), 1)

    report.ours = BenchFigures(
        load_ms=round(load_ours, 1),
        prefill_tps=med(ours, "prefill_tps"),
        decode_tps=med(ours, "decode_tps"),
        ttft_ms=med(ours, "ttft_ms"),
    )
    report.reference = BenchFigures(
        load_ms=round(load_ref, 1),
        prefill_tps=med(ref, "prefill_tps"),
        decode_tps=med(ref, "decode_tps"),
        ttft_ms=med(ref, "ttft_ms"),
    )
    model.close()
    del llm
    report.peak_rss_mb = peak_rss
    return report
