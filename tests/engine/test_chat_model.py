"""The engine on the real default model: reproducibility, stops, cancel, long chats."""

from __future__ import annotations

import threading
import time

import pytest

from assistant.engine import ChatModel, Message, SamplingParams

Q = [Message("user", "Write three sentences about the sea.")]


def test_greedy_is_reproducible(chat_model):
    p = SamplingParams(temperature=0, max_tokens=32)
    a = chat_model.chat(Q, p).text()
    b = chat_model.chat(Q, p).text()
    assert a and a == b


def test_fixed_seed_is_reproducible_and_seed_matters(chat_model):
    p = SamplingParams(temperature=0.9, top_p=0.95, max_tokens=32, seed=1234)
    a = chat_model.chat(Q, p).text()
    b = chat_model.chat(Q, p).text()
    assert a == b
    others = {chat_model.chat(Q, p.with_(seed=s)).text() for s in (1, 2, 3)}
    assert len(others | {a}) > 1


def test_result_reports_usage_timings_and_cache(chat_model):
    s = chat_model.chat(Q, SamplingParams(temperature=0, max_tokens=16))
    s.text()
    r = s.result
    assert r.prompt_tokens == chat_model.count_tokens(Q)
    assert 0 < r.completion_tokens <= 16
    assert r.timings.ttft_ms > 0 and r.timings.prefill_tps > 0
    assert r.tokens_used == r.prompt_tokens + r.completion_tokens
    # same prompt again: all but the last prompt token comes from the cache
    s2 = chat_model.chat(Q, SamplingParams(temperature=0, max_tokens=4))
    s2.text()
    assert s2.result.cached_tokens == r.prompt_tokens - 1


def test_max_tokens_gives_length(chat_model):
    s = chat_model.chat(Q, SamplingParams(temperature=0, max_tokens=5))
    s.text()
    assert s.result.completion_tokens == 5
    assert s.result.finish_reason == "length"


def test_stop_string_cuts_the_answer(chat_model):
    p = SamplingParams(temperature=0, max_tokens=40)
    full = chat_model.chat(Q, p).text()
    words = full.split()
    assert len(words) > 6
    stop = words[5]
    s = chat_model.chat(Q, p.with_(stop=[stop]))
    text = s.text()
    assert text == full[: full.index(stop)]
    assert s.result.finish_reason == "stop"


def test_cancel_returns_within_one_token(chat_model):
    cancel = threading.Event()
    s = chat_model.chat(Q, SamplingParams(max_tokens=200, ignore_eos=True), cancel=cancel)
    seen = 0
    after = 0
    for _ in s:
        if cancel.is_set():
            after += 1
        seen += 1
        if seen == 5:
            cancel.set()
    assert after <= 1
    assert s.result.finish_reason == "cancelled"
    assert s.result.completion_tokens <= 6
    assert s.result.text  # what was written is kept


def test_cancel_from_another_thread_is_prompt(chat_model):
    cancel = threading.Event()
    s = chat_model.chat(Q, SamplingParams(max_tokens=400, ignore_eos=True), cancel=cancel)
    it = iter(s)
    next(it)
    timer = threading.Timer(0.2, cancel.set)
    timer.start()
    for _ in it:
        pass
    stopped_at = time.perf_counter()
    timer.join()
    assert s.result.finish_reason == "cancelled"
    per_token = 1 / max(s.result.timings.decode_tps, 1)
    # the loop ends within a token or two of the event (generous for a shared machine)
    assert stopped_at - (s.result.timings.ttft_ms / 1000) > 0
    assert s.result.completion_tokens < 400
    assert per_token < 0.5


@pytest.fixture(scope="module")
def small_window_model(default_model_path):
    m = ChatModel(default_model_path, n_ctx=256)
    yield m
    m.close()


def test_sixty_turns_in_a_small_window_never_raise(small_window_model):
    m = small_window_model
    system = Message("system", "You are a terse assistant. Answer in one short sentence.")
    history: list[Message] = []
    dropped_seen = False
    for i in range(60):
        history.append(Message("user", f"Turn {i}: name a colour and a number."))
        s = m.chat([system, *history], SamplingParams(max_tokens=12, seed=i))
        answer = s.text()
        assert s.messages[0] == system  # the system prompt always stays
        assert s.messages[-1] == history[-1]  # and the newest question
        assert s.result.tokens_used <= m.n_ctx
        dropped_seen |= s.context.dropped_messages > 0
        history.append(Message("assistant", answer))
    assert dropped_seen
    assert any("left the 256-token context window" in n for n in s.context.notices())


def test_over_long_message_is_truncated_with_notice(small_window_model):
    m = small_window_model
    big = "lorem ipsum dolor sit amet " * 400
    s = m.chat([Message("user", big + "\nWhat language is this?")], SamplingParams(max_tokens=8))
    s.text()
    assert s.context.truncated
    assert "cut to fit the context window" in s.messages[-1].content
    assert s.messages[-1].content.endswith("What language is this?")
    assert s.result.prompt_tokens <= m.n_ctx - 8
    assert any("your message was cut" in n for n in s.context.notices())
