"""The chat engine: load a GGUF, fit the conversation, stream the answer.

Library API, no UI imports. One ``ChatModel`` per loaded model; its KV cache is
reused across turns (only the new tail of the prompt is evaluated), LoRA
adapters can be swapped without reloading, and generation can be cancelled
between any two tokens from another thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ChatTemplateError, ModelError, UsageError
from ..message import Message
from ..models.archs import EMBEDDING_ARCHITECTURES, LLAMA_CPP_ARCHITECTURES, NON_TEXT_ARCHITECTURES
from ..models.gguf_info import GGUFInfo, check_hparams, read_gguf_info
from .context import ContextReport, fit_messages
from .lora import check_adapter_fits
from .sampling import SamplingParams
from .stream import TextStream
from .template import ChatTemplate, resolve_template
from .threads import ThreadTuner, max_threads, tuner_for_answer

log = logging.getLogger(__name__)

DEFAULT_CTX = 4096
SYSTEM_PROMPT_KEY = "edge_assistant.system_prompt"  # written by build recipes (convert/recipe.py)
MIN_CTX = 128
_C_SPACE = " \t\n\v\f\r"  # what C's isspace() strips around LSTRIP/RSTRIP tokens


@dataclass
class Timings:
    load_ms: float = 0.0
    ttft_ms: float = 0.0  # call to first token, template + tokenize + prefill included
    prefill_ms: float = 0.0
    prefill_tokens: int = 0  # tokens actually evaluated (after cache reuse)
    decode_ms: float = 0.0  # first token to last token
    decode_tokens: int = 0
    threads: list[int] = field(default_factory=list)  # llama.cpp threads, in the order they ran

    @property
    def prefill_tps(self) -> float:
        return self.prefill_tokens / (self.prefill_ms / 1000) if self.prefill_ms > 0 else 0.0

    @property
    def decode_tps(self) -> float:
        return self.decode_tokens / (self.decode_ms / 1000) if self.decode_ms > 0 else 0.0

    @property
    def threads_ran(self) -> int | list[int] | None:
        """The thread count, or the counts in order when it changed during the answer."""
        return (self.threads[0] if len(self.threads) == 1 else list(self.threads)) if self.threads else None

    def as_dict(self) -> dict[str, float | int | list[int] | None]:
        return {
            "load_ms": round(self.load_ms, 1),
            "ttft_ms": round(self.ttft_ms, 1),
            "prefill_tps": round(self.prefill_tps, 1),
            "decode_tps": round(self.decode_tps, 1),
            "threads": self.threads_ran,
        }


@dataclass
class ChatResult:
    text: str
    finish_reason: str  # "stop" (end of turn or stop string), "length", "cancelled"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    context: ContextReport
    timings: Timings
    seed: int

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    @property
    def tokens_used(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChatStream:
    """Iterate for text deltas; ``result`` is set when the iteration ends.

    ``context`` (how the conversation was fitted) and ``messages`` (what is
    actually sent, after trimming) are known before the first token.
    """

    def __init__(self, gen: Iterator[str], context: ContextReport, messages: list[Message]) -> None:
        self._gen = gen
        self.context = context
        self.messages = messages
        self.result: ChatResult | None = None

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._gen)

    def text(self) -> str:
        """Consume the stream and return the whole answer."""
        for _ in self:
            pass
        assert self.result is not None
        return self.result.text


def validate_chat_model(path: Path) -> GGUFInfo:
    """Check a GGUF is a chat model llama.cpp can run, without loading it."""
    info = read_gguf_info(path)
    arch = info.architecture
    if info.kind == "adapter":
        raise ModelError(
            f"{path.name} is a LoRA adapter (general.type=adapter), not a model; "
            "load a base model and apply it with --lora"
        )
    if arch not in LLAMA_CPP_ARCHITECTURES:
        raise ModelError(
            f"{path.name} has architecture {arch!r}, which this llama.cpp does not know; "
            "use a GGUF of a supported architecture (llama, qwen2, gemma, phi3, ...)"
        )
    if arch in EMBEDDING_ARCHITECTURES:
        raise ModelError(
            f"{path.name} is an embedding model ({arch}), it cannot chat; pick a chat model "
            "(`assistant models` lists them) and use this one for the knowledge base"
        )
    if arch in NON_TEXT_ARCHITECTURES:
        raise ModelError(f"{path.name} ({arch}) is not a text generation model; pick a chat model")
    check_hparams(info)
    return info


class ChatModel:
    """A chat GGUF loaded for inference."""

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        chat_format: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.path = Path(path)
        self.info = validate_chat_model(self.path)
        trained = self.info.context_length or DEFAULT_CTX
        if n_ctx is None:
            n_ctx = min(DEFAULT_CTX, trained)
        if n_ctx < MIN_CTX:
            raise UsageError(f"context size {n_ctx} is too small; use at least {MIN_CTX} tokens")
        if n_ctx > trained:
            raise UsageError(
                f"context size {n_ctx:,} exceeds the {trained:,} tokens {self.path.name} was trained for; "
                f"use --ctx {trained} or less"
            )
        if n_threads is not None and n_threads < 1:
            raise UsageError(f"threads must be >= 1, got {n_threads}")
        gguf_template = self.info.chat_template
        # Resolve the template before loading weights: a model without one fails fast.
        self.template: ChatTemplate = resolve_template(
            gguf_template=gguf_template,
            chat_format=chat_format,
            model_path=self.path,
            bos_token="",
            eos_token="",
        )
        # None: decided before each answer from the CPU free then, and adapted while it runs
        self.pinned_threads = n_threads
        self.n_threads = n_threads or max_threads()
        # A default system prompt baked in by a build recipe (used when the caller gives none).
        baked = self.info.get(SYSTEM_PROMPT_KEY)
        self.default_system: str | None = baked if isinstance(baked, str) and baked.strip() else None

        from . import backend  # heavy: llama_cpp

        backend.init_backend(verbose)
        t0 = time.perf_counter()
        self._model = backend.LlamaModel(self.path)
        self._ctx = backend.LlamaContext(
            self._model, backend.ContextConfig(n_ctx=n_ctx, n_threads=self.n_threads)
        )
        self.load_ms = (time.perf_counter() - t0) * 1000
        self.n_ctx = self._ctx.n_ctx
        self.template.bos_token = self._token_text(self._model.bos)
        self.template.eos_token = self._token_text(self._model.eos)
        self._lock = threading.Lock()
        self._markup_cache: dict[str, list[tuple[int, int, int]]] = {}
        self.adapters: list[tuple[Path, float]] = []
        log.debug(
            "loaded %s in %.0f ms (ctx %d, %d threads)", self.path, self.load_ms, self.n_ctx, self.n_threads
        )

    # -- tokens ---------------------------------------------------------------

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._model.piece(token, special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str) -> list[int]:
        """Tokens of plain text (no special tokens parsed, no BOS)."""
        return self._model.tokenize(text, add_special=False, parse_special=False)

    def count_text(self, text: str) -> int:
        """Tokens of plain text: what a message or a source costs in the prompt."""
        return len(self.tokenize(text))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._model.detokenize(tokens)

    def render(self, messages: Sequence[Message]) -> str:
        return self.template.render([m.as_dict() for m in messages], add_generation_prompt=True)

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The prompt's tokens: special tokens come only from the template's markup.

        The text is cut at the control tokens llama.cpp finds in each run of markup and every
        run between two of them is tokenized as plain text, contents included: on ordinary
        text this is token for token what tokenizing the whole render with parse_special gives
        (so cached turns keep their tokens), and ``<|im_start|>`` typed by a user stays text.
        """
        model = self._model
        runs: list[str | int] = []
        text: list[str] = []
        for part in self.template.parts([m.as_dict() for m in messages]):
            if part.content:
                text.append(part.text)
                continue
            pos = 0
            for start, end, token in self._control_tokens(part.text):
                text.append(part.text[pos:start])
                runs.extend(("".join(text), token))
                text, pos = [], end
            text.append(part.text[pos:])
        runs.append("".join(text))
        tokens = [model.bos] if model.add_bos and model.bos >= 0 else []
        for i, run in enumerate(runs):
            if isinstance(run, int):
                tokens.append(run)
                continue
            lstrip, rstrip = self._strips(runs, i)
            if rstrip:
                run = run.rstrip(_C_SPACE)
            if lstrip:
                run = run.lstrip(_C_SPACE)
            if run:
                tokens.extend(model.tokenize(run, add_special=False, parse_special=False))
        if len(tokens) >= 2 and tokens[0] == model.bos and tokens[1] == model.bos:
            tokens = tokens[1:]  # the template wrote BOS itself and the model adds one
        if not tokens:  # llama.cpp would sample from no logits and abort the process
            raise ChatTemplateError(
                f"{self.template.label} renders an empty prompt for this conversation; "
                "pass --chat-format NAME or FILE.jinja to use another one"
            )
        return tokens

    def _control_tokens(self, markup: str) -> list[tuple[int, int, int]]:
        """(start, end, token) of each control token llama.cpp finds in a run of markup."""
        found = self._markup_cache.get(markup)
        if found is None:
            found, pos = [], 0
            for token in self._model.tokenize(markup, add_special=False, parse_special=True):
                special = self._model.special(token)
                start = markup.find(special.text, pos) if special else -1
                if special and start >= 0:
                    pos = start + len(special.text)
                    found.append((start, pos, token))
            if len(self._markup_cache) > 512:
                self._markup_cache.clear()
            self._markup_cache[markup] = found
        return found

    def _strips(self, runs: list[str | int], i: int) -> tuple[bool, bool]:
        """Whether text run i loses its leading / trailing whitespace (llama.cpp strips it next
        to some special tokens)."""
        before = runs[i - 1] if i > 0 else None
        after = runs[i + 1] if i + 1 < len(runs) else None
        left = self._model.special(before) if isinstance(before, int) else None
        right = self._model.special(after) if isinstance(after, int) else None
        return bool(left and left.rstrip), bool(right and right.lstrip)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.prompt_tokens(messages))

    def fit(self, messages: Sequence[Message], max_tokens: int) -> tuple[list[Message], ContextReport]:
        """Fit messages into the window, reserving room for the answer."""
        reserve = min(max_tokens, self.n_ctx // 2)
        return fit_messages(
            messages,
            count=self.count_tokens,
            tokenize=self.tokenize,
            detokenize=self.detokenize,
            window=self.n_ctx,
            budget=self.n_ctx - reserve,
        )

    # -- adapters -------------------------------------------------------------

    def set_adapters(self, adapters: Sequence[tuple[str | Path, float]]) -> None:
        """Apply GGUF LoRA adapters (path, scale) at runtime; [] removes them."""
        resolved = []
        for p, scale in adapters:
            path = Path(p)
            if not path.is_file():
                raise ModelError(f"LoRA adapter not found: {path}")
            info = read_gguf_info(path)
            if info.kind != "adapter":
                raise ModelError(f"{path.name} is not a LoRA adapter (general.type={info.kind})")
            check_adapter_fits(info, self.info)  # llama.cpp aborts on some misfits
            resolved.append((path, float(scale)))
        with self._lock:
            ptrs = [(self._model.load_adapter(p), s) for p, s in resolved]
            self._ctx.set_adapters(ptrs)
            self.adapters = resolved

    # -- generation -----------------------------------------------------------

    def chat(
        self,
        messages: Sequence[Message],
        params: SamplingParams | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> ChatStream:
        """Stream an answer to the conversation (the last message is the user's)."""
        params = params or SamplingParams()
        if not messages:
            raise UsageError("nothing to answer: the conversation is empty")
        if self.default_system and messages[0].role != "system":
            messages = [Message("system", self.default_system), *messages]
        t_start = time.perf_counter()
        fitted, report = self.fit(messages, params.max_tokens)
        stream = ChatStream(iter(()), report, fitted)
        stream._gen = self._generate(stream, fitted, params, cancel, t_start)
        return stream

    def _generate(
        self,
        stream: ChatStream,
        messages: list[Message],
        params: SamplingParams,
        cancel: threading.Event | None,
        t_start: float,
    ) -> Iterator[str]:
        from . import backend

        with self._lock:
            ctx, model = self._ctx, self._model
            tokens = self.prompt_tokens(messages)
            limit = self.n_ctx - 1
            if len(tokens) > limit:  # last resort; fit() keeps us from getting here
                tokens = tokens[-limit:]
            # reuse the cached prefix; always evaluate at least one token for fresh logits
            common = 0
            for a, b in zip(ctx.cached, tokens, strict=False):
                if a != b:
                    break
                common += 1
            common = min(common, len(tokens) - 1)
            ctx.keep_prefix(common)
            cached = len(ctx.cached)
            seed = params.resolved_seed()
            sampler = backend.Sampler(
                model,
                temperature=params.temperature,
                top_k=params.top_k,
                top_p=params.top_p,
                min_p=params.min_p,
                repeat_penalty=params.repeat_penalty,
                repeat_last_n=params.repeat_last_n,
                seed=seed,
            )
            timings = Timings(load_ms=self.load_ms)
            text = TextStream(params.stop)
            finish = "stop"
            n_out = 0
            try:
                tuner = self._thread_tuner()
                ctx.set_threads(tuner.current if tuner else self.n_threads)
                t0 = time.perf_counter()
                ctx.decode(tokens[cached:], cancel=cancel)  # a stop ends a long prompt too (then no tokens)
                t1 = time.perf_counter()
                timings.prefill_ms = (t1 - t0) * 1000
                timings.prefill_tokens = len(ctx.cached) - cached
                t_first = t_last = t1
                ran = timings.threads = [ctx.n_threads]
                n_samples = 0
                pending: int | None = None  # the last token, decoded together with the next sample
                while True:
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"
                        break
                    if ran[-1] != ctx.n_threads:
                        ran.append(ctx.n_threads)
                    t_step = time.perf_counter()
                    token = sampler.sample(ctx) if pending is None else ctx.step(pending, sampler)
                    t_last = time.perf_counter()
                    if tuner is not None and pending is not None:  # the step's time alone
                        ctx.set_threads(tuner.observe(t_last - t_step))
                    n_samples += 1
                    if n_samples == 1:
                        t_first = t_last
                        timings.ttft_ms = (t_first - t_start) * 1000
                    if model.is_eog(token) and not params.ignore_eos:
                        break
                    n_out += 1
                    delta = text.feed(model.piece(token))
                    if delta:
                        yield delta
                    if text.stopped:
                        break
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"
                        break
                    if n_out >= params.max_tokens or len(ctx.cached) >= limit:
                        finish = "length"
                        break
                    pending = token
                # each cycle between two samples is one decode + one sample
                if n_samples > 1:
                    timings.decode_ms = (t_last - t_first) * 1000
                    timings.decode_tokens = n_samples - 1
            finally:
                sampler.close()
            tail = text.flush()
            if tail:
                yield tail
            stream.result = ChatResult(
                text=text.text,
                finish_reason=finish,
                prompt_tokens=len(tokens),
                completion_tokens=n_out,
                cached_tokens=cached,
                context=stream.context,
                timings=timings,
                seed=seed,
            )

    def _thread_tuner(self) -> ThreadTuner | None:
        """None when --threads pins the count; else the choice for this answer."""
        return None if self.pinned_threads else tuner_for_answer()

    def forget_prompt(self) -> None:
        """Drop the cached prompt: the next answer reads all of its prompt, as a new `assistant ask`
        process does (`assistant eval` times every answer that way, whatever came before it)."""
        with self._lock:
            self._ctx.clear()

    def close(self) -> None:
        self._ctx.close()
        self._model.close()

    def __enter__(self) -> ChatModel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class Conversation:
    """A system prompt and turns, for callers that keep a chat in memory."""

    system: str | None = None
    messages: list[Message] = field(default_factory=list)

    def as_messages(self) -> list[Message]:
        head = [Message("system", self.system)] if self.system else []
        return head + self.messages
