"""A small QA set for `assistant eval` tests: three paragraphs on unrelated topics, questions that
share their paragraph's rare words (so retrieval finds it: recall 1 with k=1)."""

from __future__ import annotations

import json
from pathlib import Path

CONTEXTS = {
    "c-zorb": (
        "Zorb",
        "Zorb is a small planet far from Earth. On Zorb the sky is green and the grass is purple.",
    ),
    "c-quill": ("Quillby", "The town of Quillby was founded in 1702 by Martha Quill, a weaver of wool."),
    "c-kettle": (
        "Kettles",
        "A copper kettle boils water on a stove; its whistle sounds when the water boils.",
    ),
}
QUESTIONS = [
    ("q1", "c-zorb", "What colour is the sky on the planet Zorb?", ["green"]),
    ("q2", "c-quill", "Who founded the town of Quillby?", ["Martha Quill", "Martha Quill, a weaver"]),
    ("q3", "c-kettle", "When does the whistle of a copper kettle sound?", ["when the water boils"]),
    ("q4", "c-quill", "In which year was Quillby founded?", ["1702"]),
]


def qa_lines(copies: int = 1) -> list[dict]:
    """The questions in MLQA's layout; ``copies`` > 1 repeats them under new ids (a longer run)."""
    out = []
    for copy in range(copies):
        for qid, cid, question, golds in QUESTIONS:
            title, text = CONTEXTS[cid]
            out.append({"id": f"{qid}-{copy}" if copies > 1 else qid, "title": title, "context": text,
                        "context_id": cid, "question": question, "answers": {"text": golds}})  # fmt: skip
    return out


def write_qa(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path
