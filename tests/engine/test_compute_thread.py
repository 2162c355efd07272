"""Every llama.cpp graph runs on one OS thread, whichever thread asks (see engine/compute.py:
a second calling thread gives libgomp a second team and slows decode for the whole process)."""

from __future__ import annotations

import threading

import llama_cpp

from assistant.engine import Message, SamplingParams, backend, compute


def test_decodes_from_any_thread_run_on_the_one_compute_thread(chat_model, monkeypatch):
    seen: list[int] = []
    real = llama_cpp.llama_decode

    def recording(ctx, batch):
        seen.append(threading.get_ident())
        return real(ctx, batch)

    monkeypatch.setattr(backend.L, "llama_decode", recording)
    q = [Message("user", "Name a colour.")]
    p = SamplingParams(temperature=0, max_tokens=6)
    main_answer = chat_model.chat(q, p).text()
    answers: list[str] = []
    workers = [
        threading.Thread(target=lambda: answers.append(chat_model.chat(q, p).text())) for _ in range(2)
    ]
    for t in workers:
        t.start()
        t.join()

    assert answers == [main_answer, main_answer]  # same work, same result, from any thread
    assert len(seen) >= 6  # prefill + tokens, three times
    assert set(seen) == {compute._ident}
    assert compute._ident not in {threading.get_ident(), *(t.ident for t in workers)}


def test_an_error_inside_the_call_reaches_the_caller():
    def boom() -> None:
        raise ValueError("from the compute thread")

    try:
        compute.run(boom)
    except ValueError as exc:
        assert str(exc) == "from the compute thread"
    else:
        raise AssertionError("the error was lost")
    assert compute.run(lambda a, b: a + b, 2, 3) == 5


def test_a_command_that_computes_from_one_thread_claims_it(default_model_path):
    """`assistant ask` claims its main thread: decodes run inline there, with no hop."""
    import subprocess
    import sys

    code = f"""
import threading
import llama_cpp
from assistant.engine import ChatModel, Message, SamplingParams, backend, compute
assert compute.claim_current_thread()
seen = set()
real = llama_cpp.llama_decode
def recording(ctx, batch):
    seen.add(threading.get_ident())
    return real(ctx, batch)
backend.L.llama_decode = recording
m = ChatModel({str(default_model_path)!r}, n_ctx=512)
m.chat([Message("user", "Hi")], SamplingParams(temperature=0, max_tokens=4)).text()
other = threading.Thread(target=lambda: print("claimed-by-other:", compute.claim_current_thread()))
other.start(); other.join()
print("inline:", seen == {{threading.get_ident()}})
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "inline: True" in out.stdout
    assert "claimed-by-other: False" in out.stdout
