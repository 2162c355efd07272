"""Training data: documents and JSONL chats/QA turned into token windows, with a validation split.

Documents (txt, md, html, pdf, ... through the knowledge base's extractors) are continued
training on the user's own text. JSONL lines are either ``{"messages": [{"role", "content"}...]}``
or ``{"question", "context", "answer"}``; both are rendered with the model's chat template, so
the model learns the task in the layout it sees at inference. Every example is tokenized on its
own (BOS as the model wants it). Documents are one stream cut into windows of ``window + 1``
tokens (inputs plus the next-token labels: llama.cpp labels every next token, there is no loss
mask). Chat examples are packed whole into windows instead (``pack_examples``): an example cut
across two windows would teach its answer in a window that no longer holds its sources.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..io import sha256_file

QA_KEYS = ("question", "context", "answer")


@dataclass
class Dataset:
    train: np.ndarray  # (n_train, window + 1) int32
    val: np.ndarray  # (n_val, window + 1) int32
    tokens: int  # tokens in the stream before it was cut
    examples: int
    files: list[dict[str, Any]]  # path, kind, sha256, examples

    @property
    def train_tokens(self) -> int:
        return int(self.train.shape[0] * (self.train.shape[1] - 1))


def qa_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """A {question, context, answer} record as the grounded chat turn it teaches."""
    user = f"Sources:\n[1] {record['context']}\n\nQuestion: {record['question']}"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": str(record["answer"])}]


def _messages(record: Any, where: str) -> list[dict[str, str]]:
    if isinstance(record, dict) and "messages" in record:
        msgs = record["messages"]
        if (
            not isinstance(msgs, list)
            or not msgs
            or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in msgs
            )
        ):
            raise UsageError(f"{where}: 'messages' must be a non-empty list of {{role, content}} strings")
        return [{"role": m["role"], "content": m["content"]} for m in msgs]
    if isinstance(record, dict) and all(isinstance(record.get(k), str) and record[k] for k in QA_KEYS):
        return qa_messages(record)
    got = sorted(record) if isinstance(record, dict) else type(record).__name__
    raise UsageError(
        f"{where}: expected 'messages' or non-empty 'question', 'context', 'answer' strings, got {got}"
    )


def read_chat_jsonl(path: Path, render: Callable[[list[dict[str, str]]], str]) -> Iterator[str]:
    """Each line of a JSONL file rendered with the chat template (one-line errors name file and line)."""
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
            yield render(_messages(record, f"{path}:{n}"))


def read_document(path: Path) -> str:
    """A document's text through the knowledge base's extractors."""
    from ..knowledge.extract import (
        extract_html,
        extract_man,
        extract_pdf,
        extract_text_file,
        kind_of,
        sniff_kind,
    )

    kind = kind_of(path)
    if kind in (None, "txt"):  # a name that does not settle it: man page, text, or binary (refused)
        kind = sniff_kind(path, kind)
    max_bytes = 64 << 20
    if kind == "pdf":
        ex = extract_pdf(path)
    elif kind == "html":
        ex = extract_html(path, max_bytes)
    elif kind == "man":
        ex = extract_man(path, max_bytes)
    else:
        ex = extract_text_file(path, kind)
    return "".join(s.text for s in ex.sections)


def load(
    paths: list[Path],
    *,
    window: int,
    val_split: float,
    tokenize: Callable[[str], list[int]],
    render: Callable[[list[dict[str, str]]], str],
) -> Dataset:
    """Read, render, tokenize and cut the data into windows; one-line errors for anything unusable."""
    if not paths:
        raise UsageError("no training data: give --data PATH (documents or JSONL)")
    if not 0.0 <= val_split < 1.0:
        raise UsageError(f"--val-split must be in [0, 1), got {val_split}")
    stream: list[int] = []
    chats: list[list[int]] = []
    files = []
    examples = 0
    for path in paths:
        if not path.is_file():
            raise UsageError(f"training data {path} is not a file")
        texts: list[str]
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            kind, texts = "chat", list(read_chat_jsonl(path, render))
        else:
            kind, texts = "document", [read_document(path)]
        texts = [t for t in texts if t.strip()]
        if not texts:
            raise UsageError(f"training data {path} is empty (no text to train on)")
        for text in texts:
            if kind == "chat":
                chats.append(tokenize(text))
            else:
                stream.extend(tokenize(text))
        examples += len(texts)
        files.append({"path": str(path), "kind": kind, "sha256": sha256_file(path), "examples": len(texts)})
    windows = np.concatenate([cut(stream, window), pack_examples(chats, window)])
    n = len(windows)
    tokens = len(stream) + sum(map(len, chats))
    if n < 1 or tokens <= window:  # (packed chats would otherwise fill a window by repeating themselves)
        raise UsageError(
            f"the training data is {tokens} tokens, too short for one {window}-token window; "
            "give more text or a smaller --window"
        )
    n_val = 0 if val_split == 0 or n < 2 else min(n - 1, max(1, round(n * val_split)))
    return Dataset(windows[: n - n_val], windows[n - n_val :], tokens, examples, files)


def cut(stream: list[int], window: int, limit: int | None = None) -> np.ndarray:
    """Consecutive windows of window + 1 tokens (the last token of one is the first of the next)."""
    n = (len(stream) - 1) // window
    if limit is not None:
        n = min(n, limit)
    toks = np.asarray(stream, dtype=np.int32)
    rows = [toks[i * window : i * window + window + 1] for i in range(n)]
    return np.stack(rows) if rows else np.empty((0, window + 1), dtype=np.int32)


def pack_examples(examples: list[list[int]], window: int) -> np.ndarray:
    """Windows of ``window + 1`` tokens that each start at an example and hold whole examples.

    First-fit decreasing: the longest examples first, each into the first window with room, so
    little space is left over; what is left is filled with the start of another example (a
    partial example still has its sources before anything it says). An example longer than a
    window is cut into windows of its own. The windows are in a fixed pseudo-random order, so
    the validation split (the last windows) is not the shortest examples.
    """
    width = window + 1
    rows: list[list[int]] = []
    bins: list[list[int]] = []
    for ex in sorted((e for e in examples if len(e) > 1), key=len, reverse=True):
        if len(ex) > width:
            rows.extend(cut(ex, window).tolist())
            continue
        room = next((b for b in bins if len(b) + len(ex) <= width), None)
        if room is None:
            bins.append(list(ex))
        else:
            room.extend(ex)
    for i, b in enumerate(bins):
        filler = bins[(i + 1) % len(bins)] if len(bins) > 1 else b
        while len(b) < width:
            b.extend(filler[: width - len(b)])
        rows.append(b)
    order = np.random.default_rng(0).permutation(len(rows))
    return np.asarray([rows[i] for i in order], dtype=np.int32).reshape(len(rows), width)


def reference_windows(path: Path, tokenize: Callable[[str], list[int]], window: int) -> np.ndarray:
    """Windows of a general reference text (the forgetting check); at least one, at most 8."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read the reference text {path}: {exc.strerror}") from exc
    windows = cut(tokenize(text), window, limit=8)
    if not len(windows):
        raise UsageError(f"the reference text {path} is too short for one {window}-token window")
    return windows
