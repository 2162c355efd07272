"""`assistant finetune` as a command: --help, --json, one-line errors for bad data, resume after a kill or Ctrl+C."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.finetune import corpus_text
from support.interrupting import run_and_interrupt, wait_until
from support.tty import run_with_tty_stderr

ROOT = Path(__file__).resolve().parents[2]


def _args(base: Path, out: Path, *data: Path, extra: tuple[str, ...] = ()) -> list[str]:
    args = ["finetune", str(base), "-o", str(out), "--threads", "1", "--train", "last:1", "--lr", "1e-3"]
    for d in data:
        args += ["--data", str(d)]
    return [*args, *extra]


def test_help(run_cli: Any) -> None:
    r = run_cli("finetune", "--help")
    assert r.returncode == 0
    for opt in ("--data", "--train", "--epochs", "--lr", "--rank", "--resume", "--json", "last:N"):
        assert opt in r.stdout


def test_json_summary(run_cli: Any, tiny_hf: Path, doc: Path, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run_cli(
        *_args(tiny_hf, out, doc, extra=("--epochs", "2", "--rank", "4", "--json")), home=home, timeout=300
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    s = json.loads(lines[0])
    for key in (
        "train_loss_first",
        "train_loss_last",
        "val_loss_first",
        "val_loss_last",
        "train_tokens_per_s",
        "seconds",
    ):
        assert isinstance(s[key], float), key
    assert s["train_loss_last"] < s["train_loss_first"] and s["val_loss_last"] < s["val_loss_first"]
    assert s["adapter"]["rank"] == 4 and 0 < s["adapter"]["share_kept"] < 1
    assert (
        s["adapter"]["kld"]["mean_kld"] > 1e-4
    )  # rank 4 loses part of the change: measured on held-out text
    assert len(s["reference_losses"]) == 3 and s["reference_loss_first"] == s["reference_losses"][0]
    assert s["forgetting"] == pytest.approx(
        math.exp(s["reference_loss_last"] - s["reference_loss_first"]) - 1
    )
    for key in ("adapter_config", "adapter_model", "gguf_lora", "recipe"):
        assert Path(s["paths"][key]).is_file() and Path(s["paths"][key]).parent == out
    assert (home / "finetune").is_dir()  # the F32 working copy of the HF base, made once


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "", "empty.txt is empty (no text to train on)"),
        ("short.txt", "Just a few words.", "too short for one 256-token window"),
        ("short.jsonl", '{"question": "q", "context": "c", "answer": "a"}\n', "too short for one 256-token window"),
        ("keys.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n{"prompt": "q", "completion": "a"}\n',
         "keys.jsonl:2: expected 'messages' or non-empty 'question', 'context', 'answer' strings, got ['completion', 'prompt']"),
        ("broken.jsonl", '{"question": "q", "context": "c", "answer": "a"}\n{"question": \n', "broken.jsonl:2: not valid JSON"),
        ("blank.jsonl", "\n\n", "blank.jsonl is empty"),
    ],
)  # fmt: skip
def test_bad_data_is_one_line(
    run_cli: Any, tiny_hf: Path, home: Path, tmp_path: Path, name: str, content: str, message: str
) -> None:
    data = _write(tmp_path / name, content)
    r = run_cli(*_args(tiny_hf, tmp_path / "out", data), home=home, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_bad_train_spec_is_one_line(
    run_cli: Any, tiny_hf: Path, doc: Path, home: Path, tmp_path: Path
) -> None:
    r = run_cli(*_args(tiny_hf, tmp_path / "out", doc, extra=("--train", "last:9")), home=home, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip() == "Error: --train last:9: expected 1 to 2 layers (the model has 2)"


def test_chat_jsonl_trains(run_cli: Any, tiny_hf: Path, home: Path, tmp_path: Path) -> None:
    """Both JSONL layouts go through the chat template; enough of them make windows to train on."""
    rows = []
    for i in range(60):
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {i} plus {i}?"},
                    {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
                ]
            }
        )
        rows.append({"question": f"Which number is item {i}?", "context": corpus_text(1)[: 200 + i],
                     "answer": str(i)})  # fmt: skip
    data = _write(tmp_path / "chats.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    r = run_cli(
        *_args(tiny_hf, tmp_path / "out", data, extra=("--json", "--rank", "2")), home=home, timeout=300
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["train_windows"] >= 5 and s["train_loss_first"] > 0
    # by default the loss is on the answers: they are a small share of the tokens, and their own
    # validation loss (an inference pass over the weights being trained) goes down
    assert s["loss"] == "answers" and 0 < s["target_tokens"] < s["tokens"] / 4
    first, last = s["val_target_losses"]
    assert last < first
    assert list((tmp_path / "out" / "checkpoint").glob("labels-*.npz"))  # kept for a resume

    r = run_cli(
        *_args(tiny_hf, tmp_path / "all", data, extra=("--json", "--rank", "2", "--loss", "all")),
        home=home,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["loss"] == "all" and s["target_tokens"] == s["tokens"] and s["val_target_losses"] == []


def _state(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "checkpoint" / "state.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


@pytest.fixture
def long_doc(tmp_path: Path) -> Path:
    return _write(tmp_path / "long.txt", corpus_text(12))  # about 80 windows: a few seconds an epoch


def test_resume_after_kill_continues_from_the_checkpoint(
    run_cli: Any, cli_env: Any, tiny_hf: Path, long_doc: Path, home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = _args(tiny_hf, out, long_doc, extra=("--epochs", "3", "--patience", "0", "--json"))
    proc = subprocess.Popen([sys.executable, "-m", "assistant", *args], env=cli_env(home), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(lambda: ((st := _state(out)) is not None and st["epoch"] >= 1) or proc.poll() is not None, 300,
                   "the first epoch's checkpoint")  # fmt: skip
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed = _state(out)
    assert killed is not None and proc.returncode == -signal.SIGKILL
    assert 1 <= killed["epoch"] < 3, killed
    assert not (out / "adapter_config.json").exists()  # it never got that far
    again = run_cli(*args, home=home, timeout=300)  # without --resume: refused, the checkpoint is kept
    assert again.returncode == 2 and "holds a checkpoint of an earlier run; pass --resume" in again.stderr
    assert _state(out) == killed
    r = run_cli(*args, "--resume", home=home, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["epochs_done"] == 3 and len(s["train_losses"]) == 3
    assert s["train_losses"][: killed["epoch"]] == killed["train_losses"]  # kept, not trained again
    assert s["val_losses"][: killed["epoch"] + 1] == pytest.approx(killed["val_losses"])
    assert s["steps"] == 3 * s["train_windows"]
    assert s["train_seconds"] > killed["train_seconds"] > 0  # the time before the kill counts too
    assert s["val_loss_last"] < s["val_loss_first"]


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_ctrl_c_saves_and_resume_finishes(
    cli_env: Any,
    run_cli: Any,
    tiny_hf: Path,
    long_doc: Path,
    home: Path,
    tmp_path: Path,
    sig: int,
    status: int,
) -> None:
    """Ctrl+C, or a SIGTERM from a process manager, saves a checkpoint where training stands."""
    out = tmp_path / "out"
    args = _args(tiny_hf, out, long_doc, extra=("--epochs", "2", "--patience", "0", "--json"))
    st: dict[str, Any] = {}

    def mid_second_epoch() -> bool:
        nonlocal st
        st = _state(out) or {}
        return st.get("epoch", 0) >= 1

    got = run_and_interrupt([sys.executable, "-m", "assistant", *args], busy=mid_second_epoch, env=cli_env(home),
                            cwd=ROOT, logs=tmp_path / "logs", sig=sig)  # fmt: skip
    assert got.returncode == status, got.stderr
    saved = _state(out)
    assert saved is not None and saved["epoch"] == 1, saved  # the SIGINT came after the first checkpoint
    assert "--resume continues" in got.stderr
    r = run_cli(*args, "--resume", home=home, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["epochs_done"] == 2 and s["steps"] == 2 * s["train_windows"]
    # the checkpoint holds exactly the steps it records (a step and its record are never split)
    assert saved["step"] == s["train_windows"] + saved["next_window"]
    assert s["train_losses"][0] == saved["train_losses"][0]


def test_progress_at_a_terminal_and_in_a_log(
    run_cli: Any, cli_env: Any, tiny_hf: Path, doc: Path, home: Path, tmp_path: Path
) -> None:
    """Loss, tokens/s and the time left on stderr: one line redrawn at a terminal (a pty), plain lines
    every 5% of the steps on a pipe (a log file), never on stdout."""
    args = [sys.executable, "-m", "assistant", *_args(tiny_hf, tmp_path / "out", doc)]
    r = run_with_tty_stderr(args, env=cli_env(home), cwd=ROOT, timeout=300)
    assert r.returncode == 0
    shown, stdout = r.screen, r.stdout
    assert re.search(r"epoch 1/1  step \d+/\d+  loss \d+\.\d{4}  lr [\d.e+-]+  \d+ tok/s  ETA \d+s", shown), (
        shown
    )
    assert "train loss" in stdout and "step" not in stdout

    r2 = run_cli(*_args(tiny_hf, tmp_path / "logged", doc), home=home, timeout=300)
    assert r2.returncode == 0, r2.stderr
    lines = r2.stderr.splitlines()
    steps = [
        int(m.group(1)) for m in map(re.compile(r"^epoch 1/1  step (\d+)/(\d+)  loss ").match, lines) if m
    ]
    total = int(re.search(r"step \d+/(\d+)", lines[-1]).group(1))  # type: ignore[union-attr]
    assert steps and steps[-1] == total and len(steps) <= 21 and "\x1b" not in r2.stderr
    assert "step" not in r2.stdout


def test_max_forgetting_stops_training(run_cli: Any, tiny_hf: Path, home: Path, tmp_path: Path) -> None:
    """One word over and over at a high rate: the model forgets general text (convert's eval text), and the guard stops it."""
    data = _write(tmp_path / "mono.txt", "the the the the " * 600)
    extra = ("--epochs", "3", "--lr", "1e-2", "--patience", "0", "--max-forgetting", "0.05", "--json")
    r = run_cli(*_args(tiny_hf, tmp_path / "out", data, extra=extra), home=home, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["stopped_early"] == "forgetting" and s["epochs_done"] == 1
    assert s["forgetting"] > 0.05 and s["reference_loss_last"] > s["reference_loss_first"]
    assert s["val_loss_last"] < s["val_loss_first"]  # it did learn its data: what it lost was the rest
