"""Snapshots (SVG) of the main screen, the sources panel, the palette and the empty states.

Deterministic by construction: fixed terminal sizes, a fake engine with fixed
timings, an in-memory store, a fixed home path, no cursor blink, no clocks. Every
run_before waits for the state it shows and then settle()s (workers done, animations
over): no fixed pauses, so a loaded machine only makes a snapshot slower, never different.
Update after an intended change with: pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from pathlib import Path

from tui_fakes import FakeRetriever
from tui_helpers import SNAPSHOT_HOME, SOURCES, Harness, palette_ready, send, settle, wait_for
from tui_helpers import ready as wait_ready

from assistant.conversations import ConversationStore
from assistant.errors import ModelError
from assistant.home import Home
from assistant.knowledge.retriever import NoRetriever
from assistant.tui.app import AssistantApp
from assistant.tui.options import TuiOptions

ANSWER = """Cooking rice takes three steps [1]:

1. **Rinse** the rice until the water runs clear.
2. Simmer it in *twice* its volume of water.
3. Let it rest, covered, for 5 minutes.

```python
water_ml = rice_g * 2
```

Never leave the pot unattended [2]."""


def quiet(app: AssistantApp) -> None:
    """A steady cursor (shown while the prompt has focus): a blinking one is in either phase when the
    screenshot is taken. The app turns blinking back on after each answer, so call it after one too."""
    app.prompt.cursor_blink = False


async def ready_and_quiet(pilot) -> None:
    await wait_ready(pilot)
    quiet(pilot.app)
    await settle(pilot)


async def answered(pilot) -> None:
    await wait_ready(pilot)
    quiet(pilot.app)
    await send(pilot, "How do I cook rice?")
    quiet(pilot.app)
    await settle(pilot)


def test_main_screen(snap_compare, snapshot_home: Home):
    app = Harness(snapshot_home, reply=ANSWER).app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=answered)


def test_main_screen_streaming(snap_compare, snapshot_home: Home):
    harness = Harness(snapshot_home, reply=ANSWER, hold_after=12)
    app = harness.app()

    async def streaming(pilot) -> None:
        await wait_ready(pilot)
        quiet(pilot.app)
        await send(pilot, "How do I cook rice?", wait=False)
        await send(pilot, "And brown rice?", wait=False)  # queued while the answer streams
        await wait_for(pilot, harness.engine.holding.is_set)
        from tui_fakes import _pieces

        expected = "".join(_pieces(ANSWER)[:12])
        answer = pilot.app.chat_log.messages[-1]

        def settled() -> bool:
            stream = answer._stream
            return (
                answer.markdown.source == expected
                and stream is not None
                and not stream._pending
                and not answer.markdown.lock._lock.locked()
            )

        await wait_for(pilot, settled, what="the streamed text on screen")
        await pilot.wait_for_scheduled_animations()  # not settle(): the answer's worker is held
        await pilot.pause()

    try:
        assert snap_compare(app, terminal_size=(80, 24), run_before=streaming)
    finally:
        harness.release()


def test_sources_panel(snap_compare, snapshot_home: Home):
    store = ConversationStore(":memory:")
    store.set_setting("kb_top_k", len(SOURCES))  # the user asked for more sources than the default one
    app = Harness(snapshot_home, reply=ANSWER).app(retriever=FakeRetriever(list(SOURCES)), store=store)
    assert snap_compare(app, terminal_size=(120, 30), run_before=answered)


def test_source_in_its_document(snap_compare, snapshot_home: Home, tmp_path: Path):
    doc = snapshot_home.root / "rice.md"
    doc.write_text(
        "# Rice\n\nRice is a staple food.\n\n## Cooking\n\n"
        "Rinse the rice, then simmer it in twice its volume of water for 18 minutes.\n\n"
        "## Storing\n\nKeep cooked rice in the fridge for at most a day.\n"
    )
    from dataclasses import replace

    source = replace(SOURCES[0], uri="/docs/kitchen/rice.md")
    app = Harness(snapshot_home, reply=ANSWER).app(retriever=FakeRetriever([source]))

    async def open_source(pilot) -> None:
        await answered(pilot)
        from assistant.tui.screens.source_view import SourceScreen

        # the document as it is on disk (the path shown stays the fixed one)
        screen = SourceScreen(source)
        screen.text = doc.read_text()
        start = screen.text.index("Rinse")
        screen.span = (start, start + len(source.text))
        screen.note = ""
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: pilot.app.screen is screen and screen.is_mounted, what="the source")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_source)


def test_command_palette(snap_compare, snapshot_home: Home):
    app = Harness(snapshot_home, reply=ANSWER).app()

    async def palette(pilot) -> None:
        await answered(pilot)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: palette_ready(pilot.app), what="the palette's commands")
        from textual.widgets import Input

        pilot.app.screen.query_one(Input).cursor_blink = False  # a steady cursor, as quiet() does
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=palette)


def test_help_screen(snap_compare, snapshot_home: Home):
    app = Harness(snapshot_home).app()

    async def help_screen(pilot) -> None:
        await wait_ready(pilot)
        quiet(pilot.app)
        await pilot.press("f1")
        await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "HelpScreen", what="the help")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=help_screen)


def test_empty_state_welcome_without_knowledge_base(snap_compare, snapshot_home: Home):
    app = Harness(snapshot_home).app()

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready_and_quiet)


def test_empty_state_no_model(snap_compare):
    home = Home(SNAPSHOT_HOME)
    problem = f"no chat model in {SNAPSHOT_HOME}; run ./setup.sh (installs the default model) or `assistant models pull REPO_ID`"
    app = AssistantApp(
        TuiOptions(home=home, model=None, model_problem=problem),
        engine_factory=lambda path, options: (_ for _ in ()).throw(AssertionError("no load")),
        retriever_factory=lambda home, verbose: NoRetriever(),
        store=ConversationStore(":memory:"),
    )

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready_and_quiet)


def test_empty_state_model_fails_to_load(snap_compare, snapshot_home: Home):
    harness = Harness(snapshot_home)
    app = harness.app()

    def broken(path, options):
        raise ModelError(f"{path.name} is truncated: its GGUF header ends early; download it again")

    app.engine_factory = broken

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready_and_quiet)


def test_empty_state_tiny_terminal(snap_compare, snapshot_home: Home):
    app = Harness(snapshot_home).app()
    assert snap_compare(app, terminal_size=(36, 8), run_before=ready_and_quiet)
