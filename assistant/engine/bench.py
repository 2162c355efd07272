"""Measure the engine against llama-cpp-python's plain generate loop, in the same run.

Shared machines are noisy, so absolute figures mean little on their own: each
round runs ours and the reference back to back on the same model, threads and
prompt, and the report gives medians and their ratio. A default run is a handful of
seconds of compute per round (one prompt read and one generation per engine, one
`assistant ask` process), so it stays well under two minutes on a 2-core machine.
"""

from __future__ import annotations

import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import interrupt
from ..errors import UsageError
from ..message import Message
from . import compute
from .chat import ChatModel
from .sampling import SamplingParams
from .threads import auto_threads

log = logging.getLogger(__name__)

FILLER = (
    "The quick brown fox jumps over the lazy dog while the committee reviews the quarterly report "
    "on renewable energy, rainfall in mountain valleys, and the history of printing presses. "
)


LOWER_IS_BETTER = frozenset({"load_ms", "ttft_ms"})


def speedup(ours: float, ref: float, *, lower_is_better: bool) -> float:
    """How many times faster ours is than the reference (below 1: slower), for times and rates alike."""
    if not ours or not ref:
        return 0.0
    return ref / ours if lower_is_better else ours / ref


def versus(factor: float) -> str:
    """A speed-up said so that its direction cannot be misread: '1.04x faster', '1.25x slower'."""
    if not factor:
        return "-"
    if round(factor, 2) == 1.0:
        return "same (1.00x)"
    return f"{factor:.2f}x faster" if factor > 1 else f"{1 / factor:.2f}x slower"


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
    ask_decode_tps: float = 0.0  # decode speed reported by real `assistant ask` processes
    llama_bench: dict[str, float] | None = None  # pp/tg tokens/s of llama.cpp's llama-bench, same run
    system: str = ""

    def ratio(self, name: str) -> float:
        ref = getattr(self.reference, name)
        return getattr(self.ours, name) / ref if ref else 0.0

    def speedups(self) -> dict[str, float]:
        """Each figure as 'times faster than llama-cpp-python' (ask's decode against its decode)."""
        out = {
            name: speedup(
                getattr(self.ours, name),
                getattr(self.reference, name),
                lower_is_better=name in LOWER_IS_BETTER,
            )
            for name in ("load_ms", "prefill_tps", "decode_tps", "ttft_ms")
        }
        out["ask_decode_tps"] = speedup(self.ask_decode_tps, self.reference.decode_tps, lower_is_better=False)
        return out

    def as_dict(self) -> dict:
        d = asdict(self)
        d["speedup"] = {k: round(v, 3) for k, v in self.speedups().items()}
        d["speedup_meaning"] = (
            "times faster than llama-cpp-python's loop, same run (above 1: faster; below 1: slower)"
        )
        d["ratios"] = {k: round(self.ratio(k), 3) for k in ("prefill_tps", "decode_tps")}
        if self.reference.decode_tps:
            d["ratios"]["ask_decode_tps"] = round(self.ask_decode_tps / self.reference.decode_tps, 3)
        if self.llama_bench:
            lb = self.llama_bench
            d["ratios"]["ask_decode_vs_llama_bench_tg"] = round(self.ask_decode_tps / lb["tg_tps"], 3)
            d["ratios"]["prefill_vs_llama_bench_pp"] = round(self.ours.prefill_tps / lb["pp_tps"], 3)
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
    gen = model.chat(prompt, params.with_(max_tokens=n_gen, ignore_eos=True))  # prefill, then decode
    gen.text()
    model._ctx.clear()
    first = model.chat(short, params.with_(max_tokens=1))
    first.text()
    assert gen.result and first.result
    return BenchFigures(
        load_ms=model.load_ms,
        prefill_tps=gen.result.timings.prefill_tps,
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


def run_ask(
    model_path: Path,
    threads: int,
    *,
    n_ctx: int = 4096,
    max_tokens: int = 64,
    question: str = "Name three colours.",
    ignore_eos: bool = False,
) -> tuple[dict, float]:
    """Run a real `assistant ask --json` process; return its JSON and its peak RSS (MB)."""
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
        str(max_tokens),
        "--json",
        question,
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    if ignore_eos:
        cmd.append("--ignore-eos")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    # communicate() reaped the child; its rusage is gone, so read it from the accumulated children total
    if proc.returncode != 0:
        raise RuntimeError(f"assistant ask failed: {err.decode(errors='replace').strip()}")
    return json.loads(out), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run_llama_bench(
    binary: Path, model_path: Path, threads: int, n_prompt: int, n_gen: int, repetitions: int
) -> dict[str, float]:
    """llama.cpp's own llama-bench on the same model and threads: pp and tg tokens/s."""
    cmd = [str(binary), "-m", str(model_path), "-t", str(threads), "-p", str(n_prompt), "-n", str(n_gen),
           "-r", str(repetitions), "-o", "json"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"llama-bench failed: {proc.stderr.strip()[-300:]}")
    rows = json.loads(proc.stdout)
    pp = next(r["avg_ts"] for r in rows if r["n_prompt"] and not r["n_gen"])
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] and not r["n_prompt"])
    return {"pp_tps": round(pp, 1), "tg_tps": round(tg, 1)}


def _ask_decode(model_path: Path, threads: int, n_gen: int) -> tuple[float, float]:
    """One real `assistant ask` process (4096-token window, n_gen tokens): its decode tokens/s and peak RSS."""
    obj, rss = run_ask(
        model_path,
        threads,
        max_tokens=n_gen,
        ignore_eos=True,
        question="Write a long story about a lighthouse keeper.",
    )
    return obj["timings"]["decode_tps"], rss


Progress = Callable[[str, int, int], None]
"""progress(what runs now, steps done, steps in all)."""


def run_bench(
    model_path: Path,
    *,
    threads: int | None = None,
    n_prompt: int = 512,
    n_gen: int = 128,
    rounds: int = 3,
    measure_rss: bool = True,
    llama_bench: Path | None = None,
    progress: Progress | None = None,
) -> BenchReport:
    """Alternate our engine and llama-cpp-python's loop for `rounds` rounds, each followed by a real
    `assistant ask` process; the first of those runs before this process loads anything, so its peak
    RSS is the memory a user's `ask` needs (on Linux a child's peak includes what it shared at fork)."""
    import llama_cpp

    from .backend import system_info

    if rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {rounds}")
    # auto: one count from the CPU free now, pinned for every engine (they compare at the same count)
    threads = threads or auto_threads()
    compute.claim_current_thread()  # as `assistant ask` does
    total = 2 + 3 * rounds - 1 + (llama_bench is not None)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        interrupt.check()  # a Ctrl+C that came inside llama.cpp's log callback
        if progress:
            progress(what, done, total)
        done += 1

    params = SamplingParams()
    ask: list[float] = []
    step(f"`assistant ask` process 1/{rounds} ({n_gen} tokens{', peak memory' if measure_rss else ''})")
    tps, rss = _ask_decode(model_path, threads, n_gen)
    ask.append(tps)
    peak_rss = round(rss, 1) if measure_rss else None
    step("loading the model in both engines")
    # warm-up load: llama.cpp's backend initialisation and the page cache then favour neither side
    ChatModel(model_path, n_threads=threads).close()
    t0 = time.perf_counter()
    model = ChatModel(model_path, n_threads=threads)
    load_ours = (time.perf_counter() - t0) * 1000
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
    work = f"{len(tokens)}-token prompt, {n_gen} tokens"
    ours, ref = [], []
    for i in range(rounds):
        # alternate the order so neither side always runs on a warmer machine; the reference runs
        # on the thread our engine computes on (see compute.py: two calling threads slow both)
        for side in ("ours", "ref") if i % 2 == 0 else ("ref", "ours"):
            if side == "ours":
                step(f"round {i + 1}/{rounds}: assistant's engine ({work})")
                ours.append(_ours_round(model, prompt, short, n_gen, params))
            else:
                step(f"round {i + 1}/{rounds}: llama-cpp-python's loop ({work})")
                ref.append(compute.run(_reference_round, llm, tokens, short_tokens, n_gen, params))
        if i + 1 < rounds:
            step(f"`assistant ask` process {i + 2}/{rounds} ({n_gen} tokens)")
            ask.append(_ask_decode(model_path, threads, n_gen)[0])

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
    report.ask_decode_tps = round(statistics.median(ask), 1)
    if llama_bench is not None:
        step("llama.cpp's llama-bench")
        report.llama_bench = run_llama_bench(llama_bench, model_path, threads, n_prompt, n_gen, rounds)
    model.close()
    del llm
    report.peak_rss_mb = peak_rss
    return report
