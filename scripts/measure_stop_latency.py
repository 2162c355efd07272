"""How long a stop (Esc in the TUI) takes while a long prompt is being read.

Runs the engine on a long prompt, sets the cancel event once the first 512-token slice is in
the cache, and times from the stop to the end of the answer. Prints one JSON line a round.

    python scripts/measure_stop_latency.py [--model PATH] [--tokens 3000] [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from assistant.engine import ChatModel, Message, SamplingParams

ROOT = Path(__file__).resolve().parent.parent
FILLER = "The committee reviews the quarterly report on rainfall, printing presses and bridges. "


def one_round(model: ChatModel, tokens: int) -> dict[str, float]:
    model._ctx.clear()  # every round reads the whole prompt afresh
    per = len(model.tokenize(FILLER))
    messages = [Message("user", FILLER * (tokens // per) + f"Summarise this ({time.time()}).")]
    cancel = threading.Event()
    stream = model.chat(messages, SamplingParams(temperature=0, max_tokens=16), cancel=cancel)
    ctx = model._ctx
    stopped_at: list[float] = []

    def stop() -> None:
        while len(ctx.cached) < ctx.config.n_batch:
            time.sleep(0.005)
        stopped_at.append(time.perf_counter())
        cancel.set()

    t = threading.Thread(target=stop)
    t.start()
    t0 = time.perf_counter()
    stream.text()
    t_end = time.perf_counter()
    t.join()
    r = stream.result
    assert r is not None
    return {
        "prompt_tokens": r.prompt_tokens,
        "read_tokens": r.timings.prefill_tokens,
        "stop_to_end_ms": round((t_end - stopped_at[0]) * 1000, 1),
        "whole_prompt_ms": round((t_end - t0) * 1000, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "SmolLM2-135M-Instruct.Q8_0.gguf")
    ap.add_argument("--tokens", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    with ChatModel(args.model, n_ctx=4096, n_threads=args.threads) as model:
        rows = [one_round(model, args.tokens) for _ in range(args.rounds)]
    for row in rows:
        print(json.dumps(row))
    print(json.dumps({"median_stop_to_end_ms": statistics.median(r["stop_to_end_ms"] for r in rows)}))


if __name__ == "__main__":
    main()
