#!/usr/bin/env python
"""Training data for the grounded-answering fine-tune (issue 15): MLQA's tuning split, as a chat turn sees it.

    .venv/bin/python scripts/make_grounded_data.py OUT.jsonl [--work DIR]

Only the first 60% of MLQA-en dev's paragraphs (by context_id, in file order of first
appearance) and their questions are used; the other 40% are for reporting. Each question goes
through the assistant's own turn (assistant/turn.py: prepare_turn with a knowledge base of the
tuning paragraphs only, the default k and packing, the real system prompt and source markers),
so the model trains on exactly the layout it answers in. The answer it learns:

- the gold answer is in a source as shown:  "<answer> [n]" (n: the first source showing it), or
  with --answer sentence the source's sentence holding it, cited: "<sentence> [n]." (long
  sentences narrowed to the clauses around the answer). A 135M model picks the wrong span often
  when trained on bare spans ("1990 [1]" for "26 November 1990"); copying the sentence that holds
  the answer is the easier skill and keeps the answer whole;
- the question's own paragraph was not retrieved (a miss): "The sources do not say." -- a miss
  must not teach the model to answer from nothing. Refusals are capped at --refusals of the
  lines (a seeded sample): at 23% of the data the first fine-tune refused 80% of held-out
  questions, because one fixed reply is the likeliest first token whenever the answer is unsure;
- the paragraph was shown but focusing cut the answer out: left out (on-topic sources with a
  refusal would teach refusing on the very sources that should be answered from);
- no source passed the relevance floor: the question is left out (that turn has no sources).

Writes one {"messages": [system, user, assistant]} line per question (for `assistant finetune
--data`), and prints counts to stderr. The knowledge base is built in --work once and reused.
Nothing from ../shared/eval is written into the project.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
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
from assistant.knowledge.focus import sentences  # noqa: E402
from assistant.knowledge.ingest import Ingestor  # noqa: E402
from assistant.knowledge.kb import KnowledgeBase  # noqa: E402
from assistant.knowledge.retriever import KnowledgeRetriever  # noqa: E402
from assistant.message import Message  # noqa: E402
from assistant.turn import CHAT_TOP_K, prepare_turn  # noqa: E402


def split_rows(split: str) -> list[dict]:
    """MLQA dev's questions on the first 60% of its paragraphs ("tune", the split calibrate_relevance.py
    uses), or on the other 40% ("report": for measuring a fine-tune's loss, never for --data)."""
    rows, tune = mlqa_rows()
    return [r for r in rows if (r["context_id"] in tune) == (split == "tune")]


class Tokens:
    """What prepare_turn needs from an engine to pack the prompt: the chat model's token counts."""

    def __init__(self, model: Path, n_ctx: int = 4096) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)
        self.n_ctx = n_ctx

    def count_text(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=False))


def split_kb(work: Path, rows: list[dict], split: str) -> KnowledgeBase:
    """A knowledge base of one split's paragraphs only (one document per context_id, with its title)."""
    home = Home.resolve(ROOT / "models")
    db = work / f"mlqa-{split}.db"
    docs: dict[str, dict] = {}
    for r in rows:
        docs.setdefault(r["context_id"], {"_id": r["context_id"], "title": r["title"], "text": r["context"]})
    src = work / f"mlqa-{split}-contexts.jsonl"
    if not src.exists():
        src.write_text(
            "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs.values()), encoding="utf-8"
        )
    kb = KnowledgeBase.open(home, db, create=True, readonly=False, need_vectors=True)
    assert kb.embedder is not None
    report = Ingestor(kb.store, kb.embedder).add([src])
    print(f"# knowledge base {db}: {len(docs)} paragraphs, {report.chunks} chunks added", file=sys.stderr)
    return kb


ANSWER = "answer"
MISSED = "refusal (own paragraph not retrieved)"
FOCUSED_AWAY = "left out (own paragraph shown, answer focused away)"


# The sentence cut is focus.sentences' (the one the sources were focused with), joined again where a
# piece ends in an initial or a common abbreviation ("A. E. George", "e.g. HIV", "St. Louis").
NOT_AN_END = re.compile(r"(?:^|[\s(])(?:[A-Za-z]|e\.g|i\.e|etc|vs|St|Dr|Mr|Mrs|Ms|Jr|Sr|No|c|ca|approx)\.$")
CLAUSE_END = re.compile(r"[,;:]\s+|\s+[–—]\s+")
LONGEST_SENTENCE = 24  # words; longer ones are narrowed to the clauses around the answer
SHORTEST_CLAUSES = 8  # words the narrowed answer grows to, clause by clause


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for piece in sentences(text):
        start = text.index(piece, pos)
        pos = start + len(piece)
        if spans and NOT_AN_END.search(text[spans[-1][0] : spans[-1][1]].rstrip()):
            spans[-1] = (spans[-1][0], pos)
        else:
            spans.append((start, pos))
    return spans


def _clause_cuts(sentence: str) -> list[int]:
    """Where clauses start: after a comma, semicolon, colon or dash outside brackets."""
    depth, cuts = 0, []
    matches = {m.start(): m.end() for m in CLAUSE_END.finditer(sentence)}
    for i, ch in enumerate(sentence):
        depth += (ch in "([") - (ch in ")]")
        if depth <= 0 and i in matches:
            cuts.append(matches[i])
    return cuts


def _words(text: str) -> int:
    return len(text.split())


def answer_sentence(text: str, answer: str) -> str | None:
    """The sentence of `text` holding `answer` (its first case-insensitive match), narrowed to the
    clauses around it when longer than LONGEST_SENTENCE words; None when the answer is not there."""
    answer = answer.strip()
    at = text.lower().find(answer.lower())
    if not answer or at < 0:
        return None
    stop = at + len(answer)
    spans = _sentence_spans(text)
    left = max((a for a, _ in spans if a <= at), default=0)
    right = min((b for _, b in spans if b >= stop), default=len(text))
    sentence, at, stop = text[left:right], at - left, stop - left
    if _words(sentence) > LONGEST_SENTENCE:
        cuts = [0, *_clause_cuts(sentence), len(sentence)]
        i = max(k for k in range(len(cuts) - 1) if cuts[k] <= at)
        j = min(k for k in range(1, len(cuts)) if cuts[k] >= stop)
        while _words(sentence[cuts[i] : cuts[j]]) < SHORTEST_CLAUSES and (i > 0 or j < len(cuts) - 1):
            i = max(i - 1, 0)
            if _words(sentence[cuts[i] : cuts[j]]) < SHORTEST_CLAUSES:
                j = min(j + 1, len(cuts) - 1)
        sentence = sentence[cuts[i] : cuts[j]].rstrip(" ,;:–—")
    return sentence.strip(" \n…").strip() or None


def cite(sentence: str, n: int) -> str:
    """The sentence with its citation before the final stop: "... in 1617 [1].", '... "nonsense" [1].'"""
    m = re.fullmatch(r"(.*?)\s*([.!?])([\"'”’)\]]*)", sentence.rstrip(), re.S)
    if m:
        return f"{m[1]}{m[3]} [{n}]{m[2]}"
    return f"{sentence.rstrip()} [{n}]."


def target(answers: list[str], shown: list[str], gold_shown: bool, style: str = "span") -> tuple[str, str]:
    """The answer to learn and why: the gold answer (or, style "sentence", its sentence) cited to the
    first source showing it, else a refusal."""
    for n, text in enumerate(shown, 1):
        t = normalize_answer(text)
        for a in answers:
            if normalize_answer(a) and normalize_answer(a) in t:
                sentence = answer_sentence(text, a) if style == "sentence" else None
                return (cite(sentence, n) if sentence else f"{a.strip()} [{n}]"), ANSWER
    return REFUSAL, FOCUSED_AWAY if gold_shown else MISSED


def cap_refusals(lines: list[tuple[str, str]], share: float, seed: int) -> list[tuple[str, str]]:
    """Keep every answer and a seeded sample of refusals making at most `share` of the result, in file order."""
    refusals = [i for i, (kind, _) in enumerate(lines) if kind == MISSED]
    answers = len(lines) - len(refusals)
    room = int(share * answers / (1 - share)) if share < 1 else len(refusals)
    keep = set(random.Random(seed).sample(refusals, min(room, len(refusals))))
    return [line for i, line in enumerate(lines) if line[0] != MISSED or i in keep]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "grounded-data")
    ap.add_argument("-k", type=int, default=CHAT_TOP_K, help="sources per question (default: the chat's)")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "SmolLM2-135M-Instruct.Q8_0.gguf")
    ap.add_argument(
        "--refusals", type=float, default=0.08, help="largest share of refusal lines (default 0.08)"
    )
    ap.add_argument("--seed", type=int, default=0, help="which refusals are kept under the cap")
    ap.add_argument(
        "--answer",
        choices=("span", "sentence"),
        default="span",
        help="what an answer line holds: the gold span, or the source sentence holding it",
    )
    ap.add_argument(
        "--split",
        choices=("tune", "report"),
        default="tune",
        help="report: the held-out 40%%, to measure on only",
    )
    args = ap.parse_args()
    if not 0 <= args.refusals <= 1:
        ap.error(f"--refusals: expected a share between 0 and 1, got {args.refusals}")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = split_rows(args.split)
    engine = Tokens(args.model)
    kb = split_kb(args.work, rows, args.split)
    retriever = KnowledgeRetriever(kb, kb.store.chunk_count())
    params = SamplingParams()
    kinds: Counter[str] = Counter()
    lines: list[tuple[str, str]] = []
    for r in rows:
        turn = prepare_turn(
            engine, None, [Message("user", r["question"])], params, retriever=retriever, top_k=args.k
        )
        if not turn.sources:
            kinds["left out (no source passed the floor)"] += 1
            continue
        gold_shown = any(s.doc_id == r["context_id"] for s in turn.sources)
        answer, kind = target(
            r["answers"]["text"], [s.focused or s.text for s in turn.sources], gold_shown, args.answer
        )
        kinds[kind] += 1
        if kind != FOCUSED_AWAY:
            messages = [m.as_dict() for m in turn.messages] + [{"role": "assistant", "content": answer}]
            lines.append((kind, json.dumps({"messages": messages}, ensure_ascii=False)))
    kept = cap_refusals(lines, args.refusals, args.seed)
    kinds["refusals dropped by the cap"] = len(lines) - len(kept)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.writelines(text + "\n" for _, text in kept)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, args.out)
    kb.close()
    print(f"# {args.out}: " + ", ".join(f"{v} {k}" for k, v in kinds.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
