"""A stop while the prompt is being read (Esc in the TUI, Ctrl+C in `ask`) ends the prefill too.

It used to wait for the whole prompt (5-8 s on a long one): llama.cpp's abort callback now
asks the cancel event after every graph node.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from support.interrupting import wait_until

from assistant.engine import ChatModel, Message, SamplingParams

pytestmark = pytest.mark.slow

FILLER = "The committee reviews the quarterly report on rainfall, printing presses and bridges. "


def long_question(model: ChatModel, n_tokens: int) -> list[Message]:
    per = len(model.tokenize(FILLER))
    return [Message("user", FILLER * (n_tokens // per) + "Summarise this.")]


def test_a_stop_during_the_prompt_ends_it_without_tokens_and_keeps_what_was_read(
    default_model_path: Path,
) -> None:
    with ChatModel(default_model_path, n_ctx=4096) as model:
        messages = long_question(model, 3000)
        n_prompt = model.count_tokens(messages)
        params = SamplingParams(temperature=0, max_tokens=16)
        cancel = threading.Event()
        stream = model.chat(messages, params, cancel=cancel)
        ctx = model._ctx

        def stop_once_under_way() -> None:
            wait_until(lambda: len(ctx.cached) >= ctx.config.n_batch, 120, "the first slice of the prompt")
            cancel.set()

        stopper = threading.Thread(target=stop_once_under_way)
        stopper.start()
        text = stream.text()
        stopper.join()
        r = stream.result
        assert r is not None
        assert r.finish_reason == "cancelled" and r.completion_tokens == 0 and text == ""
        assert r.timings.ttft_ms == 0  # no token was ever sampled
        read = r.timings.prefill_tokens
        assert 0 < read < n_prompt  # stopped inside the prompt, not after reading all of it
        assert len(ctx.cached) == read

        # the context is sound: the next answer reuses what was read and completes
        again = model.chat(messages, params)
        assert again.text()
        assert again.result is not None and again.result.cached_tokens == read
        assert again.result.finish_reason in ("stop", "length")
