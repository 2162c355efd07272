"""Training data: documents and JSONL chats/QA turned into token windows, with a validation split.

Documents (txt, md, html, pdf, ... through the knowledge base's extractors) are continued
training on the user's own text. JSONL lines are either ``{"messages": [{"role", "content"}...]}``
or ``{"question", "context", "answer"}``; both are rendered with the model's chat template, so
the model learns the task in the layout it sees at inference. Every example is tokenized on its
own (BOS as the model wants it). Documents are one stream cut into windows of ``window + 1``
tokens (inputs plus the next-token labels). Chat examples are packed whole into windows instead
(``pack_examples``): an example cut across two windows would teach its answer in a window that
no longer holds its sources.

Each token also says whether it is a *target* (``Dataset.train_mask``): with ``loss="answers"``
only the assistant turns of chat examples are (their text and end-of-turn token); the template,
system prompt, sources and question are context. Document text is always a target. What a
context position is labelled with is the trainer's business (train.py: the base model's own
prediction, since llama.cpp's optimizer has no loss mask).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..io import sha256_file

log = logging.getLogger(__name__)

QA_KEYS = ("question", "context", "answer")
LOSSES = ("answers", "all")  # chat examples: loss on the assistant turns only, or on every token

Messages = list[dict[str, str]]
Render = Callable[[Messages, bool], str]  # (messages, add_generation_prompt) -> text


@dataclass
class Dataset:
    train: np.ndarray  # (n_train, window + 1) int32
    val: np.ndarray  # (n_val, window + 1) int32
    tokens: int  # tokens in the stream before it was cut
    examples: int
    files: list[dict[str, Any]]  # path, kind, sha256, examples
    train_mask: np.ndarray  # (n_train, window + 1) bool: this token is a target of the loss
    val_mask: np.ndarray
    targets: int = 0  # target tokens among ``tokens``

    @property
    def train_tokens(self) -> int:
        return int(self.train.shape[0] * (self.train.shape[1] - 1))


@dataclass
class Example:
    tokens: list[int]
    targets: list[bool]  # per token: is it a target of the loss


def chat_example(msgs: Messages, render: Render, tokenize: Callable[[str], list[int]], loss: str) -> Example:
    """A chat rendered and tokenized; with loss="answers" only its assistant turns are targets.

    A turn's tokens are found by rendering the chat up to it (with the generation prompt) and
    through it: both must tokenize to a prefix of the whole. A template where they do not (it
    rewrites earlier turns, say) gets every token as a target, with a warning.
    """
    tokens = tokenize(render(msgs, False))
    if loss == "all":
        return Example(tokens, [True] * len(tokens))
    targets = [False] * len(tokens)
    for j, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before, through = tokenize(render(msgs[:j], True)), tokenize(render(msgs[: j + 1], False))
        if tokens[: len(before)] != before or tokens[: len(through)] != through:
            log.warning(
                "the chat template renders a turn differently alone; this example trains on every token"
            )
            return Example(tokens, [True] * len(tokens))
        targets[len(before) : len(through)] = [True] * (len(through) - len(before))
    return Example(tokens, targets)


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


def read_chat_jsonl(path: Path) -> Iterator[Messages]:
    """Each line of a JSONL file as chat messages (one-line errors name file and line)."""
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
            yield _messages(record, f"{path}:{n}")


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
    render: Render,
    loss: str = "answers",
) -> Dataset:
    """Read, render, tokenize and cut the data into windows; one-line errors for anything unusable."""
    if not paths:
        raise UsageError("no training data: give --data PATH (documents or JSONL)")
    if not 0.0 <= val_split < 1.0:
        raise UsageError(f"--val-split must be in [0, 1), got {val_split}")
    if loss not in LOSSES:
        raise UsageError(f"--loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    stream: list[int] = []
    chats: list[Example] = []
    files = []
    examples = 0
    for path in paths:
        if not path.is_file():
            raise UsageError(f"training data {path} is not a file")
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            kind = "chat"
            found = [chat_example(m, render, tokenize, loss) for m in read_chat_jsonl(path)]
            found = [e for e in found if e.tokens]
            chats += found
            n_found = len(found)
        else:
            kind, text = "document", read_document(path)
            n_found = 1 if text.strip() else 0
            if n_found:
                stream.extend(tokenize(text))
        if not n_found:
            raise UsageError(f"training data {path} is empty (no text to train on)")
        examples += n_found
        files.append({"path": str(path), "kind": kind, "sha256": sha256_file(path), "examples": n_found})
    tokens = len(stream) + sum(len(e.tokens) for e in chats)
    targets = len(stream) + sum(sum(e.targets) for e in chats)
    if chats and not targets:
        raise UsageError("the chat data has no assistant turn to learn from (loss on answers only)")
    docs = cut(stream, window)
    packed, packed_mask = pack_examples(chats, window)
    windows = np.concatenate([docs, packed])
    mask = np.concatenate([np.ones(docs.shape, dtype=bool), packed_mask])
    n = len(windows)
    if n < 1 or tokens <= window:  # (packed chats would otherwise fill a window by repeating themselves)
        raise UsageError(
            f"the training data is {tokens} tokens, too short for one {window}-token window; "
            "give more text or a smaller --window"
        )
    n_val = 0 if val_split == 0 or n < 2 else min(n - 1, max(1, round(n * val_split)))
    return Dataset(
        windows[: n - n_val], windows[n - n_val :], tokens, examples, files,
        mask[: n - n_val], mask[n - n_val :], targets,
    )  # fmt: skip


def cut(stream: Sequence[int], window: int, limit: int | None = None) -> np.ndarray:
    """Consecutive windows of window + 1 tokens (the last token of one is the first of the next)."""
    n = (len(stream) - 1) // window
    if limit is not None:
        n = min(n, limit)
    toks = np.asarray(stream, dtype=np.int32)
    rows = [toks[i * window : i * window + window + 1] for i in range(n)]
    return np.stack(rows) if rows else np.empty((0, window + 1), dtype=np.int32)


def pack_examples(examples: list[Example], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``window + 1`` tokens that each start at an example and hold whole examples, and
    their target masks.

    First-fit decreasing: the longest examples first, each into the first window with room, so
    little space is left over; what is left is filled with the start of another example (a
    partial example still has its sources before anything it says). An example longer than a
    window is cut into windows of its own. The windows are in a fixed pseudo-random order, so
    the validation split (the last windows) is not the shortest examples.
    """
    width = window + 1
    rows: list[list[int]] = []
    masks: list[list[bool]] = []
    bins: list[tuple[list[int], list[bool]]] = []
    for ex in sorted((e for e in examples if len(e.tokens) > 1), key=lambda e: len(e.tokens), reverse=True):
        if len(ex.tokens) > width:
            rows.extend(cut(ex.tokens, window).tolist())
            masks.extend(cut(ex.targets, window).astype(bool).tolist())
            continue
        room = next((b for b in bins if len(b[0]) + len(ex.tokens) <= width), None)
        if room is None:
            bins.append((list(ex.tokens), list(ex.targets)))
        else:
            room[0].extend(ex.tokens)
            room[1].extend(ex.targets)
    for i, (toks, targets) in enumerate(bins):
        filler = bins[(i + 1) % len(bins)] if len(bins) > 1 else (toks, targets)
        while len(toks) < width:
            need = width - len(toks)
            toks.extend(filler[0][:need])
            targets.extend(filler[1][:need])
        rows.append(toks)
        masks.append(targets)
    order = np.random.default_rng(0).permutation(len(rows))
    return (
        np.asarray([rows[i] for i in order], dtype=np.int32).reshape(len(rows), width),
        np.asarray([masks[i] for i in order], dtype=bool).reshape(len(rows), width),
    )


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
