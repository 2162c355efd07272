"""The TUI on the real default model (llama.cpp), through Pilot, with the network blocked."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from tui_helpers import ready as wait_ready
from tui_helpers import screen_text, send, wait_for

from assistant.home import Home
from assistant.tui.app import AssistantApp
from assistant.tui.options import TuiOptions

pytestmark = pytest.mark.slow


@pytest.fixture
def no_network(monkeypatch):
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


async def test_real_model_answers_streams_stops_and_persists(home_with_default: Path, no_network):
    home = Home(home_with_default)
    model = home.root / "SmolLM2-135M-grounded.Q8_0.gguf"  # the default
    options = TuiOptions(home=home, model=model, n_ctx=1024, sampling={"temperature": 0.0, "max_tokens": 40})
    app = AssistantApp(options)  # the real engine, retriever seam and conversation store
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.model_state != "loading", timeout=120, what="the model")
            await wait_ready(pilot)
            assert app.model_state == "ready", app.model_error
            assert app.engine.n_ctx == 1024
            assert app.status.info.quant == "Q8_0"
            assert app.status.info.retrieval == "none"  # no knowledge base in this home
            await send(pilot, "What is the capital of France?", wait=False)
            await wait_for(pilot, lambda: app.turn is None, timeout=180, what="the answer")
            answer = app.chat_log.messages[-1]
            assert answer.streamed_text.strip()
            assert answer.meta["finish_reason"] in ("stop", "length")
            assert answer.meta["decode_tps"] > 0 and answer.meta["ttft_ms"] > 0
            assert app.status.info.tps == pytest.approx(answer.meta["decode_tps"], abs=0.05)
            assert 0 < app.status.info.used <= 1024
            assert "tok/s" in screen_text(app)
            # a long answer, stopped with Esc once it is under way (past end-of-turn: the default model is
            # trained to be brief, and its story can end before Esc is pressed)
            app.sampling = app.sampling.with_(max_tokens=400, temperature=0.8, seed=7, ignore_eos=True)
            await send(pilot, "Write a very long story about a dragon who learns to cook.", wait=False)
            await wait_for(
                pilot,
                lambda: app.turn is not None and len(app.turn.widget.streamed_text.split()) >= 5,
                timeout=180,
                what="the story to start",
            )
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.turn is None, timeout=60, what="the stop")
            story = app.chat_log.messages[-1]
            assert story.meta["finish_reason"] == "cancelled"
            assert story.meta["completion_tokens"] < 400
            assert story.streamed_text.strip() and story.markdown.source == story.streamed_text
            stored = app.store.messages(app.conversation.id)
            assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
            assert stored[-1].content == story.streamed_text
            assert stored[-1].meta["finish_reason"] == "cancelled"
    finally:
        app.close_resources()
    assert no_network == []  # nothing tried to reach the network
