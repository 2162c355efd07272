"""The README's commands, as a new user runs them (issue 12, item 25).

Every line of the README's ```bash blocks that runs `assistant` is collected, in order. Lines that
need the user's own inputs (a placeholder in capitals such as HF_DIR or OWNER/REPO, a path under
~/, or a comment that starts with "needs") and long runs (a comment that starts with "takes") are
only checked to parse: the sub-command's --help works and lists every option the line uses, and
every placeholder is explained in the README's prose. All other lines run AS WRITTEN, through
bash (pipes included), one after the other, in a scratch copy of the checkout's build/ and docs/
whose models/ is the model home and holds what ./setup.sh installs (symlinks into models/).
Bare `assistant` gets a question on stdin here, so it runs the line-based chat; the full-screen
chat is tests/tui/test_e2e_tmux.py's. `assistant bench` is a long run: tests/engine/test_bench.py
runs it with the smallest settings.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# A whole argument that stands for the user's own input: HF_DIR, OWNER/REPO, [FILE.gguf], ~/notes.
PLACEHOLDER = re.compile(r"\[?(~/\S*|[A-Z][A-Z_]*[A-Z](?:/[A-Z][A-Z_]*[A-Z])?(?:\.[a-z]+)?)\]?")

# The lines that are only parsed, and why; a README change that moves a line between "run" and
# "parsed only" has to change this list too.
PARSED_ONLY = {
    "assistant models pull OWNER/REPO [FILE.gguf]": "placeholder",
    "assistant bench": "long",
    "assistant convert HF_DIR -o out.gguf --adapter LORA_DIR --quant Q4_K_M": "placeholder",
    "assistant convert-adapter LORA_DIR --base HF_DIR -o lora.gguf": "placeholder",
    "assistant index add ~/notes": "placeholder",
    "assistant index eval --queries QUERIES.jsonl --qrels QRELS.tsv": "placeholder",
    "assistant build build/examples/support-bot.toml": "needs",
    "assistant eval QA.jsonl --kb KB --sample 100": "placeholder",
    "assistant eval QA.jsonl --kb KB -m SmolLM2-135M-Instruct.Q8_0.gguf -m support-bot --markdown report.md": (
        "placeholder"
    ),
    "assistant finetune SmolLM2-135M-Instruct.Q8_0.gguf --data CHATS.jsonl --train last:8 --window 512 -o ADAPTER_DIR": (
        "placeholder"
    ),
}

# What each line that runs must show, beyond exit status 0 (a new README line needs an entry).
Check = Callable[[str], bool]


def _json_answer(out: str) -> bool:
    obj = json.loads(out)
    return bool(obj["answer"].strip()) and {"model", "usage", "timings"} <= set(obj)


def _answered(out: str) -> bool:
    return len(out.split()) >= 3


EXPECT: dict[str, Check] = {
    "assistant": lambda out: len(out.strip()) > 0,
    'assistant ask "What is GGUF?"': _answered,
    'echo "What is GGUF?" | assistant ask': _answered,
    'cat build/examples/support-bot.txt | assistant ask "How do I reset the router?"': _answered,
    'assistant ask --json "Hi"': _json_answer,
    "assistant models": lambda out: (
        "SmolLM2-135M-grounded.Q8_0.gguf" in out and "SmolLM2-135M-Instruct" in out
    ),
    "assistant models show SmolLM2-135M-grounded": lambda out: "smollm2-grounded" in out and "Q8_0" in out,
    "assistant index add docs/ --collection work": lambda out: "2" in out and "document" in out,
    'assistant ask "Which thread runs llama_decode?"': _answered,
    'assistant search "compute thread" -k 5': lambda out: "ARCHITECTURE.md" in out,
    "assistant index sync": lambda out: len(out.strip()) > 0,
    "assistant index list": lambda out: "ARCHITECTURE.md" in out and "BENCHMARKS.md" in out,
    "assistant index stats": lambda out: "document" in out,
    "assistant index remove docs/BENCHMARKS.md": lambda out: "removed 1 document" in out,
    "assistant build build/support-bot.toml": lambda out: "support-bot.gguf" in out and "Q8_0" in out,
    "assistant build --all": lambda out: "up to date" in out,
    "assistant verify models/support-bot.gguf": lambda out: "ok" in out and "DIFFERS" not in out,
    'assistant ask -m support-bot "The light on the front is orange."': _answered,
}

STDIN = {"assistant": "What is GGUF?\n"}  # bare `assistant` without a terminal: the line-based chat


@dataclass
class Line:
    command: str  # the shell command, without its comment
    comment: str

    @property
    def argv(self) -> list[str]:
        """The words of the `assistant` part (after the last pipe)."""
        words = shlex.split(self.command)
        start = max(i for i, w in enumerate(words) if w == "assistant")
        return words[start + 1 :]

    @property
    def placeholders(self) -> list[str]:
        return [m.group(1) for w in shlex.split(self.command) if (m := PLACEHOLDER.fullmatch(w))]

    @property
    def why_parsed_only(self) -> str | None:
        if self.placeholders:
            return "placeholder"
        if self.comment.startswith("needs"):
            return "needs"
        if self.comment.startswith("takes"):
            return "long"
        return None


def _split_comment(line: str) -> tuple[str, str]:
    """`cmd   # comment` -> (cmd, comment), ignoring a # inside quotes."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip(), line[i + 1 :].strip()
    return line.strip(), ""


def readme_lines() -> list[Line]:
    text = README.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for raw in block.splitlines():
            command, comment = _split_comment(raw)
            if command and "assistant" in shlex.split(command):
                lines.append(Line(command, comment))
    return lines


def readme_prose() -> str:
    return re.sub(r"^```.*?^```", "", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_every_line_is_either_run_or_parsed_for_a_stated_reason() -> None:
    lines = readme_lines()
    assert len(lines) >= 20, "the README's bash blocks were not found"
    parsed = {line.command: line.why_parsed_only for line in lines if line.why_parsed_only}
    assert parsed == PARSED_ONLY
    run = [line.command for line in lines if not line.why_parsed_only]
    assert sorted(run) == sorted(EXPECT), "every line that runs needs a check of its output in EXPECT"


def _subcommand(argv: list[str]) -> tuple[list[str], click.Command]:
    from assistant.cli import cli

    path: list[str] = []
    cmd: click.Command = cli
    for word in argv:
        if not isinstance(cmd, click.Group) or word not in cmd.commands:
            break
        path.append(word)
        cmd = cmd.commands[word]
    return path, cmd


@pytest.mark.parametrize("command", sorted(PARSED_ONLY))
def test_lines_needing_user_inputs_parse(command: str, run_cli) -> None:
    line = next(x for x in readme_lines() if x.command == command)
    path, _ = _subcommand(line.argv)
    assert path, f"{command}: no such sub-command"
    r = run_cli(*path, "--help")
    assert r.returncode == 0 and "Usage:" in r.stdout, r.stderr
    for word in line.argv:
        if word.startswith("-"):
            assert re.search(rf"(^|[\s,]){re.escape(word)}\b", r.stdout), (
                f"{command}: {word} is not an option"
            )
    prose = readme_prose()
    for name in line.placeholders:
        assert name in prose, f"{command}: the placeholder {name} is not explained in the README"


def _scratch_checkout(tmp_path: Path, models: Path) -> Path:
    """build/ and docs/ of the checkout, and a models/ home with what ./setup.sh installs: inputs as
    symlinks, the built models and their locks as copies (`build --all` checks those recipes' outputs,
    and an output must resolve inside the home)."""
    work = tmp_path / "checkout"
    for name in ("build", "docs"):
        shutil.copytree(ROOT / name, work / name)
    home = work / "models"
    home.mkdir()
    for name, copy in (
        ("SmolLM2-135M-Instruct.Q8_0.gguf", True),
        ("SmolLM2-135M-Instruct.Q8_0.gguf.lock.json", True),
        ("SmolLM2-135M-grounded.Q8_0.gguf", True),
        ("SmolLM2-135M-grounded.Q8_0.gguf.lock.json", True),
        ("sources", False),
        ("all-MiniLM-L6-v2.gguf", True),
        ("all-MiniLM-L6-v2.gguf.lock.json", True),
    ):
        if not (models / name).exists():
            pytest.fail(f"{models / name} is missing: run ./setup.sh first")
        if copy:
            shutil.copy2(models / name, home / name)
        else:
            (home / name).symlink_to(models / name)
    return work


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path: Path, cli_env, default_model_path: Path) -> None:
    work = _scratch_checkout(tmp_path, default_model_path.parent)
    env = cli_env(work / "models")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # the venv's `assistant`
    for line in readme_lines():
        if line.why_parsed_only:
            continue
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", line.command],
            input=STDIN.get(line.command, ""),
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            cwd=work,
        )
        assert proc.returncode == 0, f"{line.command}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert EXPECT[line.command](proc.stdout), f"{line.command}: unexpected output\n{proc.stdout}"
