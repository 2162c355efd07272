#!/usr/bin/env python
"""Calibrate the relevance floor of grounding (issue 12 item 21): when are retrieved chunks sources?

    .venv/bin/python scripts/calibrate_relevance.py signals    # build scratch KBs, one JSON line a query
    .venv/bin/python scripts/calibrate_relevance.py sweep      # needed sources dropped vs off-topic kept
    .venv/bin/python scripts/calibrate_relevance.py answers    # answer accuracy with vs without the floor
    .venv/bin/python scripts/calibrate_relevance.py prompt     # answer accuracy of the grounded prompt

Data is read in place from ../shared/eval, never copied into the project:
- MLQA en dev: the first 60% of its paragraphs (by context_id, in file order of first appearance)
  and their questions choose the floor ("tune"); the other 40% are held out ("held").
- SciFact: train qrels choose, test qrels are held out; its knowledge base holds the documents
  judged for either split plus a fixed random sample of the others.
- OFF_TOPIC below: prompts that should get no sources, run against every knowledge base, plus a
  knowledge base of this machine's own documentation (git release notes, READMEs).

A question "needs" a source when its gold paragraph/abstract is among the sources grounding would
give without a floor (hybrid top DEFAULT_K, vector matches >= MIN_SIMILARITY); the floor wrongly
drops it when it leaves that question with no sources. Knowledge bases go to --work (default
/tmp/relevance-floor) and are reused.
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import re
import string
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # after PYTHONPATH: `prompt` can run another copy of the package
EVAL = ROOT.parent / "shared" / "eval"

from assistant.home import Home  # noqa: E402
from assistant.knowledge.embed import Embedder  # noqa: E402
from assistant.knowledge.eval import load_qrels, load_queries  # noqa: E402
from assistant.knowledge.grounding import DEFAULT_K, MIN_SIMILARITY  # noqa: E402
from assistant.knowledge.ingest import Ingestor  # noqa: E402
from assistant.knowledge.kb import KnowledgeBase  # noqa: E402
from assistant.knowledge.search import query_words  # noqa: E402
from assistant.knowledge.store import KnowledgeStore  # noqa: E402

MODELS = ROOT / "models"
EMBED = MODELS / "all-MiniLM-L6-v2.gguf"
CHAT = MODELS / "SmolLM2-135M-Instruct.Q8_0.gguf"
TUNE_SHARE = 0.6
DOCS_RELNOTES = 4  # newest git release notes in the documentation knowledge base
DOCS_OTHERS = 10  # other small text files from /usr/share/doc

OFF_TOPIC = [
    # chit-chat
    "Hi there!",
    "Hello, how are you today?",
    "Thanks, that was helpful.",
    "Good morning! Did you sleep well?",
    "What's your name?",
    "Tell me a joke.",
    "I'm bored, what should I do this weekend?",
    "Can you be my friend?",
    "Who are you?",
    "ok bye",
    # creative writing
    "Write a poem about the sea.",
    "Write a haiku about autumn leaves.",
    "Tell me a bedtime story about a dragon who is afraid of the dark.",
    "Write a limerick about a cat who loves cheese.",
    "Compose a short song about friendship.",
    "Write a short story about a robot learning to paint.",
    "Describe a sunset over the mountains in three sentences.",
    "Write a birthday card message for my grandmother.",
    "Invent a name for a fantasy kingdom and describe it.",
    "Write a motivational speech for a football team at half time.",
    # coding
    "Write a Python function that reverses a string.",
    "How do I sort a list of dictionaries by a key in Python?",
    "Explain what a closure is in JavaScript.",
    "Write a SQL query that counts rows per day.",
    "What is the difference between a list and a tuple in Python?",
    "Fix this code: for i in range(10) print(i)",
    "Write a bash one-liner to count lines in all .txt files.",
    "How do I declare a constant in Rust?",
    "Implement binary search in C.",
    "What does the yield keyword do in Python?",
    # math
    "What is 17 times 23?",
    "Solve for x: 2x + 6 = 14.",
    "What is the derivative of x squared?",
    "Is 97 a prime number?",
    "What is the square root of 144?",
    "Convert 3/8 to a decimal.",
    "What is 15% of 80?",
    "How many degrees are in a triangle?",
    "What is the integral of 1/x?",
    "Simplify (a+b)^2.",
]


def _jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def mlqa_rows() -> tuple[list[dict], set[str]]:
    """MLQA dev rows, and the context ids of the tuning split (first 60% of paragraphs)."""
    rows = list(_jsonl(EVAL / "mlqa_en" / "mlqa_en_dev.jsonl"))
    order: dict[str, None] = {}
    for r in rows:
        order.setdefault(r["context_id"], None)
    ids = list(order)
    return rows, set(ids[: int(len(ids) * TUNE_SHARE)])


def _index(path: Path, inputs: list[Path], embedder: Embedder) -> None:
    """Index into a scratch knowledge base (a rerun skips what is already in)."""
    store = KnowledgeStore(path)
    try:
        t0 = time.perf_counter()
        rep = Ingestor(store, embedder).add(inputs)
        took = time.perf_counter() - t0
        print(f"# {path.name}: {rep.chunks} chunks added in {took:.0f} s", file=sys.stderr, flush=True)
    finally:
        store.close()


def _doc_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    store = KnowledgeStore(path)
    try:
        return {r[0] for r in store.execute("SELECT doc_key FROM documents")}
    finally:
        store.close()


def _add_records(path: Path, corpus: Path, wanted: list[str], embedder: Embedder) -> None:
    """Index the wanted records of a BEIR corpus that the knowledge base does not hold yet."""
    missing = set(wanted) - _doc_keys(path)
    if not missing:
        return
    sub = path.with_name(f"{path.stem}-add-{len(missing)}.jsonl")
    with open(sub, "w", encoding="utf-8") as fh:
        for d in _jsonl(corpus):
            if d["_id"] in missing:
                fh.write(json.dumps(d) + "\n")
    _index(path, [sub], embedder)


def _docs_files() -> list[Path]:
    """This machine's documentation: the newest git release notes and other small text files."""
    doc = Path("/usr/share/doc")
    notes = sorted((doc / "git" / "RelNotes").glob("*.txt"))[-DOCS_RELNOTES:]
    text = sorted(
        p
        for p in doc.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and (p.suffix in {".md", ".txt"} or p.name.startswith("README"))
        and "RelNotes" not in p.parts
        and p.stat().st_size < 10_000
    )
    return notes + random.Random(1234).sample(text, min(DOCS_OTHERS, len(text)))


def mlqa_sets(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The paragraphs used: the first --mlqa-tune of the tuning split, the first --mlqa-held held out."""
    rows, tune_ids = mlqa_rows()
    order = list(dict.fromkeys(r["context_id"] for r in rows))
    tune = [c for c in order if c in tune_ids][: args.mlqa_tune]
    held = [c for c in order if c not in tune_ids][: args.mlqa_held]
    return tune, held


def scifact_sets(args: argparse.Namespace) -> dict[str, dict[str, dict[str, int]]]:
    """The first --scifact queries of each split and their judgements."""
    out = {}
    for split in ("train", "test"):
        qrels = load_qrels(EVAL / "scifact" / "qrels" / f"{split}.tsv")
        out[split] = {q: qrels[q] for q in list(qrels)[: args.scifact]}
    return out


def build_kbs(args: argparse.Namespace, embedder: Embedder) -> dict[str, Path]:
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    kbs = {"mlqa": work / "mlqa.db", "scifact": work / "scifact.db", "docs": work / "docs.db"}
    tune, held = mlqa_sets(args)
    _add_records(kbs["mlqa"], EVAL / "mlqa_en" / "beir" / "corpus.jsonl", tune + held, embedder)
    judged = sorted({d for split in scifact_sets(args).values() for rel in split.values() for d in rel})
    corpus = [d["_id"] for d in _jsonl(EVAL / "scifact" / "corpus.jsonl")]
    others = random.Random(1234).sample([d for d in corpus if d not in set(judged)], args.scifact_others)
    _add_records(kbs["scifact"], EVAL / "scifact" / "corpus.jsonl", judged + others, embedder)
    _index(kbs["docs"], _docs_files(), embedder)
    return kbs


def _signals(kb: KnowledgeBase, text: str) -> dict:
    """What grounding sees for a query, before any floor."""
    s = kb.searcher
    hits = s.search(text, DEFAULT_K, mode="hybrid", min_similarity=MIN_SIMILARITY)
    top = s.vector(text, 1)
    bm = s.bm25(text, 1)
    sims = [h.similarity for h in hits if h.similarity is not None]
    return {
        "hits": [h.doc_key for h in hits],
        "best_sim": max(sims) if sims else None,  # the best cosine among the sources
        "top_cos": top[0][1] if top else None,  # the best cosine in the whole knowledge base
        "top_bm25": bm[0][1] if bm else None,
        "words": len(query_words(text)),
    }


def signals(args: argparse.Namespace) -> None:
    embedder = Embedder(EMBED)
    kbs = build_kbs(args, embedder)
    embedder.close()
    home = Home(MODELS)
    out = open(args.work / "signals.jsonl", "w", encoding="utf-8")  # noqa: SIM115

    def write(name: str, qid: object, gold: list[str], sig: dict) -> None:
        out.write(json.dumps({"set": name, "id": qid, "gold": gold, **sig}) + "\n")

    rows, _ = mlqa_rows()
    tune, held = mlqa_sets(args)
    with KnowledgeBase.open(home, kbs["mlqa"]) as kb:
        for r in rows:
            split = "tune" if r["context_id"] in tune else "held" if r["context_id"] in held else None
            if split:
                write(f"mlqa-{split}", r["id"], [r["context_id"]], _signals(kb, r["question"]))
        for i, text in enumerate(OFF_TOPIC):
            write("offtopic-mlqa", i, [], _signals(kb, text))
    queries = {q.id: q.text for q in load_queries(EVAL / "scifact" / "queries.jsonl")}
    with KnowledgeBase.open(home, kbs["scifact"]) as kb:
        for split, qrels in scifact_sets(args).items():
            for qid, rel in qrels.items():
                write(f"scifact-{split}", qid, list(rel), _signals(kb, queries[qid]))
        for i, text in enumerate(OFF_TOPIC):
            write("offtopic-scifact", i, [], _signals(kb, text))
    with KnowledgeBase.open(home, kbs["docs"]) as kb:
        for i, text in enumerate(OFF_TOPIC):
            write("offtopic-docs", i, [], _signals(kb, text))
    out.close()
    print(f"# wrote {args.work / 'signals.jsonl'}", file=sys.stderr)


def _keeps(row: dict, floor: float) -> bool:
    """The floor as grounding applies it: sources only when the best source's cosine reaches it."""
    return bool(row["hits"]) and row["best_sim"] is not None and row["best_sim"] >= floor


def _rates(rows: list[dict], floor: float) -> dict:
    needed = [r for r in rows if set(r["hits"]) & set(r["gold"])]
    if rows and rows[0]["gold"]:
        dropped = sum(not _keeps(r, floor) for r in needed)
        return {"needed": len(needed), "dropped": dropped, "rate": dropped / max(1, len(needed))}
    kept = sum(_keeps(r, floor) for r in rows)
    return {"prompts": len(rows), "with_sources": kept, "rate": kept / max(1, len(rows))}


def sweep(args: argparse.Namespace) -> None:
    """Rates per floor; choose on the tuning sets only (MLQA tune, SciFact train, off-topic)."""
    by_set: dict[str, list[dict]] = {}
    for r in _jsonl(args.work / "signals.jsonl"):
        by_set.setdefault(r["set"], []).append(r)
    names = ["mlqa-tune", "scifact-train", "offtopic-mlqa", "offtopic-scifact", "offtopic-docs", "mlqa-held",
             "scifact-test"]  # fmt: skip
    print("| floor | " + " | ".join(names) + " |")
    print("| --- " * (len(names) + 1) + "|")
    floors = [None] + [round(0.2 + 0.01 * i, 2) for i in range(41)]
    for floor in floors:
        cells = []
        for n in names:
            rows = by_set.get(n, [])
            rate = _rates(rows, -1.0 if floor is None else floor)  # no floor: any hit makes sources
            cells.append(f"{rate['rate']:.3f}")
        print(f"| {floor if floor is not None else 'none'} | " + " | ".join(cells) + " |")
    if args.floor is not None:
        for n in names:
            print(json.dumps({"set": n, "floor": args.floor, **_rates(by_set.get(n, []), args.floor)}))


# -- answer accuracy ---------------------------------------------------------------------------


def _norm(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _f1(pred: str, golds: list[str]) -> float:
    best = 0.0
    p = _norm(pred).split()
    for g in golds:
        gt = _norm(g).split()
        same = sum((Counter(p) & Counter(gt)).values())
        if same:
            prec, rec = same / len(p), same / len(gt)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


class Asker:
    """`assistant ask -t 0 -n N QUESTION` in process: the same budget, prompt and sampling."""

    def __init__(self, kb_path: Path, max_tokens: int) -> None:
        from assistant.engine import ChatModel, SamplingParams

        self.chat = ChatModel(CHAT)
        self.kb = KnowledgeBase.open(Home(MODELS), kb_path)
        self.params = SamplingParams().with_(temperature=0.0, max_tokens=max_tokens)

    def count(self, text: str) -> int:
        return len(self.chat.tokenize(text))

    def ground(self, question: str, **kw: object) -> object:
        from assistant.engine import Message
        from assistant.knowledge.grounding import ground
        from assistant.turn import grounding_budget  # the budget every front end uses

        budget = grounding_budget(self.chat, [Message("user", question)], self.params.max_tokens)
        return ground(question, self.kb, count_tokens=self.count, budget_tokens=budget, k=DEFAULT_K, **kw)

    def answer(self, messages: list) -> str:
        self.chat._ctx.clear()
        return self.chat.chat(messages, self.params).text()

    def close(self) -> None:
        self.kb.close()
        self.chat.close()


def _score(answers: list[tuple[str, list[str]]]) -> dict:
    n = len(answers)
    contains = sum(any(_norm(g) in _norm(a) for g in golds if _norm(g)) for a, golds in answers)
    return {"questions": n, "contains_gold": round(contains / n, 4), "token_f1": round(
        sum(_f1(a, golds) for a, golds in answers) / n, 4)}  # fmt: skip


def answers(args: argparse.Namespace) -> None:
    """Held-out MLQA questions, with the floor (the default) vs without (min_relevance=None)."""
    rows, _ = mlqa_rows()
    held_ids = set(mlqa_sets(args)[1])
    held = [r for r in rows if r["context_id"] in held_ids]
    sample = random.Random(args.seed).sample(held, min(args.n, len(held)))
    asker = Asker(args.work / "mlqa.db", args.max_tokens)
    res: dict[str, list[tuple[str, list[str]]]] = {"floor": [], "no_floor": []}
    dropped = 0
    for i, r in enumerate(sample):
        golds = r["answers"]["text"]
        with_floor = asker.ground(r["question"])
        res["floor"].append((asker.answer(with_floor.messages), golds))  # type: ignore[attr-defined]
        if with_floor.sources:  # type: ignore[attr-defined]
            res["no_floor"].append(res["floor"][-1])  # the same prompt: the same greedy answer
        else:
            dropped += 1
            plain = asker.ground(r["question"], min_relevance=None)
            res["no_floor"].append((asker.answer(plain.messages), golds))  # type: ignore[attr-defined]
        print(f"# {i + 1}/{len(sample)}", file=sys.stderr, flush=True)
    asker.close()
    for cond, got in res.items():
        print(
            json.dumps({"data": "mlqa-held", "cond": cond, "floor_dropped_sources": dropped, **_score(got)})
        )


def prompt(args: argparse.Namespace) -> None:
    """Answer accuracy of whatever grounded prompt the imported package builds, on MLQA *tune*.

    Run it once on the tree as it is and once with PYTHONPATH pointing at a copy that has the old
    assistant/knowledge/grounding.py to compare prompts. The floor is off (min_relevance=None) when
    the package has one, so only the prompt differs.
    """
    from assistant.knowledge import grounding

    rows, _ = mlqa_rows()
    tune_ids = set(mlqa_sets(args)[0])
    tune = [r for r in rows if r["context_id"] in tune_ids]
    sample = random.Random(args.seed).sample(tune, min(args.n, len(tune)))
    kw = {"min_relevance": None} if "min_relevance" in inspect.signature(grounding.ground).parameters else {}
    asker = Asker(args.work / "mlqa.db", args.max_tokens)
    got = []
    for r in sample:
        g = asker.ground(r["question"], **kw)
        got.append((asker.answer(g.messages), r["answers"]["text"]))  # type: ignore[attr-defined]
        print(json.dumps({"id": r["id"], "answer": got[-1][0], **_score(got[-1:])}), flush=True)
    asker.close()
    print(json.dumps({"data": "mlqa-tune", "grounding": grounding.__file__, **_score(got)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["signals", "sweep", "answers", "prompt"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/relevance-floor"))
    ap.add_argument("--mlqa-tune", type=int, default=140, help="MLQA tuning-split paragraphs indexed")
    ap.add_argument("--mlqa-held", type=int, default=80, help="MLQA held-out paragraphs indexed")
    ap.add_argument("--scifact", type=int, default=10, help="SciFact queries of each split")
    ap.add_argument("--scifact-others", type=int, default=0, help="SciFact distractor abstracts")
    ap.add_argument("--floor", type=float, help="sweep: also print the counts at this floor")
    ap.add_argument("-n", type=int, default=40, help="answers/prompt: questions")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    {"signals": signals, "sweep": sweep, "answers": answers, "prompt": prompt}[args.what](args)


if __name__ == "__main__":
    main()
