"""Run questions through the setups: every answer is one `assistant ask` turn (assistant/turn.py).

Setups: ``closed`` (no retrieval), ``rag`` (a knowledge base) and ``oracle`` (the question's own
context as the only source, through the same grounding format), for each variant: a model (a name,
a .gguf or a build recipe) with or without runtime LoRA adapters. Each model is loaded once; every
answer starts from an empty KV cache, so its time to first token is what a new `ask` process sees.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AssistantError, UsageError
from ..home import Home
from ..knowledge.grounding import GroundedPrompt, pack
from ..message import Message
from ..turn import prepare_turn
from . import metrics
from .questions import Question, contexts

if TYPE_CHECKING:
    from ..engine import ChatModel, SamplingParams
    from ..knowledge.retriever import Retriever

log = logging.getLogger(__name__)

SETUPS = ("closed", "rag", "oracle")
# --style short: extractive sets score the answer's words, so a sentence around the answer costs F1
SHORT_SYSTEM = (
    "Answer with the shortest phrase that answers the question (a name, a number, a date or a few "
    "words), not a sentence."
)


@dataclass(frozen=True)
class Variant:
    """A model and the runtime adapters applied to it: one column per setup."""

    name: str
    model: Path
    adapters: tuple[tuple[Path, float], ...] = ()
    cost_s: float | None = None  # cost to update: build (lock) and training (training.json) seconds


def parse_setups(text: str) -> list[str]:
    """``closed,rag,oracle`` -> the setups in the order given, each once."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SETUPS]
    if bad or not names:
        raise UsageError(f"--setups {text!r}: expected a comma-separated list of {', '.join(SETUPS)}")
    return list(dict.fromkeys(names))


def training_seconds(folder: Path) -> float | None:
    """The training time `assistant finetune` recorded in FOLDER/training.json, None without one
    (for locks written before the build copied the record in)."""
    from convert.build import training_record

    try:
        seconds = training_record(folder).get("training", {}).get("seconds")
    except AssistantError as exc:
        log.warning("training time in %s unknown: %s", folder, exc)
        return None
    return float(seconds) if isinstance(seconds, (int, float)) else None


def build_cost(gguf: Path) -> float | None:
    """Seconds to make this model again: its build (the lock `assistant build` wrote beside it) plus
    the training of the adapters the build merged; None without a readable lock."""
    from convert.lock import lock_path_for, read_lock

    lock = lock_path_for(gguf)
    if not lock.is_file():
        return None
    try:
        data = read_lock(lock)
    except AssistantError as exc:
        log.warning("cost to update of %s unknown: %s", gguf.name, exc)
        return None
    seconds = data.get("seconds")
    parts = [float(seconds) if isinstance(seconds, (int, float)) else None]
    for a in data["inputs"].get("adapters", []):
        if not isinstance(a, dict):
            continue
        trained = (a.get("training") or {}).get("seconds")  # the lock's copy of training.json
        if isinstance(trained, (int, float)):
            parts.append(float(trained))
        elif a.get("path"):
            path = Path(a["path"])
            parts.append(training_seconds(path if path.is_dir() else path.parent))
    return _cost(parts)


def resolve_model_spec(spec: str | None, home: Home) -> Path:
    """A model name, a .gguf path, or a build recipe (its output, which must be built)."""
    from ..models.catalog import resolve_model

    if spec is not None and spec.endswith(".toml"):
        from convert.recipe import load_recipe

        out = load_recipe(spec, home.root).output
        if not out.is_file():
            raise UsageError(f"--model {spec}: {out} is not built yet; run `assistant build {spec}` first")
        return out
    return resolve_model(spec, home)


def resolve_adapter(spec: str, home: Home) -> tuple[Path, float]:
    """``LORA.gguf[@SCALE]``: a path, or a file in the home's adapters/ folder."""
    from convert.peft import parse_adapter_arg

    name, scale = parse_adapter_arg(spec)
    path = Path(name).expanduser()
    for candidate in (path, home.adapters_dir / name, home.adapters_dir / f"{name}.gguf"):
        if candidate.is_file():
            return candidate, scale
    raise UsageError(f"--adapter {spec}: no such file ({path}, nor in {home.adapters_dir})")


def _cost(parts: Sequence[float | None]) -> float | None:
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def make_variants(home: Home, models: Sequence[str], adapters: Sequence[str]) -> list[Variant]:
    """Each model as it is, then with each adapter (the fine-tuned columns)."""
    out = []
    loras = [resolve_adapter(a, home) for a in adapters]
    specs: list[str | None] = [*models] if models else [None]
    for spec in specs:
        path = resolve_model_spec(spec, home)
        out.append(Variant(path.stem, path, (), build_cost(path)))
        for lora, scale in loras:
            tag = lora.stem + (f"@{scale:g}" if scale != 1.0 else "")
            out.append(Variant(f"{path.stem}+{tag}", path, ((lora, scale),), training_seconds(lora.parent)))
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        raise UsageError(f"--model/--adapter: the same model given twice ({', '.join(names)})")
    return out


class OracleRetriever:
    """The question's own context as its only source, numbered, framed and focused as retrieval's
    sources are (``source_tokens``): rag and oracle then differ only in what retrieval found."""

    available = True
    hint = ""
    description = "the gold context"

    def __init__(self, question: Question, source_tokens: int | None = None) -> None:
        self.question = question
        self.source_tokens = source_tokens

    def ground(
        self,
        messages: Sequence[Message],
        top_k: int,
        *,
        count_tokens: Callable[[str], int],
        budget_tokens: int,
        search_query: str | None = None,
    ) -> GroundedPrompt:
        from ..knowledge.search import Hit

        q = self.question
        text = q.context or ""
        hit = Hit(
            chunk_id=0, document_id=0, doc_key=q.context_id or q.id, uri=q.context_id or q.id, title=q.title,
            kind="jsonl", collection="", ordinal=0, text=text, heading="", char_start=0, char_end=len(text),
            line_start=None, line_end=None, page_start=None, page_end=None, n_tokens=0, score=1.0,
        )  # fmt: skip
        system = messages[0].content if messages and messages[0].role == "system" else None
        return pack(
            messages[-1].content, [hit], count_tokens=count_tokens, budget_tokens=budget_tokens, system=system,
            source_tokens=self.source_tokens,
        )  # fmt: skip

    def close(self) -> None:
        pass


def contexts_key(questions: Sequence[Question]) -> str:
    """What identifies a context knowledge base: its documents, chunking and embedding model."""
    from ..knowledge.chunk import DEFAULT_MAX_TOKENS, DEFAULT_OVERLAP

    h = hashlib.sha256(f"{DEFAULT_MAX_TOKENS}/{DEFAULT_OVERLAP}".encode())
    for q in contexts(list(questions)):
        h.update(json.dumps([q.context_id, q.title, q.context]).encode())
    return h.hexdigest()[:16]


@contextmanager
def context_retriever(
    home: Home, questions: Sequence[Question], *, verbose: bool = False, source_tokens: int | None = None
) -> Iterator[Retriever]:
    """A knowledge base of the file's own contexts (one document per context_id, with its title),
    built by the real ingest in the home's eval/ folder once per set of contexts and reused."""
    from ..knowledge.ingest import Ingestor
    from ..knowledge.kb import KnowledgeBase
    from ..knowledge.retriever import KnowledgeRetriever

    docs = contexts(list(questions))
    if not docs:
        raise UsageError('--index-contexts: the question file has no contexts (a "context" field a line)')
    folder = home.root / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    key = contexts_key(questions)
    jsonl, db = folder / f"contexts-{key}.jsonl", folder / f"contexts-{key}.db"
    if not jsonl.is_file():
        from ..io import atomic_write_text

        lines = (
            json.dumps({"_id": q.context_id, "title": q.title, "text": q.context}, ensure_ascii=False)
            for q in docs
        )
        atomic_write_text(jsonl, "\n".join(lines) + "\n")
    kb = KnowledgeBase.open(home, db, create=True, readonly=False, need_vectors=True, verbose=verbose)
    try:
        assert kb.embedder is not None  # need_vectors: opening fails without the embedding model
        report = Ingestor(kb.store, kb.embedder).add([jsonl])
        log.info(
            "contexts knowledge base %s: %d documents written in %.1f s", db, report.documents, report.seconds
        )
        yield KnowledgeRetriever(kb, kb.store.chunk_count(), source_tokens=source_tokens)
    finally:
        kb.close()


def rss_mb() -> float:
    """The resident memory now (Linux), else the process's peak so far."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class EvalPlan:
    """What to run: the questions through each setup of each variant."""

    questions: list[Question]
    setups: list[str]
    variants: list[Variant]
    params: SamplingParams
    k: int = 5
    source_tokens: int | None = None  # rag: each source focused within this many tokens (None: whole chunks)
    style: str = "normal"
    n_ctx: int | None = None
    names: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        several = len(self.variants) > 1
        for v in self.variants:
            for s in self.setups:
                self.names[(s, v.name)] = f"{s}@{v.name}" if several else s

    @property
    def system(self) -> str | None:
        return SHORT_SYSTEM if self.style == "short" else None

    def setup_names(self) -> list[str]:
        return list(self.names.values())

    def pending(self, done: set[tuple[str, str]]) -> int:
        return sum((name, q.id) not in done for name in self.names.values() for q in self.questions)


def check_plan(plan: EvalPlan, source: str) -> None:
    """Refuse what cannot run before any model is loaded."""
    if "oracle" in plan.setups:
        missing = next((q for q in plan.questions if not q.context), None)
        if missing is not None:
            raise UsageError(
                f'{source} line {missing.line}: the oracle setup needs each question\'s "context"; '
                "leave oracle out of --setups"
            )


def score(q: Question, setup: str, sources: Sequence[Any], result: Any) -> dict[str, Any]:
    """The metrics and costs of one answer (``result``: the engine's ChatResult)."""
    text, timings = result.text, result.timings
    grounded = setup != "closed"
    doc_ids = [s.doc_id for s in sources]
    recall = None
    if setup == "rag" and q.context_id:
        recall = float(q.context_id in doc_ids)
    return {
        "exact": metrics.exact_match(text, q.golds),
        "f1": round(metrics.token_f1(text, q.golds), 4),
        "contains": metrics.contains_gold(text, q.golds),
        "recall": recall,
        "citations_valid": metrics.citations_valid(text, len(sources)) if grounded else None,
        "citations_correct": metrics.citations_correct(text, [s.text for s in sources], q.golds)
        if grounded
        else None,
        "refusal": metrics.is_refusal(text),
        "ttft_ms": round(timings.ttft_ms, 1),
        "prefill_tps": round(timings.prefill_tps, 1),
        "decode_tps": round(timings.decode_tps, 1),
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "finish_reason": result.finish_reason,
        "sources": doc_ids,
    }


def answer_one(
    engine: ChatModel, plan: EvalPlan, setup: str, q: Question, kb: Retriever | None
) -> dict[str, Any]:
    """One question through one setup, as `assistant ask` answers it (plus scores and timings)."""
    oracle = OracleRetriever(q, plan.source_tokens)
    retriever: Retriever | None = {"closed": None, "rag": kb, "oracle": oracle}[setup]
    engine.forget_prompt()
    t0 = time.perf_counter()
    turn = prepare_turn(
        engine, plan.system, [Message("user", q.question)], plan.params, retriever=retriever, top_k=plan.k
    )
    stream = turn.start(engine, plan.params, threading.Event())
    stream.text()
    result = stream.result
    assert result is not None
    done = turn.finish(result, model=engine.path.name)
    row = {"answer": done.text, **score(q, setup, turn.sources, result)}
    row["retrieval_ms"] = (
        round(turn.retrieval_ms, 1) if setup == "rag" and turn.retrieval_ms is not None else None
    )
    row["answer_ms"] = round((time.perf_counter() - t0) * 1000, 1)  # retrieval, prompt and answer
    row["rss_mb"] = round(rss_mb(), 1)
    return row


def run(
    plan: EvalPlan,
    *,
    done: set[tuple[str, str]],
    on_row: Callable[[dict[str, Any]], None],
    kb: Retriever | None = None,
    verbose: bool = False,
) -> None:
    """Answer every (setup, question) not in ``done``; ``on_row`` gets each row as it is finished.

    Variants of one model share its load (adapters are swapped at runtime). The setups take turns
    question by question, so a change in the machine's load falls on all of them alike."""
    from ..engine import ChatModel

    by_model: dict[Path, list[Variant]] = {}
    for v in plan.variants:
        by_model.setdefault(v.model, []).append(v)
    for path, variants in by_model.items():
        todo = [v for v in variants if any(
            (plan.names[(s, v.name)], q.id) not in done for s in plan.setups for q in plan.questions
        )]  # fmt: skip
        if not todo:
            continue
        engine = ChatModel(path, n_ctx=plan.n_ctx, verbose=verbose)
        try:
            for v in todo:
                if engine.adapters != list(v.adapters):
                    engine.set_adapters(list(v.adapters))
                for q in plan.questions:
                    for setup in plan.setups:
                        name = plan.names[(setup, v.name)]
                        if (name, q.id) not in done:
                            on_row(
                                _row(name, v, setup, plan.style, q, answer_one(engine, plan, setup, q, kb))
                            )
        finally:
            engine.close()


def _row(
    name: str, v: Variant, setup: str, style: str, q: Question, answer: dict[str, Any]
) -> dict[str, Any]:
    return {"setup": name, "model": v.name, "kind": setup, "style": style, "id": q.id, "question": q.question,
            "gold": list(q.golds), **answer}  # fmt: skip


def env_note() -> str:
    """The machine, for the report: CPUs and load."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return f"{os.cpu_count()} CPUs, load {load:.1f}"
