"""Grounded prompts and `assistant ask` with sources, on the real chat and embedding models."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.home import Home
from assistant.knowledge.base import KnowledgeBase
from assistant.knowledge.grounding import SYSTEM_PROMPT, format_sources, ground
from assistant.knowledge.ingest import Ingestor


def _kb(kb_home: Path, docs_dir: Path) -> KnowledgeBase:
    base = KnowledgeBase.open(Home(kb_home), create=True, readonly=False)
    assert base.embedder is not None
    Ingestor(base.store, base.embedder).add([docs_dir])
    return base


def test_sources_are_numbered_and_fit_the_budget(kb_home, docs_dir, chat_model) -> None:
    base = _kb(kb_home, docs_dir)
    count = lambda s: len(chat_model.tokenize(s))  # noqa: E731
    try:
        g = ground("How long are the logs kept?", base, count_tokens=count, budget_tokens=400, k=3)
        assert g.sources and [s.number for s in g.sources] == list(range(1, len(g.sources) + 1))
        top = g.sources[0]
        assert top.title == "Widget guide" and top.location == "lines 7-9" and "14 days" in top.text
        assert top.uri.endswith("guide.md") and top.chunk_id > 0 and top.document_id > 0
        system, user = g.messages
        assert system.role == "system" and system.content == SYSTEM_PROMPT
        assert user.content.startswith("Sources:\n\n[1] Widget guide")
        assert user.content.endswith("Question: How long are the logs kept?")
        assert g.source_tokens <= 400 and g.retrieval_ms > 0 and g.mode == "hybrid"
        assert "[1] Widget guide — " in format_sources(g.sources)

        tight = ground("How long are the logs kept?", base, count_tokens=count, budget_tokens=60, k=3)
        assert len(tight.sources) == 1 and tight.source_tokens <= 60

        none = ground("zzqx vvbn", base, count_tokens=count, system="Be brief.")
        assert none.sources == [] and [m.role for m in none.messages] == ["system", "user"]
        assert none.messages[-1].content == "zzqx vvbn"
    finally:
        base.close()


def test_ask_answers_with_sources(kb_home, docs_dir, run_cli) -> None:
    base = _kb(kb_home, docs_dir)
    base.close()
    r = run_cli("ask", "-t", "0", "-n", "40", "--json", "What is the capital of Freedonia?", home=kb_home)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["sources"][0]["uri"].endswith("facts.txt") and obj["sources"][0]["number"] == 1
    assert obj["retrieval_ms"] > 0
    assert "Fredville" in obj["answer"]

    r = run_cli("ask", "-t", "0", "-n", "30", "How long are logs kept?", home=kb_home)
    assert r.returncode == 0, r.stderr
    assert "\nSources:\n[1] Widget guide — " in r.stdout

    r = run_cli("ask", "-t", "0", "-n", "5", "--json", "--no-rag", "Hi", home=kb_home)
    obj = json.loads(r.stdout)
    assert obj["sources"] == [] and obj["retrieval_ms"] is None


def test_ask_without_a_knowledge_base_is_unchanged(home_with_default, run_cli) -> None:
    r = run_cli("ask", "-t", "0", "-n", "5", "--json", "Hi", home=home_with_default)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sources"] == []
    r = run_cli("ask", "--kb", "missing", "Hi", home=home_with_default)
    assert r.returncode == 2 and "no knowledge base at" in r.stderr
