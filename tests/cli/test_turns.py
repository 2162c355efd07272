"""`ask` and `chat --plain` through the turn core: piped context vs the knowledge base, citations,
sources listed once a document, plain chats saved and resumed (issue 12 items 19, 20, 24)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.conversations import ConversationStore
from assistant.home import Home
from assistant.knowledge.grounding import Source
from assistant.message import Message
from assistant.turn import ChatTurn

ROOT = Path(__file__).resolve().parents[2]
EMBED_MODEL = ROOT / "models" / "all-MiniLM-L6-v2.gguf"
TIMEOUT = 600  # a cap, not a speed claim: the shared 2-core test machine can be very busy

# Five sections: several chunks of one document, so retrieval returns it more than once.
GUIDE = "# Widget operations guide\n\n" + "\n\n".join(
    f"## {topic}\n\n" + " ".join([sentence] * 12)
    for topic, sentence in [
        ("Log retention", "The widget keeps its logs for 14 days before deleting them."),
        ("Log rotation", "Logs are rotated every Sunday and old logs are compressed."),
        ("Log location", "The widget writes its logs to /var/log/widget on every host."),
        ("Log levels", "The log level of the widget is info unless debug logging is set."),
        ("Log shipping", "Widget logs can be shipped to a central server over syslog."),
    ]
)


@pytest.fixture(scope="module")
def kb_home(tmp_path_factory: pytest.TempPathFactory, default_model_path: Path) -> Path:
    """A model home with the chat and embedding models and a knowledge base of two documents."""
    if not EMBED_MODEL.is_file():
        pytest.fail(f"{EMBED_MODEL} is missing: run ./setup.sh")
    root = tmp_path_factory.mktemp("turns") / "home"
    root.mkdir()
    (root / default_model_path.name).symlink_to(default_model_path)
    (root / EMBED_MODEL.name).symlink_to(EMBED_MODEL)
    docs = root.parent / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text(GUIDE)
    (docs / "facts.txt").write_text("The capital of Freedonia is Fredville.\n")
    env = {**os.environ, "ASSISTANT_HOME": str(root), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "assistant", "index", "add", str(docs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    return root


def test_piped_context_is_not_mixed_with_the_knowledge_base(run_cli, kb_home: Path) -> None:
    """Item 19: piped text is the user's context; retrieval only with --rag or --kb."""
    notes = "Notes: our logs are kept for 90 days.\n"
    args = ("ask", "--json", "-t", "0", "-n", "4")
    r = run_cli(*args, "How long are logs kept?", home=kb_home, timeout=TIMEOUT, input=notes)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["sources"] == [] and obj["retrieval_ms"] is None
    for force in (("--rag",), ("--kb", "default")):
        r = run_cli(*args, *force, "How long are logs kept?", home=kb_home, timeout=TIMEOUT, input=notes)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["sources"], force
    # a question that is itself piped (no argument) is no context: retrieval as usual
    r = run_cli(*args, home=kb_home, timeout=TIMEOUT, input="How long are logs kept?\n")
    assert json.loads(r.stdout)["sources"]
    r = run_cli(*args, "--rag", "--no-rag", "Hi", home=kb_home, timeout=TIMEOUT)
    assert r.returncode == 2 and "--no-rag" in r.stderr


def test_rag_without_a_knowledge_base_says_how_to_make_one(run_cli, home_with_default: Path) -> None:
    r = run_cli("ask", "--rag", "Hi", home=home_with_default, timeout=TIMEOUT, input="some context")
    assert r.returncode == 2 and "assistant index add" in r.stderr


def test_sources_are_listed_once_a_document_and_citations_checked(run_cli, kb_home: Path) -> None:
    """Item 20: one line per document with its chunks' numbers; --json says which citations are valid."""
    r = run_cli(
        "ask",
        "-t",
        "0",
        "-n",
        "24",
        "-k",
        "5",
        "How long does the widget keep logs?",
        home=kb_home,
        timeout=TIMEOUT,
    )
    assert r.returncode == 0, r.stderr
    listed = r.stdout.split("\nSources:\n", 1)[1].strip().splitlines()
    paths = [line.split(" — ", 1)[1].split(",", 1)[0] for line in listed]
    assert len(paths) == len(set(paths)), listed  # each document once
    guide = next(line for line in listed if "guide.md" in line)
    assert guide.startswith("[1][2]"), listed  # its chunks' numbers together

    r = run_cli(
        "ask",
        "--json",
        "-t",
        "0",
        "-n",
        "40",
        "-k",
        "5",
        "How long does the widget keep logs?",
        home=kb_home,
        timeout=TIMEOUT,
    )
    obj = json.loads(r.stdout)
    n = len(obj["sources"])
    assert n >= 2 and all(1 <= c <= n for c in obj["citations"])
    assert all(c < 1 or c > n for c in obj["invalid_citations"])
    for c in obj["invalid_citations"]:
        assert f"{c}?]" in obj["answer"]


def test_an_invented_citation_is_noted_after_a_streamed_answer(capsys) -> None:
    """Item 20, streamed text: ask and plain chat print it as it comes, then say which citations are invalid."""
    from assistant.commands.chat import print_turn_sources
    from assistant.engine.chat import ChatResult, Timings
    from assistant.engine.context import ContextReport

    sources = [Source.from_dict({"number": i, "title": "Guide", "uri": "/d/guide.md"}) for i in (1, 2)]
    turn = ChatTurn([Message("user", "q")], sources, 3.0)
    result = ChatResult("Kept 14 days [1][5].", "stop", 10, 5, 0, ContextReport(2048, 1024), Timings(), 1)
    done = turn.finish(result, model="m.gguf")
    print_turn_sources(turn, done)
    out, err = capsys.readouterr()
    assert "note: [5] cites no source (the answer had 2)" in err
    assert out.strip().splitlines() == ["Sources:", "[1][2] Guide — /d/guide.md"]


def test_plain_chat_is_saved_and_resumed(run_cli, home_with_default: Path) -> None:
    """Item 24: plain chats go to conversations.db with the TUI's metadata; -r continues one."""
    r = run_cli(
        "chat",
        "--plain",
        "-t",
        "0",
        "-n",
        "12",
        home=home_with_default,
        timeout=TIMEOUT,
        input="My name is Ada.\n",
    )
    assert r.returncode == 0, r.stderr
    db = Home(home_with_default).conversations_db
    with ConversationStore(db) as store:
        (info,) = store.list_all()
        user, answer = store.messages(info.id)
    assert (user.role, user.content) == ("user", "My name is Ada.") and info.title == "My name is Ada."
    assert info.model == "SmolLM2-135M-grounded.Q8_0.gguf"  # the default
    assert answer.role == "assistant" and answer.content.strip() and answer.content in r.stdout
    assert answer.meta["model"] == info.model and answer.meta["finish_reason"] in ("stop", "length")
    assert answer.meta["prompt_tokens"] > 0 and answer.meta["completion_tokens"] > 0

    again = run_cli(
        "chat",
        "--plain",
        "-r",
        "last",
        "-t",
        "0",
        "-n",
        "12",
        home=home_with_default,
        timeout=TIMEOUT,
        input="What is my name?\n",
    )
    assert again.returncode == 0, again.stderr
    with ConversationStore(db) as store:
        assert [c.id for c in store.list_all()] == [info.id]  # the same chat, continued
        msgs = store.messages(info.id)
    assert [m.role for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[3].meta["prompt_tokens"] > answer.meta["prompt_tokens"] + 5  # the history was sent

    bad = run_cli("chat", "--plain", "-r", "99", home=home_with_default, timeout=TIMEOUT, input="Hi\n")
    assert bad.returncode == 2 and "no conversation with id 99" in bad.stderr


def test_bare_assistant_chats_with_the_default_options(run_cli, home_with_default: Path) -> None:
    """`assistant` alone opens the chat with every option at its default, parsed as on the command
    line (--threads auto reached the engine as the string "auto" once: TypeError, exit 1)."""
    r = run_cli(home=home_with_default, timeout=TIMEOUT, input="Say hello.\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "Error" not in r.stderr
