"""Every key binding of the chat, driven through Textual's Pilot on a fake engine."""

from __future__ import annotations

from tui_helpers import SOURCES, notified, screen_text, send, wait_for
from tui_helpers import ready as wait_ready

from assistant.conversations import ConversationStore
from assistant.tui.keys import KEYS
from assistant.turn import CHAT_TOP_K


async def test_enter_sends_and_the_answer_streams_in(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "How do I cook rice?")
        messages, _params = harness.engine.calls[-1]
        assert [(m.role, m.content) for m in messages] == [("user", "How do I cook rice?")]
        shown = app.chat_log.messages
        assert [m.role for m in shown] == ["user", "assistant"]
        assert shown[1].streamed_text == "Hello! I am a **fake** model."
        assert shown[1].markdown.source == "Hello! I am a **fake** model."
        assert app.prompt.text == ""
        text = screen_text(app)
        assert "Hello! I am a fake model." in text  # rendered Markdown: no asterisks
        assert "42 ms · 123 tok/s" in text  # status bar: TTFT and decode speed of the last answer
        stored = harness.store.messages(app.conversation.id)
        assert [(m.role, m.content) for m in stored] == [
            ("user", "How do I cook rice?"),
            ("assistant", "Hello! I am a **fake** model."),
        ]
        assert stored[1].meta["decode_tps"] == 123.0 and stored[1].meta["finish_reason"] == "stop"


async def test_ctrl_j_adds_a_line_instead_of_sending(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await pilot.press("a", "ctrl+j", "b")
        assert app.prompt.text == "a\nb"
        assert harness.engine.calls == []
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.turn is None and len(app.chat_log.messages) == 2)
        assert harness.engine.calls[-1][0][-1].content == "a\nb"


async def test_up_in_an_empty_input_brings_back_the_previous_message(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "first question")
        await send(pilot, "second question")
        await pilot.press("up")
        assert app.prompt.text == "second question"
        await pilot.press("up")
        assert app.prompt.text == "first question"
        await pilot.press("down")
        assert app.prompt.text == "second question"
        await pilot.press("down")
        assert app.prompt.text == ""


async def test_escape_stops_the_answer_within_one_token_and_keeps_the_text(make_harness):
    harness = make_harness(reply="one two three four five six seven eight", hold_after=3)
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "count", wait=False)
        engine = harness.engine
        await wait_for(pilot, engine.holding.is_set, what="three tokens")
        assert "esc Stop" in screen_text(app)  # the footer offers it while an answer streams
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.turn is None, what="the stop")
        assert engine.emitted == 3  # nothing generated after Esc
        answer = app.chat_log.messages[-1]
        assert answer.streamed_text == "one two three"
        assert answer.meta["finish_reason"] == "cancelled"
        assert "stopped" in screen_text(app)
        stored = harness.store.messages(app.conversation.id)[-1]
        assert stored.content == "one two three" and stored.meta["finish_reason"] == "cancelled"


async def test_a_message_sent_while_generating_is_queued_and_sent_after(make_harness):
    harness = make_harness(reply="a b c d", hold_after=2)
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "first", wait=False)
        await wait_for(pilot, harness.engine.holding.is_set)
        await send(pilot, "second", wait=False)
        assert app.queue == ["second"]
        assert "queued" in screen_text(app)
        harness.engine.hold_after = None
        harness.engine.release.set()
        await wait_for(pilot, lambda: app.turn is None and not app.queue and len(harness.engine.calls) == 2)
        await wait_for(pilot, lambda: app.turn is None)
        assert [m.content for m in app.history] == ["first", "a b c d", "second", "a b c d"]
        assert "queued" not in screen_text(app)


async def test_escape_returns_queued_messages_to_the_input(make_harness):
    harness = make_harness(reply="a b c d", hold_after=1)
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "first", wait=False)
        await wait_for(pilot, harness.engine.holding.is_set)
        await send(pilot, "second", wait=False)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.turn is None)
        assert app.queue == []
        assert app.prompt.text == "second"
        assert len(harness.engine.calls) == 1


async def test_ctrl_n_starts_a_new_chat(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "hello")
        first = app.conversation.id
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.conversation is None)
        assert app.history == [] and app.chat_log.messages == []
        assert "Ready" in screen_text(app)
        await send(pilot, "again")
        assert app.conversation.id != first
        assert [m.content for m in harness.engine.calls[-1][0]] == ["again"]


async def test_ctrl_o_lists_searches_and_opens_chats(harness):
    app = harness.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "How do I cook rice?")
        rice = app.conversation.id
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.conversation is None)
        await send(pilot, "Tell me about volcanoes")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConversationsScreen")
        screen = app.screen
        assert [i.title for i in screen.items] == ["Tell me about volcanoes", "How do I cook rice?"]
        await pilot.press(*"rice")
        await wait_for(pilot, lambda: [i.id for i in screen.items] == [rice])
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.conversation is not None and app.conversation.id == rice)
        assert [m.content for m in app.history] == ["How do I cook rice?", "Hello! I am a **fake** model."]
        assert [m.role for m in app.chat_log.messages] == ["user", "assistant"]
        await send(pilot, "and with more water?")
        sent = [m.content for m in harness.engine.calls[-1][0]]
        assert sent == ["How do I cook rice?", "Hello! I am a **fake** model.", "and with more water?"]


async def test_chats_screen_keys_rename_delete_export_and_escape(harness, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = harness.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "keep me")
        await pilot.press("ctrl+n")
        await send(pilot, "delete me")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConversationsScreen")
        screen = app.screen
        # F2 renames the highlighted chat (the newest, which is the current one)
        await pilot.press("f2")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PromptDialog")
        app.screen.query_one("Input").value = "Doomed chat"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen and screen.items[0].title == "Doomed chat")
        assert app.conversation.title == "Doomed chat"  # the title bar follows
        assert "Doomed chat" in screen_text(app)
        # Ctrl+E exports it
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PromptDialog")
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(tmp_path.glob("chat-*-doomed-chat.md")))
        await wait_for(pilot, lambda: app.screen is screen)
        # Ctrl+D deletes it after a yes; the current chat is then a new one
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog")
        await pilot.press("y")
        await wait_for(pilot, lambda: [i.title for i in screen.items] == ["keep me"])
        await wait_for(pilot, lambda: app.conversation is None)
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ != "ConversationsScreen")
        assert [c.title for c in harness.store.list_all()] == ["keep me"]


async def test_ctrl_r_toggles_retrieval(harness, kb):
    app = harness.app(retriever=kb)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        assert app.status.info.retrieval == "on"
        await send(pilot, "How long does rice cook?")
        assert len(kb.calls) == 1 and kb.calls[0][1] == CHAT_TOP_K  # top-k from the settings (default)
        sent = harness.engine.calls[-1][0][-1].content
        assert sent.startswith("Sources:") and sent.endswith("Question: How long does rice cook?")
        assert [s.number for s in app.last_sources] == [1, 2][:CHAT_TOP_K]
        await pilot.press("ctrl+r")
        assert app.status.info.retrieval == "off"
        assert "KB off" in screen_text(app)
        await send(pilot, "And pasta?")
        assert len(kb.calls) == 1  # not asked again
        assert harness.engine.calls[-1][0][-1].content == "And pasta?"
        await pilot.press("ctrl+r")
        assert app.status.info.retrieval == "on"
        assert harness.store.get_setting("retrieval") is True


async def test_ctrl_r_without_a_knowledge_base_says_how_to_make_one(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        assert app.status.info.retrieval == "none"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert "assistant index add PATH" in notified(app)
        assert "assistant index add PATH" in screen_text(app)  # the welcome text says it too
        assert app.status.info.retrieval == "none"


async def test_ctrl_s_shows_sources_and_enter_opens_one_in_its_document(harness, kb, tmp_path):
    doc = tmp_path / "rice.md"
    lines = [f"line {i}" for i in range(1, 60)]
    lines[29] = "Rinse the rice, then simmer it."
    doc.write_text("\n".join(lines) + "\n")
    from dataclasses import replace

    kb.sources = [
        replace(SOURCES[0], uri=str(doc), text="Rinse the rice, then simmer it.", line_start=30, line_end=30)
    ]
    app = harness.app(retriever=kb)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        assert not app.sources_panel.display  # narrow terminal: hidden until asked for
        await send(pilot, "rice?")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.sources_panel.display
        assert "[1] Cooking rice" in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SourceScreen")
        area = app.screen.query_one("TextArea")
        assert area.selected_text == "Rinse the rice, then simmer it."
        assert "Rinse the rice, then simmer it." in screen_text(app)  # scrolled into view
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ != "SourceScreen")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not app.sources_panel.display


async def test_f1_lists_every_key(harness):
    app = harness.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_ready(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        text = screen_text(app)
        for key, _ in KEYS:
            assert key in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ != "HelpScreen")


async def test_f2_renames_the_current_chat(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "hello there")
        assert app.conversation.title == "hello there"
        await pilot.press("f2")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PromptDialog")
        dialog = app.screen
        dialog.query_one("Input").value = ""
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog and "a title is needed" in screen_text(app)
        dialog.query_one("Input").value = "Greetings"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not dialog)
        assert harness.store.get(app.conversation.id).title == "Greetings"
        assert " Greetings" in screen_text(app).splitlines()[0]


async def test_f3_copies_the_last_answer(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await pilot.press("f3")
        assert app.clipboard == ""
        await send(pilot, "hi")
        await pilot.press("f3")
        assert app.clipboard == "Hello! I am a **fake** model."


async def test_page_up_and_down_scroll_the_conversation(make_harness):
    harness = make_harness(reply="\n\n".join(f"Paragraph {i}." for i in range(60)))
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "long please")
        log = app.chat_log
        await wait_for(pilot, lambda: log.scroll_y == log.max_scroll_y and log.max_scroll_y > 0)
        bottom = log.scroll_y
        assert app.focused is app.prompt
        await pilot.press("pageup")
        await wait_for(pilot, lambda: log.scroll_y < bottom)
        await pilot.press("pagedown")
        await wait_for(pilot, lambda: log.scroll_y == bottom)


async def test_ctrl_q_quits_even_while_an_answer_streams(make_harness):
    harness = make_harness(reply="a b c d e f", hold_after=2)
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "go", wait=False)
        await wait_for(pilot, harness.engine.holding.is_set)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: app.return_code is not None or not app.is_running)
    assert app.return_code == 0
    app.close_resources()
    assert harness.engine.closed


async def test_ctrl_c_copies_selected_text_and_does_not_quit(harness):
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await pilot.press(*"copy me")
        app.prompt.select_all()
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.clipboard == "copy me"
        assert app.is_running


async def test_the_store_survives_a_restart(tui_home, make_harness):
    harness = make_harness()
    app = harness.app(store="home")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "remember this")
    app.close_resources()
    with ConversationStore(tui_home.conversations_db) as store:
        (info,) = store.list_all()
        assert info.title == "remember this" and info.n_messages == 2
    app2 = make_harness().app(store="home", resume="last")
    async with app2.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await wait_for(pilot, lambda: app2.conversation is not None)
        assert [m.content for m in app2.history] == ["remember this", "Hello! I am a **fake** model."]
    app2.close_resources()
