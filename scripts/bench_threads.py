#!/usr/bin/env python
"""--threads auto against fixed counts on an idle and a busy machine (#17).

    .venv/bin/python scripts/bench_threads.py [--rounds 3] [--docs 30] [-n 48]
    .venv/bin/python scripts/bench_threads.py --smoke      # a quick check that it runs
    .venv/bin/python scripts/bench_threads.py --switch     # what a thread-count change costs

The same answer (`assistant ask --json --no-rag -t 0 --ignore-eos -n 128`) and the same
ingest (`assistant index add` of --docs SciFact abstracts, read in place from
../shared/eval, into a fresh knowledge base) run as real processes under each machine state:

- idle: nothing else started by this script;
- busy1 / busy2: one / two busy-loop processes;
- job: a real competing job: the answer runs while `index add` jobs run back to back, the
  ingest while `ask` answers run back to back (both with their default, auto threads).

Each with --threads 1, --threads <all physical cores> (the old default) and --threads auto,
interleaved in each round (the order rotates); medians over --rounds. Prints a table, the
ratios of auto to the best fixed setting per state (for TTFT the best time over auto's, so
1.0 is "as good" for every column and the #17 target is >= 0.9), auto against the old
default when idle (target >= 0.95), and one JSON line with everything, machine and date.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.engine.threads import max_threads  # noqa: E402

MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q8_0.gguf"
SCIFACT = ROOT.parent / "shared" / "eval" / "scifact" / "corpus.jsonl"
QUESTION = "Write a long story about a lighthouse keeper."
STATES = ("idle", "busy1", "busy2", "job")
BUSY_LOOP = "while True:\n    pass\n"


def machine() -> dict[str, object]:
    from bench_knowledge import machine as cpu_and_date  # scripts/ is on sys.path when run

    return {
        **cpu_and_date(),
        "cpus": os.cpu_count(),
        "physical_cores": max_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_before": round(os.getloadavg()[0], 2),
    }


def assistant(*args: str) -> list[str]:
    return [sys.executable, "-m", "assistant", *args]


def ask_cmd(threads: str, n: int) -> list[str]:
    return assistant("ask", "--json", "--no-rag", "-t", "0", "--ignore-eos", "-n", str(n),
                     "--model", str(MODEL), "--threads", threads, QUESTION)  # fmt: skip


def ingest_cmd(threads: str, docs: Path, kb: Path) -> list[str]:
    return assistant("index", "add", str(docs), "--kb", str(kb), "--json", "--threads", threads)


def write_docs(n: int, out: Path) -> Path:
    """n SciFact abstracts as one BEIR JSONL file (outside the project), else made-up text."""
    lines = []
    if SCIFACT.is_file():
        with open(SCIFACT, encoding="utf-8") as fh:
            for line in fh:
                if len(lines) >= n:
                    break
                lines.append(line.rstrip("\n"))
    for i in range(len(lines), n):  # no eval data here: plain paragraphs of similar length
        text = " ".join(
            f"Sentence {j} of document {i} says something about cells and proteins." for j in range(20)
        )
        lines.append(json.dumps({"_id": str(i), "title": f"Document {i}", "text": text}))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def run_json(cmd: list[str]) -> dict:
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def loop_script(cmds: list[list[str]]) -> str:
    """A Python program that runs the commands in turn, forever (a background job)."""
    return (
        "import itertools, subprocess\n"
        f"cmds = {cmds!r}\n"
        "for i in itertools.count():\n"
        "    cmd = [a.replace('{i}', str(i)) for a in cmds[i % len(cmds)]]\n"
        "    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    )


@contextmanager
def background(state: str, what: str, tmp: Path, docs: Path) -> Iterator[None]:
    """The machine state around one measurement; every process started here is stopped after
    (each in its own session: the job loops' children go with them)."""
    scripts: list[str] = []
    if state.startswith("busy"):
        scripts = [BUSY_LOOP] * int(state[4:])
    elif state == "job" and what == "answer":  # an index add next to the chat
        scripts = [loop_script([ingest_cmd("auto", docs, tmp / "bg-{i}.db")])]
    elif state == "job":  # a chat next to the index add
        scripts = [loop_script([ask_cmd("auto", 512)])]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", s], cwd=ROOT, start_new_session=True, stdin=subprocess.DEVNULL
        )
        for s in scripts
    ]
    try:
        if procs:
            time.sleep(1.0 if state != "job" else 3.0)  # let the competitor reach its steady state
        yield
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):  # its own session: it and its children
                os.killpg(p.pid, signal.SIGTERM)
            p.wait()
        for f in tmp.glob("bg-*.db*"):
            f.unlink(missing_ok=True)


def measure(state: str, settings: list[str], args: argparse.Namespace, tmp: Path, docs: Path) -> dict:
    runs: dict[str, dict[str, list]] = {
        s: {"decode_tps": [], "ttft_ms": [], "ingest_tps": [], "threads": []} for s in settings
    }
    with background(state, "answer", tmp, docs):
        for r in range(args.rounds):
            for s in settings[r % len(settings) :] + settings[: r % len(settings)]:
                t = run_json(ask_cmd(s, args.tokens))["timings"]
                runs[s]["decode_tps"].append(t["decode_tps"])
                runs[s]["ttft_ms"].append(t["ttft_ms"])
                runs[s]["threads"].append(t.get("threads"))
                print(f"# {state} answer {s}: {t['decode_tps']} tok/s, ttft {t['ttft_ms']} ms, "
                      f"threads {t.get('threads')}", file=sys.stderr, flush=True)  # fmt: skip
    with background(state, "ingest", tmp, docs):
        for r in range(args.rounds):
            for s in settings[r % len(settings) :] + settings[: r % len(settings)]:
                kb = tmp / f"kb-{state}-{s}-{r}.db"
                rep = run_json(ingest_cmd(s, docs, kb))
                runs[s]["ingest_tps"].append(rep["embed_tokens_per_s"])
                print(f"# {state} ingest {s}: {rep['embed_tokens_per_s']} tok/s", file=sys.stderr, flush=True)
                for f in tmp.glob(kb.name + "*"):
                    f.unlink()
    return {
        s: {k: (v if k == "threads" else statistics.median(v)) for k, v in m.items()} for s, m in runs.items()
    }


def ratios(row: dict, fixed: list[str]) -> dict[str, float]:
    """auto against the best fixed setting of the state: rates auto/best, TTFT best/auto."""
    a = row["auto"]
    best_dec = max(row[s]["decode_tps"] for s in fixed)
    best_ttft = min(row[s]["ttft_ms"] for s in fixed)
    best_ing = max(row[s]["ingest_tps"] for s in fixed)
    return {
        "decode": round(a["decode_tps"] / best_dec, 2),
        "ttft": round(best_ttft / a["ttft_ms"], 2),
        "ingest": round(a["ingest_tps"] / best_ing, 2),
    }


def switch_cost(args: argparse.Namespace) -> None:
    """What changing llama.cpp's thread count between two tokens costs (llama_set_n_threads): the
    same greedy decode at all cores, at one thread, and switching every token / every 8 tokens,
    interleaved over the rounds; a switch that costs nothing decodes at the harmonic mean of the
    two fixed speeds (ratio 1.0)."""
    from assistant.engine import backend, compute

    compute.claim_current_thread()
    cores = max_threads()
    model = backend.LlamaModel(MODEL)
    ctx = backend.LlamaContext(model, backend.ContextConfig(n_ctx=1024, n_threads=cores))
    sampler = backend.Sampler(model, temperature=0, top_k=40, top_p=1, min_p=0, repeat_penalty=1,
                              repeat_last_n=0, seed=1)  # fmt: skip
    prompt = model.tokenize(QUESTION)
    patterns = {
        "all": lambda i: cores,
        "one": lambda i: 1,
        "every token": lambda i: cores if i % 2 else 1,
        "every 8": lambda i: cores if (i // 8) % 2 else 1,
    }
    rates: dict[str, list[float]] = {k: [] for k in patterns}
    for _ in range(args.rounds):
        for name, pattern in patterns.items():
            ctx.clear()
            ctx.decode(prompt)
            token, t0 = sampler.sample(ctx), time.perf_counter()
            for i in range(args.tokens):
                ctx.set_threads(pattern(i))
                token = ctx.step(token, sampler)
            rates[name].append(args.tokens / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    expected = 2 / (1 / med["all"] + 1 / med["one"])
    print(json.dumps({"bench": "threads-switch", **machine(), "threads": cores, "tokens": args.tokens,
                      "rounds": args.rounds, "tok_s": {k: round(v, 1) for k, v in med.items()},
                      "switching_vs_harmonic_mean": {k: round(med[k] / expected, 2)
                                                     for k in ("every token", "every 8")}}))  # fmt: skip


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so background()'s cleanup stops the busy loops it started


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--switch", action="store_true", help="only measure what a thread-count change costs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--docs", type=int, default=30, help="documents in the ingest")
    ap.add_argument("-n", "--tokens", type=int, default=48, help="answer length")
    ap.add_argument("--states", default=",".join(STATES), help=f"comma list of {', '.join(STATES)}")
    ap.add_argument("--smoke", action="store_true", help="1 round, 30 documents, 32 tokens, idle and busy1")
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.docs, args.tokens, args.states = 1, 30, 32, "idle,busy1"
    if args.switch:
        switch_cost(args)
        return
    states = [s for s in args.states.split(",") if s]
    if bad := [s for s in states if s not in STATES]:
        sys.exit(f"unknown state {bad[0]!r}; choose from {', '.join(STATES)}")
    cores = max_threads()
    fixed = ["1", str(cores)] if cores > 1 else ["1"]
    settings = [*fixed, "auto"]
    info = machine()
    tmp = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    try:
        docs = write_docs(args.docs, tmp / "docs.jsonl")
        results = {state: measure(state, settings, args, tmp, docs) for state in states}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{info['cpu']}, {info['cpus']} CPUs ({cores} physical cores), {info['date']}, "
          f"{args.rounds} round(s), answer -n {args.tokens}, ingest of {args.docs} documents")  # fmt: skip
    print(f"{'state':7}{'threads':>8}{'decode tok/s':>14}{'TTFT ms':>10}{'ingest tok/s':>14}  threads ran")
    summary = {}
    for state, row in results.items():
        for s in settings:
            m = row[s]
            print(
                f"{state:7}{s:>8}{m['decode_tps']:>14.1f}{m['ttft_ms']:>10.0f}{m['ingest_tps']:>14.0f}  {m['threads']}"
            )
        summary[state] = ratios(row, fixed)
        line = ", ".join(f"{k} {v:.2f}x" for k, v in summary[state].items())
        print(f"{'':7}auto vs the best fixed: {line}")
    if "idle" in results:
        idle = results["idle"]
        old = idle[str(cores)]
        summary["idle_vs_old_default"] = {
            "decode": round(idle["auto"]["decode_tps"] / old["decode_tps"], 2),
            "ttft": round(old["ttft_ms"] / idle["auto"]["ttft_ms"], 2),
            "ingest": round(idle["auto"]["ingest_tps"] / old["ingest_tps"], 2),
        }
        line = ", ".join(f"{k} {v:.2f}x" for k, v in summary["idle_vs_old_default"].items())
        print(f"idle: auto vs the old default ({cores} threads): {line}")
    print(json.dumps({"bench": "threads", **info, "rounds": args.rounds, "docs": args.docs,
                      "tokens": args.tokens, "results": results, "ratios": summary}))  # fmt: skip


if __name__ == "__main__":
    main()
