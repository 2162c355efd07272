"""The conversation store: migrations, full-text search, export, and writes that fail midway."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assistant.conversations import (
    MIGRATIONS,
    ConversationStore,
    fts_query,
    render_markdown,
    title_from,
)
from assistant.db import connect
from assistant.errors import StorageError, UsageError


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(tmp_path: Path):
    with ConversationStore(tmp_path / "conversations.db", clock=Clock()) as s:
        yield s


def test_migrations_are_recorded_and_rerunning_is_a_no_op(tmp_path: Path):
    path = tmp_path / "c.db"
    ConversationStore(path).close()
    conn = connect(path, vec=False)
    rows = list(conn.execute("SELECT version, name FROM _migrations ORDER BY version"))
    assert rows == [(m.version, m.name) for m in MIGRATIONS]
    conn.close()
    with ConversationStore(path) as again:
        assert again.schema_version == MIGRATIONS[-1].version


def test_a_newer_schema_is_refused_not_damaged(tmp_path: Path):
    path = tmp_path / "c.db"
    with ConversationStore(path) as s:
        s.add_message(s.create().id, "user", "keep me")
    conn = connect(path, vec=False)
    conn.execute("INSERT INTO _migrations (version, name) VALUES (99, 'from the future')")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="schema version 99, newer than this program knows"):
        ConversationStore(path)
    conn = connect(path, vec=False)
    assert [r[0] for r in conn.execute("SELECT content FROM messages")] == ["keep me"]
    conn.close()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "c.db"
    path.write_text("this is not sqlite\n" * 100)
    with pytest.raises(StorageError, match="c.db"):
        ConversationStore(path)


def test_create_list_rename_delete(store: ConversationStore):
    a = store.create(system_prompt="  Be brief.  ", model="m.gguf")
    assert a.system_prompt == "Be brief." and a.title == "" and a.display_title == "Untitled chat"
    store.add_message(a.id, "user", "# How do I cook rice?\nwith details")
    b = store.create()
    store.add_message(b.id, "user", "Volcanoes")
    assert [c.title for c in store.list_all()] == ["Volcanoes", "How do I cook rice?"]  # newest first
    assert store.latest().id == b.id
    store.add_message(a.id, "assistant", "Boil it.")
    assert [c.id for c in store.list_all()] == [a.id, b.id]  # a was updated last
    assert store.get(a.id).n_messages == 2
    assert store.rename(a.id, "  Rice   notes ").title == "Rice notes"
    with pytest.raises(UsageError, match="cannot be empty"):
        store.rename(a.id, "   ")
    store.set_system_prompt(a.id, "")
    assert store.get(a.id).system_prompt is None
    store.delete(a.id)
    assert [c.id for c in store.list_all()] == [b.id]
    with pytest.raises(UsageError, match="no conversation with id"):
        store.get(a.id)
    with pytest.raises(UsageError, match="no conversation with id"):
        store.delete(a.id)
    assert store.search("rice") == []  # its messages left the full-text index too
    assert store.check() == []


def test_title_from_the_first_line():
    assert title_from("\n\n  ## Hello   world \nmore") == "Hello world"
    assert title_from("x" * 200).endswith("…") and len(title_from("x" * 200)) == 80
    assert title_from("   ") == ""


def test_full_text_search(store: ConversationStore):
    rice = store.create()
    store.add_messages(
        rice.id,
        [
            ("user", "How do I cook rice?", None),
            ("assistant", "Rinse it, then simmer in twice its volume of water.", None),
        ],
    )
    volcano = store.create()
    store.add_messages(
        volcano.id,
        [
            ("user", "What is a volcano?", None),
            ("assistant", "A vent where molten rock reaches the surface.", None),
        ],
    )
    cafe = store.create(title="Café notes")
    store.add_message(cafe.id, "user", "Crème brûlée needs a torch")

    def ids(q: str) -> list[int]:
        return [h.conversation.id for h in store.search(q)]

    assert ids("simmer") == [rice.id]
    assert ids("molten rock") == [volcano.id]
    assert ids("sim") == [rice.id]  # the last word is a prefix
    assert ids("creme brulee") == [cafe.id]  # diacritics folded
    assert ids("cafe") == [cafe.id]  # the title, folded the same way
    assert ids("water rock") == []  # every word must match in one message
    assert ids('"); DROP TABLE messages; --') == []  # punctuation is not FTS syntax
    assert ids("") == [] and ids("   ") == []
    hit = store.search("simmer")[0]
    assert hit.role == "assistant" and "\x02simmer\x03" in hit.snippet
    assert store.search("rice")[0].message_id is None  # the title matched first
    assert fts_query('a "b" c*') == '"a" "b" "c"*'
    store.rename(volcano.id, "Geology")
    assert ids("geology") == [volcano.id]


def test_export_markdown(store: ConversationStore, tmp_path: Path):
    conv = store.create(system_prompt="You are terse.\nVery terse.", model="SmolLM2.gguf")
    store.add_message(conv.id, "user", "Cook rice?")
    store.add_message(
        conv.id,
        "assistant",
        "Simmer it [1].\n\n```bash\necho done\n```",
        {
            "finish_reason": "cancelled",
            "notices": ["2 older messages left the 2,048-token context window"],
            "sources": [{"n": 1, "title": "Rice", "path": "/docs/rice.md", "location": "lines 3-9"}],
        },
    )
    md = store.export_markdown(conv.id)
    assert md.startswith("# Cook rice?\n\n*model SmolLM2.gguf · created 2026-03-01 12:00 UTC · 2 messages*")
    assert "> You are terse.\n> Very terse." in md
    assert "### You\n\nCook rice?" in md
    assert "### Assistant\n\n> *2 older messages left the 2,048-token context window*" in md
    assert "```bash\necho done\n```" in md
    assert "*(stopped)*" in md
    assert "- [1] Rice — /docs/rice.md, lines 3-9" in md
    (tmp_path / "exports").mkdir()
    out = store.export(conv.id, tmp_path / "exports")  # a directory: a name is chosen
    assert out == tmp_path / "exports" / f"chat-{conv.id}-cook-rice.md"
    assert out.read_text() == md
    assert not list((tmp_path / "exports").glob(".*partial"))  # atomic: no temp file left
    assert render_markdown(store.get(conv.id), store.messages(conv.id)) == md


def test_export_to_an_unwritable_place_is_a_clear_error(store: ConversationStore, tmp_path: Path):
    conv = store.create()
    store.add_message(conv.id, "user", "hi")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot write"):
        store.export(conv.id, blocker / "x.md")


def test_settings_round_trip(store: ConversationStore):
    assert store.get_setting("sampling", {"x": 1}) == {"x": 1}
    store.set_setting("sampling", {"temperature": 0.7, "seed": None})
    store.set_setting("sampling", {"temperature": 0.8, "seed": None})
    assert store.get_setting("sampling") == {"temperature": 0.8, "seed": None}


def test_a_batch_that_fails_midway_writes_nothing(store: ConversationStore):
    conv = store.create()
    store.add_message(conv.id, "user", "before")
    before = store.get(conv.id)
    with pytest.raises(TypeError):
        store.add_messages(
            conv.id,
            [
                ("user", "first of the batch", None),
                ("assistant", "second of the batch", {"bad": object()}),  # fails after the first insert
            ],
        )
    with pytest.raises(UsageError, match="unknown message role"):
        store.add_messages(conv.id, [("user", "ok", None), ("robot", "no", None)])
    assert [m.content for m in store.messages(conv.id)] == ["before"]
    assert store.get(conv.id) == before  # updated_at untouched too
    assert store.search("batch") == []
    assert store.check() == []
    store.add_message(conv.id, "assistant", "after")  # and the store still works
    assert [m.seq for m in store.messages(conv.id)] == [1, 2]


def test_disk_full_midway_leaves_the_database_as_it_was(tmp_path: Path):
    path = tmp_path / "c.db"
    with ConversationStore(path) as s:
        conv = s.create()
        s.add_message(conv.id, "user", "small and safe")
        pages = s._conn.execute("PRAGMA page_count").fetchone()[0]
        s._conn.execute(f"PRAGMA max_page_count = {pages + 3}")  # room for almost nothing
        with pytest.raises(StorageError, match="full.*nothing was changed"):
            s.add_messages(conv.id, [("user", "x", None), ("assistant", "y" * 200_000, None)])
        assert [m.content for m in s.messages(conv.id)] == ["small and safe"]
        assert s.check() == []
    with ConversationStore(path) as again:
        assert [m.content for m in again.messages(conv.id)] == ["small and safe"]
        assert again.check() == []


WRITER = """
import sys, itertools
from assistant.conversations import ConversationStore
s = ConversationStore(sys.argv[1])
print("ready", flush=True)
for i in itertools.count():
    c = s.create(model="m.gguf")
    s.add_messages(c.id, [("user", f"question {i} " + "q" * 2000, None),
                          ("assistant", f"answer {i} " + "a" * 5000, {"n": i})])
    s.rename(c.id, f"chat {i}")
"""


def _wait_for_chats(path: Path, at_least: int, timeout: float = 60.0) -> None:
    """Poll (read-only) until the writer has committed at_least chats: it is then mid-stream."""
    import sqlite3

    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            n = conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
        finally:
            conn.close()
        if n >= at_least:
            return
        assert time.monotonic() < deadline, f"the writer committed {n} chats, waited for {at_least}"
        time.sleep(0.02)  # poll interval


def test_a_killed_writer_never_leaves_a_damaged_or_half_written_chat(tmp_path: Path):
    path = tmp_path / "c.db"
    root = Path(__file__).resolve().parents[2]
    for run in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, cwd=root, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        _wait_for_chats(path, 3 * (run + 1))  # then kill it while it keeps writing
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with ConversationStore(path) as s:
        assert s.check() == []
        chats = s.list_all()
        assert len(chats) > 3
        for info in chats:
            msgs = s.messages(info.id)
            # a chat is created before its messages, so an empty one may be left; never half a turn
            assert [m.role for m in msgs] in ([], ["user", "assistant"])
            assert [m.seq for m in msgs] == list(range(1, len(msgs) + 1))
            if msgs:
                assert json.dumps(msgs[1].meta) == json.dumps({"n": int(msgs[1].content.split()[1])})
        assert len(s.search("answer")) >= 1
