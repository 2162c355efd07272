"""First-start and failure states (each says what to do, never a traceback), long chats, the CLI seam."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Button
from tui_helpers import CHAT_MODEL, ROOT_DIR, fill_home, notified, run_palette, screen_text, send, wait_for
from tui_helpers import ready as wait_ready

from assistant.conversations import ConversationStore
from assistant.errors import ModelError, ModelNotFoundError, UsageError
from assistant.home import Home
from assistant.message import Message
from assistant.tui.options import build_options
from assistant.tui.widgets.chat_log import WINDOW
from assistant.tui.widgets.status_bar import StatusBar, StatusInfo, speed_fields
from assistant.turn import conversation_messages as engine_messages


def no_model_options(home: Home) -> dict:
    opts = build_options(
        home,
        model=None,
        n_ctx=None,
        threads=None,
        chat_format=None,
        system=None,
        sampling={},
        resume=None,
        verbose=False,
    )
    return {"model": opts.model, "model_problem": opts.model_problem}


async def test_first_start_without_a_model_says_what_to_do(tmp_path, make_harness):
    home = Home(tmp_path / "empty-home")
    home.root.mkdir()
    harness = make_harness()
    harness.home = home
    app = harness.app(**no_model_options(home))
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_ready(pilot)
        text = screen_text(app)
        assert "No chat model yet." in text
        assert "./setup.sh" in text and "assistant setup" in text
        assert str(home.root) in text
        assert "no model" in text  # status bar
        assert "Traceback" not in text
        await pilot.press(*"hello")
        await pilot.press("enter")
        await pilot.pause()
        assert app.prompt.text == "hello"  # kept, not lost
        assert "No model is loaded" in notified(app)
        assert harness.engines == []
        # a model appears in the home: the palette can load it without a restart
        fill_home(home.root)
        await run_palette(pilot, "Switch model: SmolLM2")
        await wait_for(pilot, lambda: app.model_state == "ready")
        await send(pilot, "hello")
        assert harness.engine.calls


async def test_a_model_that_fails_to_load_shows_the_reason(make_harness):
    harness = make_harness()
    app = harness.app()

    def broken(path, options):
        raise ModelError(f"{path.name} is not a GGUF file (starts with b'PK'); download a .gguf")

    app.engine_factory = broken
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        text = screen_text(app)
        assert f"Could not load {CHAT_MODEL}" in text
        assert "is not a GGUF file" in text and "Ctrl+P" in text
        assert "Traceback" not in text


async def test_an_unexpected_load_error_is_one_line_not_a_crash(make_harness):
    harness = make_harness()
    app = harness.app()

    def buggy(path, options):
        raise RuntimeError("boom")

    app.engine_factory = buggy
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        assert "internal error: RuntimeError: boom" in screen_text(app)
        assert app.is_running


async def test_a_generation_error_is_shown_and_the_chat_goes_on(make_harness):
    harness = make_harness()
    app = harness.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        engine = harness.engine
        original = engine.chat

        def failing(*args, **kwargs):
            raise ModelError("the 2048-token context is full; start a new chat or raise --ctx")

        engine.chat = failing
        await send(pilot, "hello")
        assert "context is full" in screen_text(app)
        assert "Answer failed" in notified(app)
        stored = harness.store.messages(app.conversation.id)
        assert stored[-1].meta["finish_reason"] == "error"
        engine.chat = original
        await send(pilot, "again")
        # the failed (empty) answer is not sent back; the two questions are joined
        assert [(m.role, m.content) for m in engine.calls[-1][0]] == [("user", "hello\n\nagain")]


async def test_without_a_knowledge_base_the_ui_says_how_to_create_one(harness):
    app = harness.app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_ready(pilot)
        assert app.sources_panel.display  # wide: the panel is there
        text = screen_text(app)
        assert text.count("assistant index add PATH...") >= 2  # welcome text and sources panel
        assert "no KB" in text


async def test_a_tiny_terminal_says_so_and_recovers(harness):
    app = harness.app()
    async with app.run_test(size=(30, 8)) as pilot:
        await wait_ready(pilot)
        text = screen_text(app)
        assert "Terminal too small: 30x8" in text
        assert "at least 40x10" in text
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        text = screen_text(app)
        assert "too small" not in text and "Ready" in text
        await send(pilot, "hi")
        assert "fake" in screen_text(app)


async def test_when_chats_cannot_be_saved_the_chat_still_works(tmp_path, make_harness):
    root = tmp_path / "home"
    fill_home(root)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the database's folder should be")
    harness = make_harness()
    harness.home = Home(root)
    app = harness.app(store="home")
    app.home = Home(blocker)  # conversations.db would go inside a file: cannot be created
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        assert "Chats are not being saved" in notified(app)
        await send(pilot, "hello")
        assert app.chat_log.messages[-1].streamed_text.startswith("Hello!")
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert "nothing to open" in notified(app)


async def test_context_trimming_is_announced_and_kept_with_the_answer(make_harness):
    harness = make_harness(dropped=2)
    app = harness.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_ready(pilot)
        await send(pilot, "a long chat")
        notice = "2 older messages left the 2,048-token context window"
        assert notice in screen_text(app)
        stored = harness.store.messages(app.conversation.id)[-1]
        assert stored.meta["notices"] == [notice]
        assert notice in harness.store.export_markdown(app.conversation.id)


async def test_a_200_message_chat_opens_quickly_with_earlier_messages_on_demand(harness, tmp_path):
    store = ConversationStore(tmp_path / "c.db")
    conv = store.create(title="Long one")
    items = []
    for i in range(100):
        items += [("user", f"question {i}", None), ("assistant", f"answer **{i}**", {"decode_tps": 99.0})]
    store.add_messages(conv.id, items)
    app = harness.app(store=store, resume=str(conv.id))
    app.options.resume = conv.id
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await wait_for(pilot, lambda: app.conversation is not None)
        assert len(app.history) == 200
        assert len(app.chat_log.messages) == WINDOW == 20
        log = app.chat_log
        await wait_for(
            pilot, lambda: log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y, what="the end"
        )
        assert "answer 99" in screen_text(app)  # opened at the newest message
        assert "▲ 180 earlier messages" in screen_text(app) or app.chat_log.query_one("#earlier")
        await wait_for(pilot, lambda: app.status.info.used == harness.engine.count_tokens(app.history))
        log.release_anchor()  # as a user scrolling up does
        log.scroll_home(animate=False)
        await pilot.pause()
        await pilot.click("#earlier")
        await wait_for(pilot, lambda: len(app.chat_log.messages) == 40)
        assert app.chat_log.messages[0].streamed_text == "question 80"
        app.chat_log.scroll_home(animate=False)
        await pilot.pause()
        await pilot.press("pageup")  # at the top, PgUp brings in the rest
        await wait_for(pilot, lambda: len(app.chat_log.messages) == 60)
        assert app.focused is app.chat_log
        await pilot.press("o")  # typing while the conversation has focus goes to the input
        assert app.focused is app.prompt and app.prompt.text == "o"
        await send(pilot, "one more")
        assert len(harness.engine.calls[-1][0]) == 201
        # a new question unmounts the oldest again: frames lay out only the window
        shown = app.chat_log.messages
        assert len(shown) == WINDOW
        assert [m.streamed_text for m in shown[-2:]] == ["one more", harness.engine.reply]
        assert shown[0].streamed_text == "question 91"
        assert "▲ 182 earlier messages" in str(app.chat_log.query_one("#earlier", Button).label)
        # and they come back as they were: Markdown source and metadata
        log.release_anchor()
        log.scroll_home(animate=False)
        await pilot.pause()
        await pilot.click("#earlier")
        await wait_for(pilot, lambda: len(app.chat_log.messages) == 2 * WINDOW)
        back = app.chat_log.messages[WINDOW - 1]
        assert back.role == "assistant" and back.streamed_text == "answer **90**"
        assert back.meta["decode_tps"] == 99.0
    store.close()


def test_engine_messages_keep_roles_alternating():
    history = [
        Message("user", "a"),
        Message("assistant", ""),
        Message("user", "b"),
        Message("assistant", "B"),
    ]
    assert engine_messages("sys", history) == [
        Message("system", "sys"),
        Message("user", "a\n\nb"),
        Message("assistant", "B"),
    ]
    assert engine_messages(None, []) == []


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_status_bar_fits_every_width(width):
    bar = StatusBar()
    bar.info = StatusInfo(
        model="SmolLM2-135M-Instruct.Q4_1.gguf",
        quant="Q4_1",
        adapters=(("cooking-lora.gguf", 0.5),),
        used=1536,
        window=2048,
        ttft_ms=41.6,
        tps=187.4,
        retrieval="on",
    )
    text = bar.text(width)
    assert text.cell_len == width
    assert "KB on" in text.plain
    if width >= 80:
        assert "SmolLM2-135M-Instruct · Q4_1" in text.plain
        assert "1,536/2,048" in text.plain and "187 tok/s" in text.plain
    if width >= 100:
        assert "+cooking-lora×0.5" in text.plain and "42 ms · 187 tok/s" in text.plain


@pytest.mark.parametrize(("ran", "shown"), [(2, "2 threads"), (1, "1 thread"), ([2, 1, 2], "1-2 threads")])
def test_status_bar_says_the_threads_that_ran(ran, shown):
    """#17: the speed slot names the llama.cpp threads of the last answer (a range when they changed)."""
    meta = {
        "finish_reason": "stop",
        "completion_tokens": 9,
        "ttft_ms": 41.6,
        "decode_tps": 187.4,
        "threads": ran,
    }
    bar = StatusBar()
    bar.info = StatusInfo(model="m.gguf", quant="Q4_1", window=2048, **speed_fields(meta))
    assert f"42 ms · 187 tok/s · {shown}" in bar.text(120).plain
    assert bar.text(40).cell_len == 40  # a narrow bar still fits (the figures go first)


def test_build_options(tmp_path):
    empty = Home(tmp_path / "empty")
    empty.root.mkdir()
    opts = build_options(
        empty,
        model=None,
        n_ctx=None,
        threads=None,
        chat_format=None,
        system=None,
        sampling={"temperature": 0.5, "top_p": None, "stop": ()},
        resume="last",
        verbose=False,
    )
    assert opts.model is None and "no chat model" in opts.model_problem
    assert opts.sampling == {"temperature": 0.5} and opts.resume == "last"
    kwargs = dict(n_ctx=None, threads=None, chat_format=None, system=None, sampling={}, verbose=False)
    with pytest.raises(ModelNotFoundError):
        build_options(empty, model="nope", resume=None, **kwargs)
    with pytest.raises(UsageError, match="--resume"):
        build_options(empty, model=None, resume="yesterday", **kwargs)


def test_the_cli_does_not_import_textual_until_the_ui_opens():
    code = "import sys; from assistant.cli import cli; print('textual' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT_DIR, check=True
    )
    assert out.stdout.strip() == "False"


def test_chat_falls_back_to_the_plain_chat_without_a_terminal(run_cli, home_with_default: Path):
    result = run_cli("chat", home=home_with_default, input="/help\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert "/new (new chat)" in result.stdout  # the line-based chat's help
    assert "\x1b[" not in result.stdout  # no full-screen escape codes


def test_chat_help_documents_the_ui_options(run_cli):
    result = run_cli("chat", "--help")
    assert result.returncode == 0
    assert "--plain" in result.stdout and "--resume" in result.stdout
