"""The question file: JSONL, one question a line, in either layout

- MLQA/SQuAD: ``{"id", "question", "answers": {"text": [...]}, "context", "context_id", "title"}``
  (context, context_id and title optional), or
- by hand: ``{"question", "answer"}`` (``answer`` a string or a list of strings; ``id`` optional).

A bad line is a one-line error naming the file and the line.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

LAYOUTS = '{"question", "answers": {"text": [...]}} or {"question", "answer"}'


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    golds: tuple[str, ...]
    context: str | None = None  # the paragraph holding the answer, when known (oracle, --index-contexts)
    context_id: str | None = None  # its id: a retrieved source with this doc_id is the gold one
    title: str = ""
    line: int = 0


def _golds(obj: dict[str, Any], where: str) -> tuple[str, ...]:
    answers = obj.get("answers")
    if isinstance(answers, dict):
        answers = answers.get("text")
    if answers is None:
        answers = obj.get("answer")
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise UsageError(f"{where}: expected the gold answers as {LAYOUTS}")
    golds = tuple(a for a in answers if a.strip())
    if not golds:
        raise UsageError(f"{where}: no gold answer (empty answers)")
    return golds


def _optional_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, int) and key in ("id", "context_id"):
        return str(value)
    raise UsageError(f"{where}: {key} should be a string, got {type(value).__name__}")


def parse_line(text: str, where: str, line: int) -> Question:
    """One question from one JSONL line (``where``: "FILE line N", for the error)."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: expected a JSON object ({LAYOUTS})")
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise UsageError(f'{where}: expected a non-empty "question" ({LAYOUTS})')
    context = _optional_str(obj, "context", where)
    context_id = _optional_str(obj, "context_id", where)
    if context and not context_id:  # contexts without ids are told apart by their text
        context_id = "ctx-" + hashlib.sha256(context.encode()).hexdigest()[:12]
    return Question(
        id=_optional_str(obj, "id", where) or f"line-{line}",
        question=question.strip(),
        golds=_golds(obj, where),
        context=context,
        context_id=context_id,
        title=_optional_str(obj, "title", where) or "",
        line=line,
    )


def load_questions(path: str | Path) -> list[Question]:
    """Every question of the file, in file order; duplicate ids are an error (results are keyed by id)."""
    p = Path(path)
    try:
        content = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{p}: no such question file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{p}: not UTF-8 text (byte {exc.start}); expected JSONL") from None
    except OSError as exc:
        raise UsageError(f"{p}: cannot read the question file ({exc.strerror})") from exc
    out: list[Question] = []
    seen: dict[str, int] = {}
    for n, text in enumerate(content.splitlines(), start=1):
        if not text.strip():
            continue
        q = parse_line(text, f"{p} line {n}", n)
        if q.id in seen:
            raise UsageError(f"{p} line {n}: duplicate id {q.id!r} (first on line {seen[q.id]})")
        seen[q.id] = n
        out.append(q)
    if not out:
        raise UsageError(f"{p}: no questions (expected JSONL, one {LAYOUTS} a line)")
    return out


def select(questions: list[Question], *, limit: int | None, sample: int | None, seed: int) -> list[Question]:
    """The first ``limit`` questions, or ``sample`` drawn at random with ``seed`` (kept in file order)."""
    if limit is not None and sample is not None:
        raise UsageError("--limit and --sample both choose the questions; give one")
    if sample is not None:
        if sample >= len(questions):
            return list(questions)
        picked = set(random.Random(seed).sample(range(len(questions)), sample))
        return [q for i, q in enumerate(questions) if i in picked]
    return list(questions[:limit]) if limit is not None else list(questions)


def contexts(questions: list[Question]) -> list[Question]:
    """One question per distinct context, in order of first appearance (the documents to index)."""
    seen: set[str] = set()
    out = []
    for q in questions:
        if q.context and q.context_id and q.context_id not in seen:
            seen.add(q.context_id)
            out.append(q)
    return out
