"""The assistant's terminal UI: chat with a local model, grounded in the knowledge base.

Blocking work (model load, retrieval, generation, token counting, LoRA
changes) runs in thread workers that never touch widgets: they post the
dataclass messages of messages.py. Tokens go through a per-answer deque that a
UI timer drains into the answer's MarkdownStream once a frame (FramePacer keeps
the frames within a CPU budget), so a fast model costs the UI one Markdown
append per frame, not one per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Protocol

from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static

from ..conversations import ConversationInfo, ConversationStore, default_export_name
from ..engine import compute
from ..engine.sampling import SamplingParams
from ..errors import AssistantError, StorageError
from ..home import Home
from ..knowledge.grounding import Source
from ..knowledge.retriever import NoRetriever, Retriever, open_retriever
from ..message import Message
from ..turn import ChatTurn, conversation_messages, prepare_turn
from ..turn import Engine as TurnEngine
from .codeblocks import code_blocks
from .messages import (
    AdaptersApplied,
    AnswerFinished,
    AnswerStarted,
    ModelFailed,
    ModelLoaded,
    RetrieverReady,
    TokensCounted,
)
from .options import DEFAULT_TOP_K, TuiOptions, sampling_with
from .pacing import FramePacer
from .screens.confirm import ConfirmDialog
from .screens.conversations import ConversationsScreen
from .screens.help import HelpScreen
from .screens.prompt_dialog import PromptDialog
from .screens.settings import Settings, SettingsScreen
from .screens.source_view import SourceScreen
from .screens.system_prompt import SystemPromptScreen
from .widgets.chat_log import ChatLog
from .widgets.chat_message import ChatMessage
from .widgets.empty_state import EmptyState
from .widgets.prompt_input import PromptInput
from .widgets.queue_bar import QueueBar
from .widgets.sources_panel import SourcesPanel
from .widgets.status_bar import StatusBar, speed_fields
from .widgets.too_small import MIN_HEIGHT, MIN_WIDTH, TooSmall

log = logging.getLogger(__name__)

WIDE = 100  # from this width the sources panel shows by default
GIL_SWITCH_INTERVAL = 0.001  # seconds; Python's default is 0.005


class Engine(TurnEngine, Protocol):
    """What the UI needs from a chat model (assistant.engine.ChatModel, or a fake in UI tests)."""

    path: Path
    info: Any  # .architecture, .quant_type
    load_ms: float

    def set_adapters(self, adapters: Sequence[tuple[str | Path, float]]) -> None: ...
    def count_tokens(self, messages: Sequence[Message]) -> int: ...
    def close(self) -> None: ...


EngineFactory = Callable[[Path, TuiOptions], Engine]
RetrieverFactory = Callable[[Home, bool], Retriever]


def load_engine(path: Path, options: TuiOptions) -> Engine:
    from ..engine import ChatModel

    return ChatModel(
        path,
        n_ctx=options.n_ctx,
        n_threads=options.threads,
        chat_format=options.chat_format,
        verbose=options.verbose,
    )


def _open_retriever(home: Home, verbose: bool) -> Retriever:
    return open_retriever(home, verbose=verbose)


@dataclass
class Turn:
    """One answer being generated."""

    id: int
    widget: ChatMessage
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    buffer: deque[str] = field(default_factory=deque)
    notices: list[str] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    retrieval_ms: float | None = None
    chat: ChatTurn | None = None  # set by the worker before AnswerStarted
    adapters: list[tuple[str, float]] = field(default_factory=list)
    # the frame timer's callback, made once: Textual caches a callback's parameter count on the
    # callable, so a new partial every frame cost an inspect.signature() per frame (~7% of the UI
    # thread's work while streaming, py-spy)
    draw: Callable[[], Any] | None = None


class AssistantApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "assistant"
    ENABLE_COMMAND_PALETTE = True
    # Streamed text is drawn at most every MIN_FRAME seconds, and less often when drawing would
    # take more than FRAME_BUDGET of a core, but at least every MAX_FRAME: with llama.cpp on every
    # core, each millisecond the UI thread runs stalls a decode thread. On 2 cores, decode in the UI
    # vs `assistant ask`: 0.90x at 30 draws/s within 5%, 0.91-0.96x at 12 draws/s within 2.5%. A
    # Markdown frame is two layouts of the screen in Textual (15-45 ms of UI CPU on the shared 2-core
    # dev machine, more with more messages mounted), so there the budget asks for about one frame a
    # second; a 0.5 s cap held 0.94x (docs/BENCHMARKS.md). Faster machines draw several times a second.
    MIN_FRAME = 1 / 12
    MAX_FRAME = 1.0
    FRAME_BUDGET = 0.025

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+n", "new_chat", "New"),
        Binding("ctrl+o", "open_chats", "Chats"),
        Binding("ctrl+r", "toggle_retrieval", "KB"),
        Binding("ctrl+s", "toggle_sources", "Sources"),
        Binding("f1", "help", "Keys"),
        Binding("f2", "rename", "Rename", show=False),
        Binding("f3", "copy_answer", "Copy answer", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        options: TuiOptions,
        *,
        engine_factory: EngineFactory = load_engine,
        retriever_factory: RetrieverFactory = _open_retriever,
        store: ConversationStore | None = None,
    ) -> None:
        super().__init__()
        self.options = options
        self.home = options.home
        self.engine_factory = engine_factory
        self.retriever_factory = retriever_factory
        self.store = store
        self._own_store = store is None
        self.engine: Engine | None = None
        self.model_path: Path | None = options.model
        self.model_state = "loading" if options.model else "none"
        self.model_error: str | None = options.model_problem
        self.retriever: Retriever = NoRetriever()
        self.retriever_loading = True
        self.retrieval_on = True
        self.kb_top_k = DEFAULT_TOP_K
        self.sampling = sampling_with(SamplingParams(), options.sampling)
        self.conversation: ConversationInfo | None = None
        self.system_prompt: str | None = options.system
        self.history: list[Message] = []
        self.adapters: list[tuple[Path, float]] = []
        self.turn: Turn | None = None
        self.queue: list[str] = []
        self.last_answer: str = ""
        self.last_sources: list[Source] = []
        self.sources_pref: bool | None = None  # None: shown when wide
        self._after_idle: list[Callable[[], Any]] = []
        self._turn_ids = 0
        self._epoch = 0  # bumps when the conversation changes (stale token counts are ignored)
        self._pacer = FramePacer(
            min_interval=self.MIN_FRAME, max_interval=self.MAX_FRAME, budget=self.FRAME_BUDGET
        )
        self._frame_timer: Timer | None = None
        self._model_cache: dict[Path, tuple[tuple[int, int], Any]] = {}
        self._store_warned = False
        self._switch_interval = sys.getswitchinterval()

    # -- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="title", markup=False)
        with Horizontal(id="body"):
            with Vertical(id="main"):
                yield ChatLog(id="chat")
                yield QueueBar(id="queue")
                yield PromptInput(id="prompt", placeholder="Message · Enter sends · Ctrl+J new line")
            yield SourcesPanel(id="sources")
        yield StatusBar(id="status")
        yield Footer(compact=True)
        yield TooSmall(id="too-small")

    @property
    def chat_log(self) -> ChatLog:
        return self.query_one("#chat", ChatLog)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def status(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    @property
    def sources_panel(self) -> SourcesPanel:
        return self.query_one("#sources", SourcesPanel)

    async def on_mount(self) -> None:
        # The generation worker needs the GIL for a few microseconds between llama.cpp calls; do not
        # make it wait the default 5 ms each time while the UI thread lays out Markdown (measured:
        # decode in the UI went from 0.88x to ~0.95-0.99x of the engine alone).
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        self._open_store()
        self._load_settings()
        self._apply_size()
        self._update_title()
        self._update_status()
        self.prompt.focus()
        if self.model_path is not None:
            await self.chat_log.show_placeholder(EmptyState.model_loading(self.model_path.name))
            self._load_worker(self.model_path, None)
        else:
            await self.chat_log.show_placeholder(EmptyState.no_model(self.home.root, self.model_error))
        self._retriever_worker()
        await self._resume()

    def _open_store(self) -> None:
        if self.store is not None or not self.options.persist:
            return
        try:
            self.store = ConversationStore(self.home.conversations_db)
        except AssistantError as exc:
            self.store = None
            self._warn_store(exc)

    def _warn_store(self, exc: Exception) -> None:
        if not self._store_warned:
            self._store_warned = True
            self.notify(f"Chats are not being saved: {exc}", severity="warning", timeout=8)

    def _load_settings(self) -> None:
        if self.store is None:
            return
        try:
            saved = self.store.get_setting("sampling", {}) or {}
            self.kb_top_k = int(self.store.get_setting("kb_top_k", DEFAULT_TOP_K))
            self.retrieval_on = bool(self.store.get_setting("retrieval", True))
            self.sampling = sampling_with(sampling_with(SamplingParams(), saved), self.options.sampling)
            if saved.get("seed", "unset") is None and "seed" not in self.options.sampling:
                self.sampling = _replace(self.sampling, seed=None)
        except (AssistantError, ValueError, TypeError) as exc:
            log.warning("ignoring saved settings: %s", exc)

    async def _resume(self) -> None:
        want = self.options.resume
        if want is None or self.store is None:
            return
        try:
            info = self.store.latest() if want == "last" else self.store.get(int(want))
        except (AssistantError, ValueError) as exc:
            self.notify(f"Cannot resume chat {want}: {exc}", severity="warning")
            return
        if info is None:
            self.notify("No saved chat to resume yet.")
            return
        await self.load_conversation(info.id)

    # -- size -----------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._apply_size(event.size.width, event.size.height)

    def _apply_size(self, width: int | None = None, height: int | None = None) -> None:
        if width is None or height is None:
            width, height = self.size
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        self.screen.set_class(small, "-too-small")
        if small:
            self.query_one(TooSmall).show_size(width, height)
        self._apply_sources_visibility(width)

    def _apply_sources_visibility(self, width: int | None = None) -> None:
        width = width or self.size.width
        show = self.sources_pref if self.sources_pref is not None else width >= WIDE
        panel = self.sources_panel
        panel.display = show
        panel.set_class(width < WIDE, "-narrow")

    # -- status ---------------------------------------------------------------

    def _update_title(self) -> None:
        title = self.conversation.display_title if self.conversation else "New chat"
        extra = " · system prompt" if self.system_prompt else ""
        self.query_one("#title", Static).update(f" {title}{extra}")
        self.sub_title = title

    def _retrieval_state(self) -> str:
        if self.retriever_loading:
            return "loading"
        if not self.retriever.available:
            return "none"
        return "on" if self.retrieval_on else "off"

    def _update_status(self, **changes: Any) -> None:
        engine = self.engine
        name = self.model_path.name if self.model_path else ""
        state = {"loading": "loading", "ready": ""}.get(self.model_state, "")
        if self.turn is not None:
            state = "stopping" if self.turn.cancel.is_set() else "generating"
        base: dict[str, Any] = {
            "model": name if self.model_state in ("ready", "loading") else "",
            "quant": _quant(engine) if engine else "",
            "adapters": tuple((p.name, s) for p, s in self.adapters),
            "state": state,
            "window": engine.n_ctx if engine else 0,
            "retrieval": self._retrieval_state(),
        }
        if "ttft_ms" in changes:  # new figures (or none) replace a note about the last answer
            changes.setdefault("speed_note", "")
            changes.setdefault("threads", "")
        base.update(changes)
        self.status.set(**base)

    def _kb_hint(self) -> str | None:
        if self.retriever_loading or self.retriever.available:
            return None
        return self.retriever.hint

    def _placeholder(self) -> EmptyState:
        if self.model_state == "loading" and self.model_path:
            return EmptyState.model_loading(self.model_path.name)
        if self.model_state == "failed" and self.model_path:
            return EmptyState.model_failed(self.model_path.name, self.model_error or "")
        if self.model_state == "none" or self.model_path is None:
            return EmptyState.no_model(self.home.root, self.model_error)
        return EmptyState.welcome(self.model_path.name, self._kb_hint())

    async def _refresh_placeholder(self) -> None:
        if not self.chat_log.messages:
            await self.chat_log.show_placeholder(self._placeholder())

    def _show_sources(self, sources: list[Source]) -> None:
        if sources:
            hint = ""
        elif self.retriever_loading:
            hint = "Opening the knowledge base…"
        elif not self.retriever.available:
            hint = self.retriever.hint
        elif not self.retrieval_on:
            hint = "Retrieval is off (Ctrl+R turns it on)."
        else:
            hint = f"Sources of the next answer show here ({self.retriever.description})."
        self.sources_panel.show(sources, hint)

    # -- model ----------------------------------------------------------------

    @work(thread=True, group="model", exit_on_error=False)
    def _load_worker(self, path: Path, old: Engine | None) -> None:
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        try:
            engine = self.engine_factory(path, self.options)
        except AssistantError as exc:
            self.post_message(ModelFailed(path, str(exc)))
            return
        except Exception as exc:  # a bug or a llama.cpp failure: one line, never a traceback
            log.exception("loading %s failed", path)
            self.post_message(ModelFailed(path, f"internal error: {type(exc).__name__}: {exc}"))
            return
        self.post_message(ModelLoaded(engine, float(getattr(engine, "load_ms", 0.0))))

    async def on_model_loaded(self, msg: ModelLoaded) -> None:
        self.engine = msg.engine
        self.model_path = Path(msg.engine.path)
        self.model_state = "ready"
        self.model_error = None
        self.adapters = []
        self._update_status(used=0, ttft_ms=None, tps=None)
        await self._refresh_placeholder()
        self._count_context()
        await self._run_idle_actions()

    async def on_model_failed(self, msg: ModelFailed) -> None:
        self.engine = None
        self.model_path = Path(msg.path)
        self.model_state = "failed"
        self.model_error = msg.error
        self._update_status(model="", quant="", window=0)
        if self.chat_log.messages:
            self.notify(f"Could not load {self.model_path.name}: {msg.error}", severity="error", timeout=10)
        await self._refresh_placeholder()
        self.queue.clear()
        self.query_one(QueueBar).show_queue([])

    def switch_model(self, path: Path) -> None:
        self.when_idle(partial(self._switch_model, path), cancel=True)

    async def _switch_model(self, path: Path) -> None:
        old, self.engine = self.engine, None
        self.model_path = path
        self.model_state = "loading"
        self.model_error = None
        self._update_status(used=0, ttft_ms=None, tps=None)
        await self._refresh_placeholder()
        self.notify(f"Loading {path.name}…")
        if self.store is not None and self.conversation is not None:
            with contextlib.suppress(AssistantError):
                self.store.set_model(self.conversation.id, path.name)
        self._load_worker(path, old)

    def chat_models(self) -> list[Any]:
        """Chat GGUFs in the home (header info cached by size and mtime)."""
        from ..models.catalog import list_models

        try:
            entries = list_models(self.home)
        except OSError:
            return []
        return [e for e in entries if e.is_chat]

    def adapter_files(self) -> list[Any]:
        from ..models.catalog import list_models

        try:
            entries = list_models(self.home)
        except OSError:
            return []
        return [e for e in entries if e.role == "adapter"]

    # -- adapters -------------------------------------------------------------

    def ask_adapter(self, path: Path) -> None:
        if self.engine is None:
            self.notify("Load a model first: adapters apply to the loaded base model.", severity="warning")
            return
        current = dict(self.adapters).get(path, 1.0)

        def done(value: str | None) -> None:
            if value is None:
                return
            scale = float(value)
            adapters = [(p, s) for p, s in self.adapters if p != path] + [(path, scale)]
            self.set_adapters(adapters)

        self.push_screen(
            PromptDialog(
                f"Apply LoRA adapter {path.name}: scale",
                f"{current:g}",
                help="1.0 = as trained, 0.5 = half strength, negative values invert it · Enter applies · Esc cancels",
                validate=_check_scale,
            ),
            done,
        )

    def set_adapters(self, adapters: list[tuple[Path, float]]) -> None:
        def apply() -> None:
            if self.engine is None:
                self.notify("No model loaded.", severity="warning")
                return
            self._update_status(state="loading")
            self._adapters_worker(self.engine, adapters)

        self.when_idle(apply)

    def remove_adapter(self, path: Path | None) -> None:
        self.set_adapters([] if path is None else [(p, s) for p, s in self.adapters if p != path])

    @work(thread=True, group="adapters", exit_on_error=False)
    def _adapters_worker(self, engine: Engine, adapters: list[tuple[Path, float]]) -> None:
        try:
            engine.set_adapters(adapters)
        except AssistantError as exc:
            self.post_message(AdaptersApplied(list(self.adapters), str(exc)))
            return
        except Exception as exc:
            log.exception("setting adapters failed")
            self.post_message(
                AdaptersApplied(list(self.adapters), f"internal error: {type(exc).__name__}: {exc}")
            )
            return
        self.post_message(AdaptersApplied(adapters))

    def on_adapters_applied(self, msg: AdaptersApplied) -> None:
        if msg.error:
            self.notify(msg.error, title="LoRA adapter not applied", severity="error", timeout=10)
        else:
            self.adapters = list(msg.adapters)
            if self.adapters:
                names = ", ".join(f"{p.name} ×{s:g}" for p, s in self.adapters)
                self.notify(f"LoRA applied: {names} (base model kept loaded)")
            else:
                self.notify("LoRA adapters removed")
        self._update_status()

    # -- retrieval ------------------------------------------------------------

    @work(thread=True, group="retriever", exit_on_error=False)
    def _retriever_worker(self) -> None:
        try:
            retriever = self.retriever_factory(self.home, self.options.verbose)
        except AssistantError as exc:
            retriever = NoRetriever(f"The knowledge base cannot be used: {exc}")
        except Exception as exc:
            log.exception("opening the knowledge base failed")
            retriever = NoRetriever(f"The knowledge base cannot be used: internal error: {exc}")
        self.post_message(RetrieverReady(retriever))

    async def on_retriever_ready(self, msg: RetrieverReady) -> None:
        self.retriever = msg.retriever
        self.retriever_loading = False
        self._update_status()
        self._show_sources(self.last_sources)
        await self._refresh_placeholder()

    def action_toggle_retrieval(self) -> None:
        if self.retriever_loading:
            self.notify("The knowledge base is still opening…")
            return
        if not self.retriever.available:
            self.notify(self.retriever.hint, title="Retrieval unavailable", severity="warning", timeout=8)
            return
        self.retrieval_on = not self.retrieval_on
        self._save_setting("retrieval", self.retrieval_on)
        self._update_status()
        self._show_sources(self.last_sources)
        if self.retrieval_on:
            self.notify(f"Retrieval on: answers use the top {self.kb_top_k} sources")
        else:
            self.notify("Retrieval off: answers come from the model alone")

    def action_toggle_sources(self) -> None:
        """Ctrl+S: show the sources and move into them; again (from inside them) hides them."""
        panel = self.sources_panel
        inside = panel.has_focus_within
        if panel.display and (inside or not panel.sources):
            self.sources_pref = False
        else:
            self.sources_pref = True
        self._apply_sources_visibility()
        if panel.display and panel.sources:
            panel.query_one("#sources-list").focus()
        elif not panel.display or inside:
            self.prompt.focus()

    def on_sources_panel_selected(self, msg: SourcesPanel.Selected) -> None:
        self.push_screen(SourceScreen(msg.source))

    # -- sending and streaming ------------------------------------------------

    async def on_prompt_input_submitted(self, msg: PromptInput.Submitted) -> None:
        await self.submit(msg.text)

    async def submit(self, text: str) -> None:
        if self.model_state in ("none", "failed"):
            self.prompt.load_text(text)
            self.notify("No model is loaded: see the message above.", severity="warning")
            return
        if self.turn is not None or self.model_state == "loading" or self._after_idle:
            self.queue.append(text)  # the queue bar above the input says so
            self.query_one(QueueBar).show_queue(self.queue, loading=self.model_state == "loading")
            return
        await self.start_turn(text)

    def _ensure_conversation(self) -> ConversationInfo | None:
        if self.store is None:
            return None
        if self.conversation is None:
            try:
                self.conversation = self.store.create(
                    system_prompt=self.system_prompt,
                    model=self.model_path.name if self.model_path else None,
                )
            except AssistantError as exc:
                self._warn_store(exc)
                return None
        return self.conversation

    def _persist(self, role: str, text: str, meta: dict[str, Any] | None = None) -> None:
        conv = self._ensure_conversation()
        if conv is None or self.store is None:
            return
        try:
            self.store.add_message(conv.id, role, text, meta)
            if not conv.title and role == "user":
                self.conversation = self.store.get(conv.id)
                self._update_title()
        except AssistantError as exc:
            self._warn_store(exc)

    async def start_turn(self, text: str) -> None:
        engine = self.engine
        assert engine is not None
        self._persist("user", text)
        self.history.append(Message("user", text))
        log_widget = self.chat_log
        await log_widget.add(ChatMessage("user", text))
        answer = await log_widget.add(ChatMessage("assistant", streaming=True))
        answer.start_stream()
        log_widget.anchor()
        self._turn_ids += 1
        turn = Turn(self._turn_ids, answer, adapters=[(p.name, s) for p, s in self.adapters])
        self.turn = turn
        use_kb = self.retrieval_on and self.retriever.available
        self._show_sources([])
        self._update_status()
        self.refresh_bindings()
        turn.draw = partial(self._frame, turn)
        self._frame_timer = self.set_timer(self._pacer.start(), turn.draw)
        # a blinking cursor repaints the screen twice a second: CPU taken from decoding
        self.prompt.cursor_blink = False
        # Decoding starts once the screen shows the question: laying out the two new messages
        # (~25 ms of UI-thread CPU on the 2-core dev machine) would otherwise run during the first
        # tokens and slow them; after it, the UI costs decoding only its paced frames.
        self.call_after_refresh(
            self._answer_worker,
            partial(
                self._answer,
                turn,
                engine,
                self.system_prompt,
                list(self.history),
                self.sampling,
                self.retriever if use_kb else None,
                self.kb_top_k,
            ),
        )

    @work(thread=True, group="answer", exit_on_error=False)
    def _answer_worker(self, answer: Callable[[], None]) -> None:
        """Waits off the UI thread while the whole answer runs on the engine's compute thread:
        retrieval's embedding and every decode then need no trip between threads (~3% of
        decode speed, engine/compute.py)."""
        compute.run(answer)

    def _answer(
        self,
        turn: Turn,
        engine: Engine,
        system: str | None,
        history: list[Message],
        params: SamplingParams,
        retriever: Retriever | None,
        top_k: int,
    ) -> None:
        try:
            chat = prepare_turn(engine, system, history, params, retriever=retriever, top_k=top_k)
            turn.chat = chat
            stream = chat.start(engine, params, turn.cancel)
            self.post_message(
                AnswerStarted(turn.id, chat.notices, chat.sources, chat.retrieval_ms, chat.prompt_tokens)
            )
            push = turn.buffer.append
            for delta in stream:
                push(delta)
            self.post_message(AnswerFinished(turn.id, stream.result))
        except AssistantError as exc:
            self.post_message(AnswerFinished(turn.id, None, str(exc)))
        except Exception as exc:
            log.exception("generation failed")
            self.post_message(AnswerFinished(turn.id, None, f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            turn.done.set()

    async def _frame(self, turn: Turn) -> None:
        """Draw what the worker has streamed since the last frame, then schedule the next frame."""
        if self.turn is not turn:
            return
        drew = await self._drain_tokens()
        if self.turn is turn and turn.draw is not None:
            wait = self._pacer.next_interval() if drew else self._pacer.waiting()
            self._frame_timer = self.set_timer(wait, turn.draw)

    async def _drain_tokens(self) -> bool:
        """Append what the worker streamed since the last frame; False when there was nothing."""
        turn = self.turn
        if turn is None or not turn.buffer:
            return False
        buf = turn.buffer
        parts = [buf.popleft() for _ in range(len(buf))]
        await turn.widget.append("".join(parts))
        return True

    async def on_answer_started(self, msg: AnswerStarted) -> None:
        turn = self.turn
        if turn is None or turn.id != msg.turn_id:
            return
        turn.notices = list(msg.notices)
        turn.sources = list(msg.sources)
        turn.retrieval_ms = msg.retrieval_ms
        await turn.widget.add_notices(turn.notices)
        self._show_sources(turn.sources)
        if msg.prompt_tokens:
            self._update_status(used=msg.prompt_tokens)

    async def on_answer_finished(self, msg: AnswerFinished) -> None:
        turn = self.turn
        if turn is None or turn.id != msg.turn_id:
            return
        await self._drain_tokens()
        result = msg.result
        chat = turn.chat or ChatTurn([], notices=list(turn.notices))
        done = chat.finish(
            result,
            model=self.model_path.name if self.model_path else None,
            adapters=turn.adapters,
            error=msg.error,
            partial_text=turn.widget.streamed_text,
        )
        text, meta = done.text, done.meta
        await turn.widget.finish(text, meta)
        self.turn = None
        if self._frame_timer is not None:
            self._frame_timer.stop()
            self._frame_timer = None
        self.prompt.cursor_blink = True
        self.history.append(Message("assistant", text))
        self._persist("assistant", text, meta)
        self.last_answer = text
        self.last_sources = turn.sources
        if result is not None:
            self._update_status(used=result.tokens_used, **speed_fields(meta))
        else:
            self._update_status()
            self.notify(msg.error or "the answer failed", title="Answer failed", severity="error", timeout=10)
        self.refresh_bindings()
        await self._run_idle_actions()
        if self.turn is None and self.queue and self.model_state == "ready":
            text = self.queue.pop(0)
            self.query_one(QueueBar).show_queue(self.queue)
            await self.start_turn(text)

    def when_idle(self, action: Callable[[], Any], *, cancel: bool = False) -> None:
        """Run action now, or once the current answer has ended (stopping it first if cancel)."""
        if self.turn is None:
            self.call_next(action)
            return
        self._after_idle.append(action)
        if cancel:
            self.action_stop()

    async def _run_idle_actions(self) -> None:
        while self._after_idle and self.turn is None:
            action = self._after_idle.pop(0)
            result = action()
            if asyncio.iscoroutine(result):
                await result
        if self.turn is None and self.model_state == "ready" and self.queue and not self._after_idle:
            text = self.queue.pop(0)
            self.query_one(QueueBar).show_queue(self.queue)
            await self.start_turn(text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.turn is not None or bool(self.queue)
        return True

    def action_stop(self) -> None:
        """Esc: stop the answer (its prompt too, while read); queued messages go back to the input."""
        if self.turn is not None and not self.turn.cancel.is_set():
            self.turn.cancel.set()
            self._update_status()
        if self.queue:
            prompt = self.prompt
            current = prompt.text
            queued = "\n\n".join(self.queue)
            prompt.load_text(queued + ("\n\n" + current if current.strip() else ""))
            prompt.move_cursor(prompt.document.end)
            n = len(self.queue)
            self.queue.clear()
            self.query_one(QueueBar).show_queue([])
            self.notify(f"{n} queued message{'s' if n != 1 else ''} returned to the input")
        self.prompt.focus()

    # -- token counting -------------------------------------------------------

    def _count_context(self) -> None:
        if self.engine is None:
            return
        messages = conversation_messages(self.system_prompt, self.history)
        if not messages:
            self._update_status(used=0)
            return
        self._count_worker(self.engine, messages, self._epoch)

    @work(thread=True, group="count", exclusive=True, exit_on_error=False)
    def _count_worker(self, engine: Engine, messages: list[Message], epoch: int) -> None:
        try:
            n = engine.count_tokens(messages)
        except Exception as exc:
            log.info("counting tokens failed: %s", exc)
            return
        self.post_message(TokensCounted(epoch, n))

    def on_tokens_counted(self, msg: TokensCounted) -> None:
        if msg.conversation_key == self._epoch and self.turn is None:
            self._update_status(used=msg.tokens)

    # -- conversations --------------------------------------------------------

    def action_new_chat(self) -> None:
        self.when_idle(self._new_chat, cancel=True)

    async def _new_chat(self) -> None:
        self._epoch += 1
        self.conversation = None
        self.history = []
        self.system_prompt = self.options.system
        self.last_answer = ""
        self.last_sources = []
        await self.chat_log.show_placeholder(self._placeholder())
        self._show_sources([])
        self._update_title()
        self._update_status(used=0, ttft_ms=None, tps=None)
        self._count_context()
        self.prompt.focus()

    async def load_conversation(self, conversation_id: int) -> None:
        if self.store is None:
            return
        try:
            info = self.store.get(conversation_id)
            stored = self.store.messages(conversation_id)
        except AssistantError as exc:
            self.notify(str(exc), severity="error")
            return
        self._epoch += 1
        self.conversation = info
        self.system_prompt = info.system_prompt
        self.history = [Message(m.role, m.content) for m in stored if m.role in ("user", "assistant")]
        last = next((m for m in reversed(stored) if m.role == "assistant"), None)
        self.last_answer = last.content if last else ""
        self.last_sources = [Source.from_dict(s) for s in (last.meta.get("sources", []) if last else [])]
        if stored:
            await self.chat_log.load([(m.role, m.content, m.meta) for m in stored])
        else:
            await self.chat_log.show_placeholder(self._placeholder())
        self._show_sources(self.last_sources)
        self._update_title()
        meta = last.meta if last else {}
        self._update_status(used=0, **speed_fields(meta))
        self._count_context()
        if info.model and self.model_path and info.model != self.model_path.name:
            self.notify(f"This chat was with {info.model}; it continues with {self.model_path.name}.")

    def action_open_chats(self) -> None:
        if self.store is None:
            self.notify("Chats are not being saved, so there is nothing to open.", severity="warning")
            return

        def done(cid: int | None) -> None:
            if cid is not None and (self.conversation is None or cid != self.conversation.id):
                self.when_idle(partial(self.load_conversation, cid), cancel=True)

        self.push_screen(
            ConversationsScreen(self.store, self.conversation.id if self.conversation else None), done
        )

    def on_conversations_screen_deleted(self, msg: ConversationsScreen.Deleted) -> None:
        if self.conversation is not None and msg.conversation_id == self.conversation.id:
            self.when_idle(self._new_chat, cancel=True)

    def on_conversations_screen_renamed(self, msg: ConversationsScreen.Renamed) -> None:
        if self.conversation is not None and msg.info.id == self.conversation.id:
            self.conversation = msg.info
            self._update_title()

    def on_conversations_screen_exported(self, msg: ConversationsScreen.Exported) -> None:
        self.export_conversation(msg.conversation_id)

    def action_rename(self) -> None:
        if self.conversation is None or self.store is None:
            self.notify("Nothing to rename yet: send a message first.")
            return
        conv = self.conversation

        def done(title: str | None) -> None:
            if title is None or self.store is None:
                return
            try:
                self.conversation = self.store.rename(conv.id, title)
            except AssistantError as exc:
                self.notify(str(exc), severity="error")
                return
            self._update_title()
            self.notify(f"Renamed to “{self.conversation.title}”")

        self.push_screen(
            PromptDialog(
                "Rename chat", conv.title, validate=lambda v: None if v.strip() else "a title is needed"
            ),
            done,
        )

    def action_delete_chat(self) -> None:
        if self.conversation is None or self.store is None:
            self.notify("Nothing to delete: this chat is not saved yet.")
            return
        conv = self.conversation

        def done(yes: bool | None) -> None:
            if not yes or self.store is None:
                return
            try:
                self.store.delete(conv.id)
            except AssistantError as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify(f"Deleted “{conv.display_title}”")
            self.when_idle(self._new_chat, cancel=True)

        self.push_screen(ConfirmDialog(f"Delete “{conv.display_title}”? This cannot be undone."), done)

    def action_export(self) -> None:
        if self.conversation is None:
            self.notify("Nothing to export yet: send a message first.")
            return
        self.export_conversation(self.conversation.id)

    def export_conversation(self, conversation_id: int) -> None:
        if self.store is None:
            return
        try:
            info = self.store.get(conversation_id)
        except AssistantError as exc:
            self.notify(str(exc), severity="error")
            return
        default = str(Path.cwd() / default_export_name(info))

        def done(value: str | None) -> None:
            if value is None or self.store is None:
                return
            try:
                path = self.store.export(conversation_id, value.strip())
            except AssistantError as exc:
                self.notify(str(exc), title="Export failed", severity="error", timeout=10)
                return
            self.notify(f"Exported to {path}")

        self.push_screen(
            PromptDialog(
                "Export chat to Markdown: file",
                default,
                help="Enter writes the file (replacing it) · Esc cancels",
                validate=lambda v: None if v.strip() else "a file name is needed",
            ),
            done,
        )

    def action_system_prompt(self) -> None:
        def done(text: str | None) -> None:
            if text is None:
                return
            self.system_prompt = text.strip() or None
            if self.store is not None and self.conversation is not None:
                try:
                    self.conversation = self.store.set_system_prompt(self.conversation.id, self.system_prompt)
                except StorageError as exc:
                    self._warn_store(exc)
            self._update_title()
            self._count_context()
            self.notify("System prompt set" if self.system_prompt else "System prompt cleared")

        self.push_screen(SystemPromptScreen(self.system_prompt), done)

    # -- settings -------------------------------------------------------------

    def action_settings(self) -> None:
        def done(settings: Settings | None) -> None:
            if settings is None:
                return
            self.sampling = settings.sampling
            self.kb_top_k = settings.kb_top_k
            saved = {k: v for k, v in settings.sampling.as_dict().items() if k not in ("stop", "ignore_eos")}
            self._save_setting("sampling", saved)
            self._save_setting("kb_top_k", self.kb_top_k)
            s = self.sampling
            self.notify(
                f"temperature {s.temperature:g} · top-p {s.top_p:g} · top-k {s.top_k} · "
                f"max {s.max_tokens} tokens · sources {self.kb_top_k}",
                title="Sampling saved",
            )

        self.push_screen(SettingsScreen(self.sampling, self.kb_top_k), done)

    def _save_setting(self, key: str, value: Any) -> None:
        if self.store is None:
            return
        try:
            self.store.set_setting(key, value)
        except AssistantError as exc:
            self._warn_store(exc)

    # -- copy -----------------------------------------------------------------

    def action_copy_answer(self) -> None:
        if not self.last_answer:
            self.notify("No answer to copy yet.")
            return
        self.copy_to_clipboard(self.last_answer)
        self.notify(f"Copied the last answer ({len(self.last_answer):,} characters)")

    def copy_code(self, code: str, label: str) -> None:
        self.copy_to_clipboard(code)
        self.notify(f"Copied code block {label}")

    # -- help, scrolling, quit ------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def action_scroll_chat(self, pages: int) -> None:
        log_widget = self.chat_log
        if pages < 0:
            if log_widget.scroll_y <= 0 and log_widget.has_earlier:
                await log_widget.show_earlier()
                return
            log_widget.scroll_page_up(animate=False)
        else:
            log_widget.scroll_page_down(animate=False)

    async def action_quit(self) -> None:
        turn = self.turn
        if turn is not None:
            turn.cancel.set()
            await asyncio.to_thread(turn.done.wait, 10)
        self.exit(0)

    def on_unmount(self) -> None:
        # However the app ends, a running answer stops (its worker thread would hold the exit).
        if self.turn is not None:
            self.turn.cancel.set()
        sys.setswitchinterval(self._switch_interval)

    def close_resources(self) -> None:
        """After the app has exited: free the model and close the database."""
        turn = self.turn
        if turn is not None:
            turn.cancel.set()
            if not turn.done.wait(10):
                return  # the model is still in use by a worker; the process exit frees it
        if self.engine is not None:
            with contextlib.suppress(Exception):
                self.engine.close()
            self.engine = None
        with contextlib.suppress(Exception):
            self.retriever.close()
        if self.store is not None and self._own_store:
            with contextlib.suppress(Exception):
                self.store.close()

    # -- command palette ------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield SystemCommand("New chat", "Start a new conversation (Ctrl+N)", self.action_new_chat)
        yield SystemCommand(
            "Open chat…", "List, search, rename and delete saved chats (Ctrl+O)", self.action_open_chats
        )
        yield SystemCommand("Rename chat…", "Give this chat a title (F2)", self.action_rename)
        yield SystemCommand("Delete chat…", "Delete this chat from the history", self.action_delete_chat)
        yield SystemCommand("Export chat to Markdown…", "Write this chat to a .md file", self.action_export)
        yield SystemCommand(
            "System prompt…", "Set or clear this chat's system prompt", self.action_system_prompt
        )
        yield SystemCommand(
            "Sampling parameters…",
            "Temperature, top-p, top-k, min-p, repeat penalty, max tokens, seed, sources top-k",
            self.action_settings,
        )
        yield SystemCommand(
            "Retrieval on/off", "Use the knowledge base (Ctrl+R)", self.action_toggle_retrieval
        )
        yield SystemCommand(
            "Sources panel", "Show or hide the sources panel (Ctrl+S)", self.action_toggle_sources
        )
        current = self.model_path.resolve() if self.model_path else None
        for entry in self.chat_models():
            if current is not None and entry.path.resolve() == current and self.model_state == "ready":
                continue
            info = entry.info
            size = entry.path.stat().st_size / 1e6 if entry.path.exists() else 0
            yield SystemCommand(
                f"Switch model: {entry.path.stem}",
                f"{info.architecture} · {info.quant_type} · {size:,.0f} MB",
                partial(self.switch_model, entry.path),
            )
        for entry in self.adapter_files():
            applied = any(p.resolve() == entry.path.resolve() for p, _ in self.adapters)
            verb = "Change scale of" if applied else "Apply"
            yield SystemCommand(
                f"{verb} LoRA adapter: {entry.path.stem}…",
                "Runtime GGUF LoRA with a scale; the base model stays loaded",
                partial(self.ask_adapter, entry.path),
            )
        for path, scale in self.adapters:
            yield SystemCommand(
                f"Remove LoRA adapter: {path.stem}",
                f"Currently applied ×{scale:g}",
                partial(self.remove_adapter, path),
            )
        if len(self.adapters) > 1:
            yield SystemCommand(
                "Remove all LoRA adapters", "Back to the base model", partial(self.remove_adapter, None)
            )
        yield SystemCommand("Copy last answer", "To the clipboard, via OSC 52 (F3)", self.action_copy_answer)
        for i, block in enumerate(code_blocks(self.last_answer), 1):
            yield SystemCommand(
                f"Copy code block {i}: {block.title}",
                f"{_plural(len(block.code.splitlines()), 'line')}, to the clipboard (OSC 52)",
                partial(self.copy_code, block.code, str(i)),
            )
        yield SystemCommand("Keys", "Every key of the chat (F1)", self.action_help)
        yield SystemCommand("Quit", "Quit the assistant (Ctrl+Q)", self.action_quit)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _quant(engine: Any) -> str:
    try:
        return str(engine.info.quant_type)
    except Exception:
        return "?"


def _check_scale(value: str) -> str | None:
    try:
        scale = float(value)
    except ValueError:
        return f"expected a number, got {value!r}"
    if not -10 <= scale <= 10:
        return f"expected a scale between -10 and 10, got {scale:g}"
    return None


def _replace(params: SamplingParams, **changes: Any) -> SamplingParams:
    from dataclasses import replace

    return replace(params, **changes)


def _tui_logging(home: Home, verbose: bool) -> Path | None:
    """Keep log lines off the screen: to a file with --verbose, else nowhere."""
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    if not verbose:
        root.addHandler(logging.NullHandler())
        return None
    path = home.root / "assistant-tui.log"
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    return path


def run_tui(options: TuiOptions) -> int:
    """Run the chat UI in this terminal; return the exit status."""
    _tui_logging(options.home, options.verbose)
    app = AssistantApp(options)
    try:
        app.run()
    finally:
        app.close_resources()
    return app.return_code or 0
