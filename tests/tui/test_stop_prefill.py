"""Esc while the real model reads a long prompt stops it there, and the status says so (no "0 ms · 0.0 tok/s")."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_helpers import ready as wait_ready
from tui_helpers import screen_text, send, wait_for

from assistant.home import Home
from assistant.tui.app import AssistantApp
from assistant.tui.options import TuiOptions
from assistant.tui.widgets.chat_message import answer_footer
from assistant.tui.widgets.status_bar import StatusBar, StatusInfo, speed_fields

FILLER = "The committee reviews the quarterly report on rainfall, printing presses and bridges. "


def test_an_answer_stopped_before_its_first_token_shows_no_speed() -> None:
    early = {"finish_reason": "cancelled", "completion_tokens": 0, "ttft_ms": 0.0, "decode_tps": 0.0}
    later = {"finish_reason": "cancelled", "completion_tokens": 9, "ttft_ms": 120.0, "decode_tps": 95.0}
    bar = StatusBar()
    bar.info = StatusInfo(model="m.gguf", quant="Q4_1", window=4096, **speed_fields(early))
    line = bar.text(110).plain
    assert "stopped before the first token" in line and "tok/s" not in line and " ms" not in line
    assert answer_footer(early) == "stopped before the first token"
    bar.info = StatusInfo(model="m.gguf", quant="Q4_1", window=4096, **speed_fields(later))
    assert "120 ms · 95 tok/s" in bar.text(110).plain
    assert answer_footer(later) == "stopped · 9 tokens · 120 ms to first token · 95 tok/s"


@pytest.mark.slow
async def test_esc_while_the_prompt_is_read_stops_before_the_first_token(home_with_default: Path) -> None:
    home = Home(home_with_default)
    model = home.root / "SmolLM2-135M-Instruct.Q8_0.gguf"
    options = TuiOptions(home=home, model=model, n_ctx=4096, sampling={"temperature": 0.0, "max_tokens": 40})
    app = AssistantApp(options)
    try:
        async with app.run_test(size=(110, 30)) as pilot:
            await wait_for(pilot, lambda: app.model_state != "loading", timeout=120, what="the model")
            await wait_ready(pilot)
            assert app.model_state == "ready", app.model_error
            engine = app.engine
            question = FILLER * (3000 // len(engine.tokenize(FILLER))) + "Summarise this."
            await send(pilot, question, wait=False)
            ctx = engine._ctx
            await wait_for(
                pilot,
                lambda: app.turn is not None and len(ctx.cached) >= ctx.config.n_batch,
                timeout=120,
                what="the prompt to be under way",
            )
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.turn is None, timeout=60, what="the stop")
            answer = app.chat_log.messages[-1]
            assert answer.meta["finish_reason"] == "cancelled" and answer.meta["completion_tokens"] == 0
            assert len(ctx.cached) < engine.count_tokens([m for m in app.history if m.role == "user"][-1:])
            assert app.status.info.speed_note == "stopped before the first token"
            await pilot.pause()
            shown = screen_text(app)
            assert "stopped before the first token" in shown
            assert "0.0 tok/s" not in shown and "ms to first token" not in shown
    finally:
        app.close_resources()
