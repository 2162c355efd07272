"""`assistant ask` through the real command: JSON shape, stdin, streaming."""

from __future__ import annotations

import json


def test_json_output_has_the_documented_fields(run_cli, home_with_default):
    r = run_cli("ask", "--json", "-n", "16", "--seed", "1", "What is two plus two?", home=home_with_default)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["answer"].strip()
    assert obj["model"] == "SmolLM2-135M-grounded.Q8_0.gguf"  # the default
    assert set(obj["usage"]) >= {"prompt_tokens", "completion_tokens"}
    assert 0 < obj["usage"]["completion_tokens"] <= 16
    assert set(obj["timings"]) >= {"load_ms", "ttft_ms", "prefill_tps", "decode_tps"}
    assert all(
        v > 0
        for k, v in obj["timings"].items()
        if k != "threads" and (k != "decode_tps" or obj["usage"]["completion_tokens"] > 1)
    )


def test_json_timings_say_the_threads_that_ran(run_cli, home_with_default):
    """#17: a count, or the counts in order when it changed during the answer; --threads pins it."""
    import os

    cores = len(os.sched_getaffinity(0))
    for flag in ((), ("--threads", "auto"), ("--threads", "1")):
        r = run_cli("ask", "--json", "-n", "8", "-t", "0", *flag, "Say hello.", home=home_with_default)
        assert r.returncode == 0, r.stderr
        ran = json.loads(r.stdout)["timings"]["threads"]
        if flag[-1:] == ("1",):
            assert ran == 1
        else:
            counts = [ran] if isinstance(ran, int) else ran
            assert counts and all(isinstance(n, int) and 1 <= n <= cores for n in counts), ran


def test_plain_output_streams_the_answer(run_cli, home_with_default):
    r = run_cli("ask", "-n", "12", "-t", "0", "Say hello.", home=home_with_default)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    assert r.stdout.endswith("\n")
    # llama.cpp's own log stays silent without --verbose: only our notes may appear
    assert all(line.startswith("note: ") for line in r.stderr.splitlines()), r.stderr
    again = run_cli("ask", "-n", "12", "-t", "0", "Say hello.", home=home_with_default)
    assert again.stdout == r.stdout  # greedy: same answer


def test_question_from_stdin(run_cli, home_with_default):
    piped = run_cli(
        "ask",
        "--json",
        "-n",
        "8",
        "-t",
        "0",
        input="What is the capital of France?\n",
        home=home_with_default,
    )
    argued = run_cli(
        "ask", "--json", "-n", "8", "-t", "0", "What is the capital of France?", home=home_with_default
    )
    assert piped.returncode == 0, piped.stderr
    a, b = json.loads(piped.stdout), json.loads(argued.stdout)
    assert a["usage"]["prompt_tokens"] == b["usage"]["prompt_tokens"]
    assert a["answer"] == b["answer"]


def test_stdin_is_context_for_the_question(run_cli, home_with_default):
    notes = "Meeting notes. The launch moved to Thursday. Budget approved. Alice owns the demo.\n" * 5
    alone = json.loads(run_cli("ask", "--json", "-n", "4", "Summarise", home=home_with_default).stdout)
    r = run_cli("ask", "--json", "-n", "4", "Summarise", input=notes, home=home_with_default)
    assert r.returncode == 0, r.stderr
    with_notes = json.loads(r.stdout)
    extra = with_notes["usage"]["prompt_tokens"] - alone["usage"]["prompt_tokens"]
    assert extra > 80  # the notes went into the prompt


def test_system_prompt_and_sampling_flags(run_cli, home_with_default):
    r = run_cli(
        "ask",
        "--json",
        "-s",
        "Answer in French.",
        "-t",
        "0.5",
        "--top-p",
        "0.8",
        "--top-k",
        "20",
        "--min-p",
        "0.1",
        "--repeat-penalty",
        "1.2",
        "--seed",
        "7",
        "-n",
        "8",
        "--stop",
        "\n\n",
        "Hello",
        home=home_with_default,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["usage"]["completion_tokens"] <= 8


def test_bad_sampling_value_is_one_line(run_cli, home_with_default):
    r = run_cli("ask", "--top-p", "1.5", "hi", home=home_with_default)
    assert r.returncode == 2
    assert r.stderr.strip() == "Error: invalid sampling parameter: top_p must be in (0, 1]"


def test_invalid_utf8_question_is_answered(run_cli, home_with_default):
    """#12 item 5: undecodable bytes in argv or on stdin become U+FFFD (was exit 1, UnicodeEncodeError)."""

    def prompt_tokens(r) -> int:
        assert r.returncode == 0, r.stderr
        obj = json.loads(r.stdout)
        assert obj["answer"].strip()
        return obj["usage"]["prompt_tokens"]

    ask = ("ask", "--json", "-n", "4", "-t", "0")
    replaced = prompt_tokens(run_cli(*ask, "caf\ufffd ok?", home=home_with_default))
    # argv: Python hands undecodable bytes over as surrogate escapes; subprocess writes them back as bytes
    assert prompt_tokens(run_cli(*ask, "caf\udcff ok?", home=home_with_default)) == replaced
    assert prompt_tokens(run_cli(*ask, input=b"caf\xff ok?\n", home=home_with_default)) == replaced
    assert prompt_tokens(run_cli(*ask, input="caf\ufffd ok?\n".encode(), home=home_with_default)) == replaced
