"""`assistant eval` through the real command: the JSON schema, the table and Markdown, recall with
--index-contexts (the real knowledge base), resume after a kill, bad input, and real answers."""

from __future__ import annotations

import json
import math
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.eval_data import qa_lines, write_qa
from support.tty import run_with_tty_stderr

ROOT = Path(__file__).resolve().parents[2]

# issue 14: "other tooling depends on it"
ROW_KEYS = {"setup", "model", "id", "question", "answer", "gold", "exact", "f1", "contains", "recall",
            "citations_valid", "ttft_ms", "decode_tps", "prompt_tokens"}  # fmt: skip
SUMMARY_KEYS = {"n", "exact", "f1", "contains", "recall", "citations_valid", "ttft_ms_median", "ttft_ms_p90",
                "decode_tps_median", "prompt_tokens_mean", "peak_rss_mb"}  # fmt: skip


def one_line_error(r, *needles: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: "), err
    for n in needles:
        assert n in err, err
    return err


def parse(stdout: str) -> tuple[list[dict], dict]:
    lines = [json.loads(x) for x in stdout.splitlines()]
    assert "summary" in lines[-1] and len(lines[-1]) == 1
    return lines[:-1], lines[-1]["summary"]


def test_json_lines_and_summary(run_cli, tiny_home, qa_file):
    r = run_cli("eval", str(qa_file), "--setups", "closed,rag,oracle", "--index-contexts", "-k", "1",
                "--json", "-n", "8", home=tiny_home)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows, summary = parse(r.stdout)
    # the setups take turns question by question (the machine's load falls on each alike)
    assert [(x["setup"], x["id"]) for x in rows] == [(s, q) for q in ("q1", "q2", "q3", "q4")
                                                      for s in ("closed", "rag", "oracle")]  # fmt: skip
    assert all(set(x) == ROW_KEYS for x in rows)
    assert list(summary) == ["closed", "rag", "oracle"] and all(
        set(s) == SUMMARY_KEYS for s in summary.values()
    )
    for x in rows:
        assert x["model"] == "tiny-chat" and x["exact"] in (0.0, 1.0) and x["contains"] in (0.0, 1.0)
        assert 0.0 <= x["f1"] <= 1.0 and x["exact"] <= x["contains"]
        assert x["ttft_ms"] > 0 and x["prompt_tokens"] > 0 and isinstance(x["answer"], str)
        grounded = x["setup"] != "closed"
        assert (x["citations_valid"] is not None) == grounded
        # each question names its paragraph's rare words: the one source (k=1) is its own paragraph
        assert x["recall"] == (1.0 if x["setup"] == "rag" else None)
    gold = {x["id"]: x["gold"] for x in rows}
    assert gold["q2"] == ["Martha Quill", "Martha Quill, a weaver"]
    by_id = {(x["setup"], x["id"]): x for x in rows}
    assert all(by_id["oracle", q]["prompt_tokens"] > by_id["closed", q]["prompt_tokens"] + 20 for q in gold)
    for name, s in summary.items():  # the summary, recomputed by hand from the lines
        mine = [x for x in rows if x["setup"] == name]
        ttft = sorted(x["ttft_ms"] for x in mine)
        assert s["n"] == 4
        for key in ("exact", "f1", "contains"):
            assert s[key] == pytest.approx(sum(x[key] for x in mine) / 4, abs=1e-4)
        assert s["ttft_ms_median"] == pytest.approx(statistics.median(ttft), abs=0.1)
        assert s["ttft_ms_p90"] == ttft[math.ceil(0.9 * 4) - 1] == ttft[3]  # nearest rank
        assert s["prompt_tokens_mean"] == pytest.approx(sum(x["prompt_tokens"] for x in mine) / 4)
        assert s["peak_rss_mb"] > 10
    assert summary["rag"]["recall"] == 1.0 and summary["closed"]["recall"] is None
    assert summary["closed"]["citations_valid"] is None
    assert "style: normal; rag: k=1 from the file's contexts" in r.stderr  # which prompt ran, beside the JSON


def test_table_markdown_style_and_cost_to_update(run_cli, tiny_home, qa_file, tmp_path):
    # a built model's lock records its build time (convert/lock.py): the cost to update
    lock = {"lock_version": 1, "recipe": {}, "inputs": {"base": {}}, "output": {"sha256": "0" * 64},
            "provenance": {}, "versions": {}, "quality": {}, "seconds": 754.2}  # fmt: skip
    (tiny_home / "tiny-chat.gguf.lock.json").write_text(json.dumps(lock))
    md = tmp_path / "report.md"
    r = run_cli("eval", str(qa_file), "--setups", "oracle,closed", "--style", "short", "--markdown", str(md),
                "-n", "4", "--limit", "2", home=tiny_home)  # fmt: skip
    assert r.returncode == 0, r.stderr
    header, *rest = r.stdout.splitlines()
    assert header.split() == ["oracle", "closed"]
    table = {line[:34].strip(): line[34:].split() for line in rest}
    assert table["questions"] == ["2", "2"]
    assert table["cost to update (build, training)"] == ["13", "min", "13", "min"]
    assert table["gold context retrieved (recall@k)"] == ["-", "-"]
    assert "time to first token, median (ms)" in table and "peak RSS (MB)" in table
    assert "style: short" in r.stderr
    text = md.read_text()
    assert "- style: short" in text and "|  | oracle | closed |" in text and "- rag: not run" in text
    assert "| cost to update (build, training) | 13 min | 13 min |" in text


def _rows(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:] if path.exists() else []


def test_resume_after_kill(run_cli, cli_env, tiny_home, tmp_path):
    qa = write_qa(tmp_path / "long.jsonl", qa_lines(copies=10))  # 40 questions x 2 setups
    results = tmp_path / "run.jsonl"
    args = ["eval", str(qa), "--setups", "closed,oracle", "-n", "48", "--results", str(results)]
    proc = subprocess.Popen([sys.executable, "-m", "assistant", *args], cwd=ROOT, env=cli_env(tiny_home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        while len(_rows(results)) < 5:  # wait for answers to land, then kill mid-run
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _rows(results)
    assert 5 <= len(before) < 80, len(before)
    r = run_cli(*args, "--resume", "--json", home=tiny_home, timeout=600)
    assert r.returncode == 0, r.stderr
    rows, summary = parse(r.stdout)
    assert len(rows) == 80 and len({(x["setup"], x["id"]) for x in rows}) == 80
    assert summary["closed"]["n"] == summary["oracle"]["n"] == 40
    after = _rows(results)
    kept = [line for line in before if line.endswith("}")]  # a torn last line is dropped
    assert after[: len(kept)] == kept and len(after) == 80  # old answers kept, none asked twice
    # other options do not resume this run
    other = run_cli(*args[:-2], "--results", str(results), "-n", "8", "--resume", home=tiny_home)
    one_line_error(other, str(results), "max_tokens", "drop --resume")


@pytest.mark.parametrize(
    ("line", "args", "needles"),
    [
        ("{oops", (), ["qa.jsonl line 2: not valid JSON"]),
        ('{"question": "q?"}', (), ["qa.jsonl line 2: expected the gold answers"]),
        (
            '{"question": "q?", "answer": "a"}',
            ("--setups", "oracle"),
            ["qa.jsonl line 2", "oracle", "context"],
        ),
        (None, ("--setups", "closed,books"), ["--setups", "closed, rag, oracle"]),
        (None, ("--setups", "closed", "--index-contexts"), ["rag"]),
        (None, ("--kb", "x", "--index-contexts"), ["give one"]),
        (None, ("--limit", "2", "--sample", "2"), ["give one"]),
        (None, ("-m", "nosuch"), ["unknown model 'nosuch'"]),
        (None, ("--adapter", "nope.gguf@0.5"), ["--adapter nope.gguf@0.5", "no such file"]),
    ],
)
def test_bad_input_is_one_line(run_cli, tiny_home, qa_file, line, args, needles):
    if line is not None:
        qa_file.write_text(qa_file.read_text().splitlines()[0] + "\n" + line + "\n")
    one_line_error(run_cli("eval", str(qa_file), *args, home=tiny_home), *needles)


def test_missing_file_and_rag_without_a_knowledge_base(run_cli, tiny_home, qa_file, tmp_path):
    one_line_error(run_cli("eval", str(tmp_path / "none.jsonl"), home=tiny_home), "no such question file")
    one_line_error(
        run_cli("eval", str(qa_file), "--setups", "rag", home=tiny_home), "rag", "--index-contexts"
    )


@pytest.mark.slow
def test_real_answers_the_gold_context_helps(run_cli, home_with_default, tmp_path):
    """The default model knows nothing of invented facts, and finds them when given the paragraph."""
    qa = write_qa(tmp_path / "made-up.jsonl", qa_lines()[:2])
    r = run_cli("eval", str(qa), "--setups", "closed,oracle", "--style", "short", "-n", "32", "--json",
                home=home_with_default, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows, summary = parse(r.stdout)
    assert summary["closed"]["contains"] == 0.0
    assert summary["oracle"]["contains"] >= 0.5, [x["answer"] for x in rows]  # 1.0 when measured
    assert summary["oracle"]["citations_valid"] == 1.0


def test_adapter_columns(run_cli, tiny_home, qa_file, tiny_model, tmp_path):
    """A runtime LoRA is one more column per setup: model and model+adapter, on one load of the model."""
    from support.lora import write_random_peft_adapter

    from convert.api import convert_adapter

    lora = tmp_path / "style.gguf"
    convert_adapter(write_random_peft_adapter(tmp_path / "peft", tiny_model), tiny_model, lora, outtype="f16")
    r = run_cli("eval", str(qa_file), "--setups", "closed", "--adapter", f"{lora}@0.5", "--json", "-n", "6",
                "--limit", "2", home=tiny_home)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows, summary = parse(r.stdout)
    assert list(summary) == ["closed@tiny-chat", "closed@tiny-chat+style@0.5"]
    assert [x["model"] for x in rows] == ["tiny-chat"] * 2 + ["tiny-chat+style@0.5"] * 2
    assert [x["answer"] for x in rows[:2]] != [x["answer"] for x in rows[2:]]  # the adapter changed them


def test_progress_with_eta_at_a_terminal_only(run_cli, cli_env, tiny_home, tmp_path):
    qa = write_qa(tmp_path / "longer.jsonl", qa_lines(copies=6))  # 48 answers: more than a second
    args = [sys.executable, "-m", "assistant", "eval", str(qa), "--setups", "closed,oracle", "-n", "32"]
    started = time.monotonic()
    r = run_with_tty_stderr(args, env=cli_env(tiny_home), cwd=ROOT, timeout=120)
    assert r.returncode == 0
    shown = r.screen
    assert "Answering" in shown and "100%" in shown, shown
    if time.monotonic() - started > 4:  # click shows the time left once a second of answers has passed
        assert re.search(r"\d+%  \d\d:\d\d:\d\d", shown), shown
    piped = run_cli("eval", str(qa), "--setups", "closed,oracle", "-n", "4", home=tiny_home)
    assert "Answering" not in piped.stderr and "%" not in piped.stderr.replace("% of it", ""), piped.stderr


@pytest.mark.slow
def test_a_recipe_as_the_model_and_its_build_time(run_cli, tiny_home, tmp_path):
    """--model RECIPE evaluates what the recipe built; its lock's build time is the cost to update."""
    (tmp_path / "eval.txt").write_text("The tower opened in 1889. Paris is in France.\n" * 20)
    recipe = tmp_path / "tiny-bot.toml"
    recipe.write_text('base = "{home}/tiny-chat.gguf"\nquant = "Q8_0"\neval_text = "eval.txt"\n')
    qa = write_qa(tmp_path / "qa.jsonl", qa_lines()[:1])
    args = ("eval", str(qa), "--setups", "closed", "-n", "2", "-m", str(recipe))
    one_line_error(
        run_cli(*args, home=tiny_home), "tiny-bot.gguf is not built yet", f"assistant build {recipe}"
    )
    built = run_cli("build", str(recipe), home=tiny_home, timeout=600)
    assert built.returncode == 0, built.stderr
    seconds = json.loads((tiny_home / "tiny-bot.gguf.lock.json").read_text())["seconds"]
    r = run_cli(*args, home=tiny_home)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].split()[-2:] == [f"{seconds:.0f}", "s"], r.stdout


def test_ctrl_c_keeps_the_answers_and_says_how_to_resume(cli_env, tiny_home, tmp_path):
    qa = write_qa(tmp_path / "long.jsonl", qa_lines(copies=300))  # ~2,400 answers: not done by the signal
    results = tmp_path / "run.jsonl"
    args = ["eval", str(qa), "--setups", "closed,oracle", "-n", "48", "--results", str(results)]
    proc = subprocess.Popen([sys.executable, "-m", "assistant", *args], cwd=ROOT, env=cli_env(tiny_home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while len(_rows(results)) < 3:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no answers written in 300 s"
            time.sleep(0.02)  # a busy loop here would take a core from the run it waits for
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    kept = len(_rows(results))
    assert (
        3 <= kept < 2400
        and f"stopped: the answers so far are kept in {results}; add --resume to continue" in err
    )
