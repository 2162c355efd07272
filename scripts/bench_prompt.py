#!/usr/bin/env python
"""What building a prompt costs: the chat template render and its tokens, before and after hardening.

    .venv/bin/python scripts/bench_prompt.py [--rounds 200]

On the default model (SmolLM2, ChatML), for a one-question chat, a 20-turn chat and a question
carrying ~12 KB of retrieved sources, times in the same run (median of --rounds, interleaved):

- anchor render: the template in Jinja's plain immutable sandbox (what the engine used before);
- bounded render: ChatTemplate.render (time, size and operation bounds, #12 item 3);
- anchor tokens: the render tokenized whole with parse_special (before #12 item 7);
- safe tokens: ChatModel.prompt_tokens (marker render, markup/content split, #12 item 7).

Prints one JSON line per conversation with the ratios bounded/anchor and safe/anchor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.engine import ChatModel, Message  # noqa: E402

MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q8_0.gguf"
SOURCE = "Logs are kept for 30 days, then compressed and moved to cold storage for a year. " * 4


def conversations() -> dict[str, list[Message]]:
    turns: list[Message] = []
    for i in range(10):
        turns += [
            Message("user", f"Question {i}: what is item {i}?"),
            Message("assistant", f"Item {i} is a thing."),
        ]
    sources = "\n\n".join(f"[{n}] notes-{n}.txt\n{SOURCE}" for n in range(1, 37))
    return {
        "one question": [Message("user", "What is GGUF?")],
        "20 turns": [Message("system", "Be brief."), *turns, Message("user", "And the last one?")],
        "12 KB of sources": [Message("user", f"Sources:\n{sources}\n\nQuestion: how long are logs kept?")],
    }


def median_us(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    model = ChatModel(MODEL, n_ctx=4096)
    t = model.template
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    plain = env.from_string(t.source)
    for name, msgs in conversations().items():
        dicts = [m.as_dict() for m in msgs]

        def anchor_render(dicts: list[dict[str, str]] = dicts) -> str:
            return plain.render(
                messages=dicts, add_generation_prompt=True, bos_token=t.bos_token, eos_token=""
            )

        def anchor_tokens(dicts: list[dict[str, str]] = dicts) -> list[int]:
            return model._model.tokenize(anchor_render(dicts), add_special=True, parse_special=True)

        assert anchor_render() == t.render(dicts)
        assert model.prompt_tokens(msgs) == anchor_tokens()  # ordinary text: the same tokens
        r = {"anchor_render": [], "bounded_render": [], "anchor_tokens": [], "safe_tokens": []}
        for _ in range(5):  # interleaved blocks: machine load hits both sides alike
            r["anchor_render"].append(median_us(anchor_render, args.rounds // 5))
            r["bounded_render"].append(median_us(lambda d=dicts: t.render(d), args.rounds // 5))
            r["anchor_tokens"].append(median_us(anchor_tokens, args.rounds // 5))
            r["safe_tokens"].append(median_us(lambda m=msgs: model.prompt_tokens(m), args.rounds // 5))
        med = {k: round(statistics.median(v), 1) for k, v in r.items()}
        out = {
            "conversation": name,
            "prompt_tokens": len(anchor_tokens()),
            **{f"{k}_us": v for k, v in med.items()},
            "render_ratio": round(med["bounded_render"] / med["anchor_render"], 2),
            "tokens_ratio": round(med["safe_tokens"] / med["anchor_tokens"], 2),
        }
        print(json.dumps(out))
    model.close()


if __name__ == "__main__":
    main()
