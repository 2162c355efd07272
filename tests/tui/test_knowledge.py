"""The chat on a real knowledge base (assistant.knowledge): grounding, the sources panel, the source viewer."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_helpers import ROOT_DIR, Harness, screen_text, send, wait_for
from tui_helpers import ready as wait_ready

from assistant.home import Home
from assistant.knowledge.retriever import CREATE_HINT, NoRetriever, open_retriever
from assistant.message import Message
from assistant.tui.app import _open_retriever

EMBED_MODEL = ROOT_DIR / "models" / "all-MiniLM-L6-v2.gguf"

RICE = """# Cooking rice

Rice is a staple food for more than half of the world.

## How to cook white rice

Rinse the rice in cold water until the water runs clear. Put one cup of rice and two cups of water in a pot.
Bring it to a boil, then cover and simmer on low heat for 18 minutes. Let it rest for 5 minutes.

## Storing rice

Keep cooked rice in the fridge and eat it within one day.
"""


@pytest.fixture(scope="module")
def kb_home(tmp_path_factory, default_model_path: Path) -> Home:
    """A home with the chat and embedding models and a knowledge base of two documents."""
    import subprocess
    import sys

    if not EMBED_MODEL.is_file():
        pytest.fail(f"{EMBED_MODEL} is missing: run ./setup.sh (it converts all-MiniLM-L6-v2)")
    root = tmp_path_factory.mktemp("kb") / "home"
    root.mkdir()
    (root / default_model_path.name).symlink_to(default_model_path)
    (root / EMBED_MODEL.name).symlink_to(EMBED_MODEL)
    docs = root.parent / "docs"
    docs.mkdir()
    (docs / "rice.md").write_text(RICE)
    (docs / "volcano.txt").write_text(
        "A volcano is an opening in the crust through which molten rock, ash and gases escape.\n"
    )
    env = {"ASSISTANT_HOME": str(root), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "assistant", "index", "add", str(docs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT_DIR,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return Home(root)


def test_without_a_knowledge_base_retrieval_is_unavailable_with_a_hint(tmp_path: Path):
    retriever = open_retriever(Home(tmp_path))
    assert isinstance(retriever, NoRetriever)
    assert not retriever.available and retriever.hint == CREATE_HINT


def test_grounding_through_the_seam(kb_home: Home, chat_model):
    retriever = open_retriever(kb_home)
    try:
        assert retriever.available, retriever.hint
        assert "default.db" in retriever.description and "chunks" in retriever.description
        messages = [
            Message("system", "Be brief."),
            Message("user", "hello"),
            Message("assistant", "Hi!"),
            Message("user", "How long should rice simmer?"),
        ]
        g = retriever.ground(
            messages,
            3,
            count_tokens=chat_model.count_text,
            budget_tokens=1500,
        )
        assert g.sources and g.sources[0].uri.endswith("rice.md")
        assert g.sources[0].number == 1 and g.sources[0].location.startswith("line")
        assert "simmer" in " ".join(s.text for s in g.sources)
        assert g.messages[0].role == "system" and "Be brief." in g.messages[0].content
        assert [m.content for m in g.messages[1:3]] == ["hello", "Hi!"]  # the history stays
        assert g.messages[-1].content.startswith("Sources:")
        assert g.messages[-1].content.endswith("Question: How long should rice simmer?")
        assert g.retrieval_ms > 0
    finally:
        retriever.close()


async def test_sources_panel_and_viewer_on_a_real_knowledge_base(kb_home: Home):
    harness = Harness(kb_home)
    app = harness.app(store="memory")
    app.retriever_factory = _open_retriever  # the real knowledge base
    try:
        async with app.run_test(size=(120, 32)) as pilot:
            await wait_ready(pilot)
            await wait_for(pilot, lambda: not app.retriever_loading, timeout=60)
            assert app.retriever.available and app.status.info.retrieval == "on"
            await send(pilot, "How long should rice simmer?", wait=False)
            await wait_for(pilot, lambda: app.turn is None, timeout=60, what="the answer")
            sent = harness.engine.calls[-1][0][-1].content
            assert sent.startswith("Sources:") and "simmer on low heat" in sent
            assert app.last_sources and app.last_sources[0].title == "Cooking rice"
            assert "[1] Cooking rice" in screen_text(app)
            stored = harness.store.messages(app.conversation.id)[-1]
            assert stored.meta["sources"][0]["uri"].endswith("rice.md")
            await pilot.press("ctrl+s")  # into the sources
            await pilot.press("enter")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "SourceScreen")
            area = app.screen.query_one("TextArea")
            assert "simmer on low heat for 18 minutes" in area.selected_text
            assert area.text == RICE  # the whole document, the chunk selected in it
            await pilot.press("escape")
    finally:
        app.close_resources()
