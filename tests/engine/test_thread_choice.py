"""The thread choice on the real engine (#17): each answer starts with the count the (fake)
machine state gives, the tuner's changes reach llama.cpp between two tokens, a pinned count
stays, and none of it changes a greedy answer."""

from __future__ import annotations

from pathlib import Path

import llama_cpp as L
import pytest

from assistant.engine import ChatModel, Message, SamplingParams
from assistant.engine import threads as T

Q = [Message("user", "Write three sentences about the sea.")]
GREEDY = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """The process-wide probes pointed at a fake 2-core machine; set(n) puts n runnable
    threads of other processes on it."""
    proc = tmp_path / "proc"
    task = proc / "self" / "task" / "1"
    task.mkdir(parents=True)
    (task / "stat").write_text("1 (python) R 1 1 1\n")
    (proc / "self" / "cgroup").write_text("0::/\n")
    (proc / "cpuinfo").write_text("".join(f"processor : {i}\ncore id : {i}\n\n" for i in range(2)))
    monkeypatch.setattr(T.SYSTEM, "proc", proc)
    monkeypatch.setattr(T.SYSTEM, "cgroup", tmp_path / "no-cgroup")
    monkeypatch.setattr(T.SYSTEM, "affinity", lambda pid: {0, 1})
    monkeypatch.setattr(T.SYSTEM, "online", 2)
    monkeypatch.setattr(T.SYSTEM, "_quota", None)

    def set_others(n: int) -> None:
        (proc / "loadavg").write_text(f"1.0 1.0 1.0 {n + 1}/90 1234\n")  # + our probing thread

    set_others(0)
    return set_others


def answer(model: ChatModel) -> tuple[str, list[int]]:
    s = model.chat(Q, GREEDY)
    text = s.text()
    assert s.result is not None
    return text, s.result.timings.threads


def test_each_answer_starts_from_the_cpu_free_then(chat_model, machine):
    idle_text, idle = answer(chat_model)
    assert idle == [2]  # idle: all physical cores, no trial in a short answer
    machine(1)  # one busy-loop process
    busy_text, busy = answer(chat_model)
    assert busy[0] == 1
    assert L.llama_n_threads(chat_model._ctx.ptr) == busy[-1]  # what llama.cpp was told last
    assert busy_text == idle_text  # the thread count never changes the answer


def test_tuner_changes_reach_llama_cpp_between_tokens(chat_model, machine, monkeypatch):
    reference, _ = answer(chat_model)

    def always_keep() -> T.ThreadTuner:  # any trial is "faster": 2 -> 1 after 3 tokens
        return T.ThreadTuner(current=2, hi=2, busy_start=True, first_trial=3, window=2, margin=-100.0)

    monkeypatch.setattr(chat_model, "_thread_tuner", always_keep)
    text, ran = answer(chat_model)
    assert ran == [2, 1]
    assert L.llama_n_threads(chat_model._ctx.ptr) == 1
    assert text == reference


def test_pinned_threads_ignore_the_machine(default_model_path: Path, machine):
    machine(3)
    with ChatModel(default_model_path, n_ctx=256, n_threads=2) as pinned:
        _, ran = answer(pinned)
        assert ran == [2]
