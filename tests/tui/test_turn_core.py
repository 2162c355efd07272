"""One chat turn, three front ends: `ask`, plain chat and the TUI send the same messages and save the
same metadata (issue 16 items 1-2), invented citations are marked in the TUI (issue 12 item 20), and
the TUI opens conversations saved by plain chat and by older versions (item 24, issue 16 item 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tui_fakes import FakeRetriever
from tui_helpers import ROOT_DIR, SOURCES, Harness, fill_home, screen_text, send, wait_for
from tui_helpers import ready as wait_ready

from assistant.conversations import ConversationStore
from assistant.engine.sampling import SamplingParams
from assistant.home import Home
from assistant.knowledge.retriever import open_retriever
from assistant.message import Message
from assistant.tui.app import AssistantApp, load_engine
from assistant.tui.options import DEFAULT_TOP_K, TuiOptions
from assistant.turn import prepare_turn

EMBED_MODEL = ROOT_DIR / "models" / "all-MiniLM-L6-v2.gguf"
QUESTION = "How long are the logs kept?"
GUIDE = (
    "# Widget guide\n\n## Installing\n\nRun `widget install`. It needs 2 GB of disk.\n\n"
    "## Logs\n\nLogs are rotated every Sunday. The retention period is 14 days.\n"
)
VOLATILE = ("ttft_ms", "decode_tps", "retrieval_ms")  # timings differ from run to run


def _cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "HF_"))}
    env.update(ASSISTANT_HOME=str(home), HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT_DIR,
        timeout=300,
    )


@pytest.fixture
def kb_home(tmp_path: Path, default_model_path: Path) -> Home:
    if not EMBED_MODEL.is_file():
        pytest.fail(f"{EMBED_MODEL} is missing: run ./setup.sh")
    root = tmp_path / "home"
    root.mkdir()
    (root / default_model_path.name).symlink_to(default_model_path)
    (root / EMBED_MODEL.name).symlink_to(EMBED_MODEL)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text(GUIDE)
    (docs / "facts.txt").write_text("The capital of Freedonia is Fredville.\n")
    r = _cli(root, "index", "add", str(docs))
    assert r.returncode == 0, r.stderr
    return Home(root)


def _stable(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in VOLATILE}


@pytest.mark.slow
async def test_ask_plain_chat_and_the_tui_make_the_same_turn(kb_home: Home, default_model_path: Path):
    sampling = ["-t", "0", "-n", "24"]
    sent: list[list[Message]] = []

    def spying_engine(path: Path, options: TuiOptions):
        engine = load_engine(path, options)
        real_chat = engine.chat
        engine.chat = lambda messages, *a, **kw: sent.append(list(messages)) or real_chat(messages, *a, **kw)
        return engine

    options = TuiOptions(
        home=kb_home, model=default_model_path, sampling={"temperature": 0.0, "max_tokens": 24}
    )
    app = AssistantApp(options, engine_factory=spying_engine)  # the real retriever and conversation store
    try:
        async with app.run_test(size=(120, 32)) as pilot:
            await wait_for(pilot, lambda: app.model_state != "loading", timeout=120, what="the model")
            await wait_ready(pilot)
            await wait_for(pilot, lambda: not app.retriever_loading, timeout=60)
            assert app.retriever.available, app.retriever.hint
            await send(pilot, QUESTION, wait=False)
            await wait_for(pilot, lambda: app.turn is None, timeout=180, what="the answer")
            engine = app.engine
            retriever = open_retriever(kb_home)
            try:
                expected = prepare_turn(
                    engine,
                    None,
                    [Message("user", QUESTION)],
                    SamplingParams(max_tokens=24),
                    retriever=retriever,
                )
            finally:
                retriever.close()
            prompt_tokens = engine.count_tokens(expected.messages)
            tui_id = app.conversation.id
    finally:
        app.close_resources()
    assert expected.sources and sent == [expected.messages]  # the TUI sent what the core builds

    ask = _cli(kb_home.root, "ask", "--json", *sampling, "-k", str(DEFAULT_TOP_K), QUESTION)
    assert ask.returncode == 0, ask.stderr
    plain = _cli(kb_home.root, "chat", "--plain", *sampling, stdin=QUESTION + "\n")
    assert plain.returncode == 0, plain.stderr

    with ConversationStore(kb_home.conversations_db) as store:
        tui_user, tui_answer = store.messages(tui_id)
        plain_info = store.latest()
        assert plain_info is not None and plain_info.id != tui_id
        plain_user, plain_answer = store.messages(plain_info.id)
    assert tui_user.content == plain_user.content == QUESTION
    assert _stable(tui_answer.meta) == _stable(plain_answer.meta)  # the same saved metadata
    assert tui_answer.content == plain_answer.content  # greedy: the same answer to the same prompt
    meta = tui_answer.meta
    assert meta["prompt_tokens"] == prompt_tokens and meta["sources"] == [
        s.as_dict() for s in expected.sources
    ]
    assert "citations" in meta and meta["model"] == default_model_path.name

    obj = json.loads(ask.stdout)
    assert obj["usage"]["prompt_tokens"] == prompt_tokens  # ask sent the same messages
    assert obj["answer"] == tui_answer.content and obj["sources"] == meta["sources"]
    assert obj["citations"] == meta["citations"] and obj["finish_reason"] == meta["finish_reason"]
    assert obj["invalid_citations"] == meta.get("invalid_citations", [])


async def test_an_invented_citation_is_marked_in_the_tui(tmp_path: Path):
    harness = Harness(fill_home(tmp_path / "home"), reply="Simmer it for 18 minutes [1], covered [3].")
    app = harness.app(retriever=FakeRetriever(SOURCES))
    async with app.run_test(size=(120, 32)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "How long should rice simmer?")
        answer = app.chat_log.messages[-1]
        assert answer.text == "Simmer it for 18 minutes [1], covered [3?]."
        assert answer.meta["citations"] == [1] and answer.meta["invalid_citations"] == [3]
        assert "covered [3?]" in screen_text(app)
        stored = harness.store.messages(app.conversation.id)[-1]
        assert stored.content == answer.text and stored.meta["invalid_citations"] == [3]
        assert app.history[-1].content == answer.text


OLD_SOURCES = [  # tui/retrieval.py:SourceRef.as_meta, as conversations.db holds it from older versions
    {
        "n": 1,
        "title": "Kitchen safety",
        "path": "/docs/kitchen/safety.pdf",
        "location": "p. 4",
        "excerpt": "Never leave a pot of boiling water unattended.",
        "text": "Never leave a pot of boiling water unattended.",
        "page": 4,
        "score": 0.5,
    }
]


async def test_the_tui_opens_chats_saved_by_plain_chat_and_by_older_versions(home_with_default: Path):
    home = Home(home_with_default)
    with ConversationStore(home.conversations_db) as store:
        old = store.create(model="SmolLM2-135M-Instruct.Q4_1.gguf")
        store.add_messages(
            old.id,
            [
                ("user", "Is boiling water safe?", None),
                ("assistant", "Watch it [1].", {"sources": OLD_SOURCES}),
            ],
        )
    plain = _cli(home.root, "chat", "--plain", "-t", "0", "-n", "8", stdin="Hello from plain chat\n")
    assert plain.returncode == 0, plain.stderr
    for want, first in (("last", "Hello from plain chat"), (str(old.id), "Is boiling water safe?")):
        harness = Harness(home)
        app = harness.app(store="home", resume=want)
        try:
            async with app.run_test(size=(120, 32)) as pilot:
                await wait_ready(pilot)
                await wait_for(pilot, lambda app=app: len(app.chat_log.messages) == 2, what="the chat")
                assert app.history[0] == Message("user", first)
                if want != "last":
                    (src,) = app.last_sources
                    assert (src.number, src.uri, src.location) == (1, "/docs/kitchen/safety.pdf", "page 4")
                    assert "[1] Kitchen safety" in screen_text(app)
        finally:
            app.close_resources()
