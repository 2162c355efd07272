#!/usr/bin/env python
"""Training data for the grounded-answering fine-tune (issue 15): MLQA's tuning split, as a chat turn sees it.

    .venv/bin/python scripts/make_grounded_data.py OUT.jsonl [--work DIR]

Only the first 60% of MLQA-en dev's paragraphs (by context_id, in file order of first
appearance) and their questions are used; the other 40% are for reporting. Each question goes
through the assistant's own turn (assistant/turn.py: prepare_turn with a knowledge base of the
tuning paragraphs only, the default k and packing, the real system prompt and source markers),
so the model trains on exactly the layout it answers in. The answer it learns:

- the gold answer is in a source as shown:  "<answer> [n]" (n: the first source showing it);
- it is not (a retrieval miss, or focusing left it out): "The sources do not say." -- a miss
  must not teach the model to answer from nothing;
- no source passed the relevance floor: the question is left out (that turn has no sources).

Writes one {"messages": [system, user, assistant]} line per question (for `assistant finetune
--data`), and prints counts to stderr. The knowledge base is built in --work once and reused.
Nothing from ../shared/eval is written into the project.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFUSAL = "The sources do not say."

from calibrate_relevance import mlqa_rows  # noqa: E402  (scripts/ is on sys.path when run)

from assistant.engine.sampling import SamplingParams  # noqa: E402
from assistant.evaluation.metrics import normalize_answer  # noqa: E402
from assistant.home import Home  # noqa: E402
from assistant.knowledge.ingest import Ingestor  # noqa: E402
from assistant.knowledge.kb import KnowledgeBase  # noqa: E402
from assistant.knowledge.retriever import KnowledgeRetriever  # noqa: E402
from assistant.message import Message  # noqa: E402
from assistant.turn import CHAT_TOP_K, prepare_turn  # noqa: E402


def tuning_rows() -> list[dict]:
    """MLQA dev's questions on the first 60% of its paragraphs (the split calibrate_relevance.py uses)."""
    rows, tune = mlqa_rows()
    return [r for r in rows if r["context_id"] in tune]


class Tokens:
    """What prepare_turn needs from an engine to pack the prompt: the chat model's token counts."""

    def __init__(self, model: Path, n_ctx: int = 4096) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)
        self.n_ctx = n_ctx

    def count_text(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=False))


def tuning_kb(work: Path, rows: list[dict]) -> KnowledgeBase:
    """A knowledge base of the tuning paragraphs only (one document per context_id, with its title)."""
    home = Home.resolve(ROOT / "models")
    db = work / "mlqa-tune.db"
    docs: dict[str, dict] = {}
    for r in rows:
        docs.setdefault(r["context_id"], {"_id": r["context_id"], "title": r["title"], "text": r["context"]})
    src = work / "mlqa-tune-contexts.jsonl"
    if not src.exists():
        src.write_text(
            "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs.values()), encoding="utf-8"
        )
    kb = KnowledgeBase.open(home, db, create=True, readonly=False, need_vectors=True)
    assert kb.embedder is not None
    report = Ingestor(kb.store, kb.embedder).add([src])
    print(f"# knowledge base {db}: {len(docs)} paragraphs, {report.chunks} chunks added", file=sys.stderr)
    return kb


def target(answers: list[str], shown: list[str]) -> tuple[str, str]:
    """The answer to learn and why: the gold answer cited to the first source showing it, else a refusal."""
    for n, text in enumerate(shown, 1):
        t = normalize_answer(text)
        for a in answers:
            if normalize_answer(a) and normalize_answer(a) in t:
                return f"{a.strip()} [{n}]", "answer"
    return REFUSAL, "refusal (not in the sources shown)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "grounded-data")
    ap.add_argument("-k", type=int, default=CHAT_TOP_K, help="sources per question (default: the chat's)")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "SmolLM2-135M-Instruct.Q8_0.gguf")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    tune = tuning_rows()
    engine = Tokens(args.model)
    kb = tuning_kb(args.work, tune)
    retriever = KnowledgeRetriever(kb, kb.store.chunk_count())
    params = SamplingParams()
    kinds: Counter[str] = Counter()
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for r in tune:
            turn = prepare_turn(
                engine, None, [Message("user", r["question"])], params, retriever=retriever, top_k=args.k
            )
            if not turn.sources:
                kinds["left out (no source passed the floor)"] += 1
                continue
            answer, kind = target(r["answers"]["text"], [s.focused or s.text for s in turn.sources])
            kinds[kind] += 1
            messages = [m.as_dict() for m in turn.messages] + [{"role": "assistant", "content": answer}]
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, args.out)
    kb.close()
    print(f"# {args.out}: " + ", ".join(f"{v} {k}" for k, v in kinds.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
