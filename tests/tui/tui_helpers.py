"""Helpers for the terminal UI tests: GGUF headers for a model home, an app builder, Pilot steps.

UI logic runs on a fake engine (tui_fakes.py); the model files in the home are
real GGUF headers (written with gguf-py) so the catalog, the palette's model
and adapter lists and the status bar see what they would see in real use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tui_fakes import FakeEngine

from assistant.conversations import ConversationStore
from assistant.home import Home
from assistant.knowledge.grounding import Source
from assistant.knowledge.retriever import NoRetriever
from assistant.tui.app import AssistantApp
from assistant.tui.options import TuiOptions

ROOT_DIR = Path(__file__).resolve().parents[2]
CHAT_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
OTHER_MODEL = "Tiny-Chat.Q8_0.gguf"
ADAPTER = "cooking-lora.gguf"

# Snapshots show this home path: a fixed, fake one (nothing is written there).
SNAPSHOT_HOME = Path("/home/user/.local/share/edge-assistant")


def write_header(path: Path, *, general_type: str = "model", file_type: int = 3, name: str = "m") -> Path:
    """A GGUF with real metadata and one tiny tensor: enough for the catalog."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type(general_type)
    w.add_name(name)
    w.add_context_length(2048)
    w.add_file_type(file_type)
    if general_type == "adapter":
        w.add_string("adapter.type", "lora")
        w.add_float32("adapter.lora.alpha", 16.0)
    w.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def fill_home(root: Path) -> Home:
    root.mkdir(parents=True, exist_ok=True)
    write_header(root / CHAT_MODEL, file_type=3, name="SmolLM2 135M Instruct")  # MOSTLY_Q4_1
    write_header(root / OTHER_MODEL, file_type=7, name="Tiny Chat")  # MOSTLY_Q8_0
    (root / "adapters").mkdir(exist_ok=True)
    write_header(root / "adapters" / ADAPTER, general_type="adapter", name="cooking")
    return Home(root)


SOURCES = [
    Source.from_dict(
        {
            "number": 1,
            "title": "Cooking rice",
            "uri": "/docs/kitchen/rice.md",
            "lines": [3, 9],
            "text": "Rinse the rice, then simmer it in twice its volume of water for 18 minutes.",
        }
    ),
    Source.from_dict(
        {
            "number": 2,
            "title": "Kitchen safety",
            "uri": "/docs/kitchen/safety.pdf",
            "pages": [4, 4],
            "text": "Never leave a pot of boiling water unattended.",
        }
    ),
]


class Harness:
    """Builds an AssistantApp wired to fakes, and remembers the engines it made."""

    def __init__(self, home: Home, **engine_kwargs: Any) -> None:
        self.home = home
        self.engine_kwargs = engine_kwargs
        self.engines: list[FakeEngine] = []
        self.store: ConversationStore | None = None

    def release(self) -> None:
        for engine in self.engines:
            engine.release.set()

    @property
    def engine(self) -> FakeEngine:
        return self.engines[-1]

    def factory(self, path: Path, options: TuiOptions) -> FakeEngine:
        engine = FakeEngine(path, **self.engine_kwargs)
        self.engines.append(engine)
        return engine

    def app(
        self,
        *,
        model: Path | str | None = "default",
        retriever: Any = None,
        store: ConversationStore | str | None = "memory",
        **options: Any,
    ) -> AssistantApp:
        if model == "default":
            model = self.home.root / CHAT_MODEL
        if store == "memory":
            store = ConversationStore(":memory:")
        elif store == "home":
            store = None  # the app opens the home's conversations.db
        self.store = store if isinstance(store, ConversationStore) else None
        opts = TuiOptions(home=self.home, model=model, **options)  # type: ignore[arg-type]
        retriever_obj = retriever if retriever is not None else NoRetriever()
        return AssistantApp(
            opts,
            engine_factory=self.factory,
            retriever_factory=lambda home, verbose: retriever_obj,
            store=store,  # type: ignore[arg-type]
        )


async def wait_for(pilot: Any, cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Let the app run until cond() holds (polled; the timeout is only a bound for a machine under load)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await pilot.pause(0.02)


async def settle(pilot: Any) -> None:
    """Wait until nothing is left to change the screen: every worker done, every animation over, every
    message handled. Snapshots call it last; it never returns while a worker is blocked."""
    await pilot.app.workers.wait_for_complete()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def palette_ready(app: Any) -> bool:
    """The command palette is open and has listed its commands (its search finished)."""
    from textual.command import CommandList

    screen = app.screen
    return (
        type(screen).__name__ == "CommandPalette"
        and screen.has_class("-ready")
        and screen.query_one(CommandList).option_count > 0
    )


async def ready(pilot: Any) -> None:
    """Wait until the model is loaded and the knowledge base probed."""
    app = pilot.app
    await wait_for(
        pilot,
        lambda: app.model_state in ("ready", "none", "failed") and not app.retriever_loading,
        what="ready",
    )
    await pilot.pause()


async def send(pilot: Any, text: str, *, wait: bool = True) -> None:
    app = pilot.app
    app.prompt.load_text(text)
    await pilot.press("enter")
    if wait:
        await wait_for(pilot, lambda: app.turn is None and not app.queue, what="the answer")
        await pilot.pause()


async def run_palette(pilot: Any, command: str) -> None:
    """Open the command palette, type the command, run the first hit."""
    app = pilot.app
    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: type(app.screen).__name__ == "CommandPalette", what="the palette")
    palette = app.screen
    from textual.widgets import Input

    palette.query_one(Input).value = command
    await wait_for(
        pilot,
        lambda: any(command.lower() in str(o.prompt).lower() for o in _palette_options(palette)),
        what=f"palette hit {command!r}",
    )
    await pilot.press("enter")
    await wait_for(pilot, lambda: type(app.screen).__name__ != "CommandPalette", what="the palette to close")
    await pilot.pause()


def _palette_options(palette: Any) -> list[Any]:
    from textual.command import CommandList

    try:
        options = palette.query_one(CommandList)
    except Exception:
        return []
    return [options.get_option_at_index(i) for i in range(options.option_count)]


def screen_text(app: Any) -> str:
    """Everything the screen shows, as plain text (what a user reads)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True, record=True, legacy_windows=False
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def notified(app: Any) -> str:
    """Every notification (toast) the app raised, one a line (run_test does not draw them)."""
    return "\n".join(f"{n.title}: {n.message}" if n.title else n.message for n in app._notifications)
