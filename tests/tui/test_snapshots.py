"""Snapshots (SVG) of the main screen, the sources panel, the palette and the empty states.

Deterministic by construction: fixed terminal sizes, a fake engine with fixed
timings, an in-memory store, a fixed home path, no cursor blink, no clocks.
Update after an intended change with: pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from pathlib import Path

from tui_fakes import FakeRetriever
from tui_helpers import SNAPSHOT_HOME, SOURCES, Harness, send, wait_for
from tui_helpers import ready as wait_ready

from assistant.conversations import ConversationStore
from assistant.errors import ModelError
from assistant.home import Home
from assistant.tui.app import AssistantApp
from assistant.tui.options import TuiOptions
from assistant.tui.retrieval import NoRetriever

ANSWER = """Cooking rice takes three steps [1]:

1. **Rinse** the rice until the water runs clear.
2. Simmer it in *twice* its volume of water.
3. Let it rest, covered, for 5 minutes.

```python
water_ml = rice_g * 2
```

Never leave the pot unattended [2]."""


def quiet(app: AssistantApp) -> None:
    app.prompt.cursor_blink = False


async def answered(pilot) -> None:
    await wait_ready(pilot)
    quiet(pilot.app)
    await send(pilot, "How do I cook rice?")


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
        await pilot.pause()

    try:
        assert snap_compare(app, terminal_size=(80, 24), run_before=streaming)
    finally:
        harness.release()


def test_sources_panel(snap_compare, snapshot_home: Home):
    app = Harness(snapshot_home, reply=ANSWER).app(retriever=FakeRetriever(list(SOURCES)))
    assert snap_compare(app, terminal_size=(120, 30), run_before=answered)


def test_source_in_its_document(snap_compare, snapshot_home: Home, tmp_path: Path):
    doc = snapshot_home.root / "rice.md"
    doc.write_text(
        "# Rice\n\nRice is a staple food.\n\n## Cooking\n\n"
        "Rinse the rice, then simmer it in twice its volume of water for 18 minutes.\n\n"
        "## Storing\n\nKeep cooked rice in the fridge for at most a day.\n"
    )
    from dataclasses import replace

    source = replace(SOURCES[0], path="/docs/kitchen/rice.md")
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
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_source)


def test_command_palette(snap_compare, snapshot_home: Home):
    app = Harness(snapshot_home, reply=ANSWER).app()

    async def palette(pilot) -> None:
        await answered(pilot)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "CommandPalette")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=palette)


def test_help_screen(snap_compare, snapshot_home: Home):
    app = Harness(snapshot_home).app()

    async def help_screen(pilot) -> None:
        await wait_ready(pilot)
        quiet(pilot.app)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=help_screen)


def test_empty_state_welcome_without_knowledge_base(snap_compare, snapshot_home: Home):
    app = Harness(snapshot_home).app()

    async def ready(pilot) -> None:
        await wait_ready(pilot)
        quiet(pilot.app)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_empty_state_no_model(snap_compare):
    home = Home(SNAPSHOT_HOME)
    problem = f"no chat model in {SNAPSHOT_HOME}; run ./setup.sh (installs the default model) or `assistant models pull REPO_ID`"
    app = AssistantApp(
        TuiOptions(home=home, model=None, model_problem=problem),
        engine_factory=lambda path, options: (_ for _ in ()).throw(AssertionError("no load")),
        retriever_factory=lambda home, verbose: NoRetriever(),
        store=ConversationStore(":memory:"),
    )

    async def ready(pilot) -> None:
        await wait_ready(pilot)
        quiet(pilot.app)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_empty_state_model_fails_to_load(snap_compare, snapshot_home: Home):
    harness = Harness(snapshot_home)
    app = harness.app()

    def broken(path, options):
        raise ModelError(f"{path.name} is truncated: its GGUF header ends early; download it again")

    app.engine_factory = broken

    async def ready(pilot) -> None:
        await wait_ready(pilot)
        quiet(pilot.app)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_empty_state_tiny_terminal(snap_compare, snapshot_home: Home):
    app = Harness(snapshot_home).app()
    assert snap_compare(app, terminal_size=(36, 8), run_before=wait_ready)
