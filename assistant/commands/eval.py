"""`assistant eval`: closed book vs RAG vs the gold context (per model and adapter) on a question set."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError

if TYPE_CHECKING:
    from ..evaluation.runner import EvalPlan
    from ..knowledge.retriever import Retriever
    from .context import AppContext

DEFAULT_MAX_TOKENS = 64  # extractive answers are a few words; the hand measurement used -n 64


@click.command("eval")
@click.argument("qa_file", metavar="QA.jsonl", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--setups",
    default="closed,rag,oracle",
    show_default=True,
    help="Comma-separated: closed (no retrieval), rag (a knowledge base), oracle (the question's own "
    "context as the only source: the ceiling for retrieval).",
)
@click.option(
    "--index-contexts",
    is_flag=True,
    help="rag: search a knowledge base of the file's own contexts (one document per context_id; built once "
    "per set of contexts and kept in the model home's eval/ folder).",
)
@click.option(
    "--kb",
    metavar="NAME|PATH",
    help="rag: this knowledge base (default: knowledge/default.db); recall counts a source whose document "
    "id (a JSONL record's id) is the question's context_id.",
)
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    metavar="NAME|PATH|RECIPE",
    help="Model to evaluate: a name, a .gguf or a build recipe (.toml); repeatable (default: the default model).",
)
@click.option(
    "--adapter",
    "adapters",
    multiple=True,
    metavar="LORA.gguf[@SCALE]",
    help="Also evaluate each model with this runtime LoRA adapter (its own columns); repeatable.",
)
@click.option(
    "-k", "k", type=click.IntRange(1, 50), help="rag: sources to retrieve (default: the assistant's own, 1)."
)
@click.option(
    "--source-tokens",
    type=click.IntRange(min=0),
    metavar="N",
    help="rag: focus each source on its best sentences within N tokens; 0: whole chunks (default: the "
    "assistant's own packing).",
)
@click.option(
    "--style",
    type=click.Choice(["normal", "short"]),
    default="normal",
    show_default=True,
    help="normal: the assistant's own prompt; short: also ask for the shortest answer (extractive sets).",
)
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the first N questions.")
@click.option(
    "--sample", type=click.IntRange(min=1), metavar="N", help="N questions drawn at random (--seed)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of --sample.")
@click.option(
    "-n",
    "--max-tokens",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_TOKENS,
    show_default=True,
    help="Longest answer in tokens (answers are greedy: temperature 0).",
)
@click.option("--ctx", "n_ctx", type=int, metavar="N", help="Context window in tokens (default 4096).")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON line per question per setup, then a summary line."
)
@click.option(
    "--markdown", type=click.Path(path_type=Path, dir_okay=False), help="Also write the report here."
)
@click.option(
    "--results",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The results file (one line per answer, kept as they finish); default: the model home's eval/ "
    "folder, named after the question file and the options.",
)
@click.option("--resume", is_flag=True, help="Continue a run that was stopped: answers already in the results "
              "file are kept, not asked again.")  # fmt: skip
@click.pass_obj
def eval_command(app: AppContext, qa_file: Path, **opts: Any) -> None:
    """Measure closed book, RAG and the gold context side by side on your own questions.

    QA.jsonl holds one question a line: {"id", "question", "answers": {"text": [...]}, "context",
    "context_id", "title"} (MLQA/SQuAD; context optional) or {"question", "answer"} written by hand.
    Prints the comparison (accuracy, time to first token, speed, memory, cost to update; a column per
    setup and model):

    \b
        assistant eval qa.jsonl --setups closed,rag,oracle --index-contexts --limit 50
        assistant eval qa.jsonl --setups rag --kb notes -m my-model -m build/support-bot.toml
        assistant eval qa.jsonl --adapter adapters/lora.gguf@0.8 --json > rows.jsonl
    """
    from ..engine import SamplingParams, compute
    from ..evaluation import questions as qs
    from ..evaluation.results import ResultsFile, run_key
    from ..evaluation.runner import EvalPlan, check_plan, make_variants, parse_setups

    compute.claim_current_thread()  # all compute from this thread: no hop per token
    setups = parse_setups(opts["setups"])
    if "rag" not in setups and (opts["kb"] or opts["index_contexts"]):
        raise UsageError("--kb and --index-contexts are for the rag setup; add rag to --setups")
    if opts["kb"] and opts["index_contexts"]:
        raise UsageError("--kb and --index-contexts both choose rag's knowledge base; give one")
    everything = qs.load_questions(qa_file)
    chosen = qs.select(everything, limit=opts["limit"], sample=opts["sample"], seed=opts["seed"])
    params = SamplingParams().with_(temperature=0.0, max_tokens=opts["max_tokens"], seed=0)
    variants = make_variants(app.home, opts["models"], opts["adapters"])
    plan = EvalPlan(
        chosen, setups, variants, params, k=_k(opts["k"]), source_tokens=_source_tokens(opts["source_tokens"]),
        style=opts["style"], n_ctx=opts["n_ctx"],
    )  # fmt: skip
    check_plan(plan, str(qa_file))
    config = _config(qa_file, plan, opts)
    path = opts["results"] or app.home.root / "eval" / f"{qa_file.stem}-{run_key(config)}.jsonl"
    results = ResultsFile(path, config, resume=opts["resume"])
    try:
        if opts["as_json"]:
            for row in results.rows:
                _echo_json(row)
        with _rag_retriever(app, plan, everything, opts) as kb:
            before, t0 = len(results.rows), time.perf_counter()
            _answer(app, plan, results, kb, opts["as_json"])
            wall, new = time.perf_counter() - t0, results.rows[before:]
    except KeyboardInterrupt:
        click.secho(f"\nstopped: the answers so far are kept in {path}; add --resume to continue", err=True)
        raise
    finally:
        results.close()
    _report(plan, results.rows, qa_file, path, opts)
    if new:
        answering = sum(r["answer_ms"] for r in new) / 1000
        click.secho(
            f"{len(new)} answers in {wall:,.0f} s ({answering / wall:.0%} of it inside the answers: retrieval, "
            "prompt, generation)",
            dim=True,
            err=True,
        )


def _config(qa_file: Path, plan: EvalPlan, opts: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same run (a resumed run must match it)."""
    ids = hashlib.sha256("\n".join(q.id for q in plan.questions).encode()).hexdigest()[:16]
    return {
        "questions": str(qa_file.resolve()),
        "questions_sha256": hashlib.sha256(qa_file.read_bytes()).hexdigest(),
        "ids": ids,
        "setups": plan.setups,
        "variants": [[v.name, str(v.model), [[str(p), s] for p, s in v.adapters]] for v in plan.variants],
        "k": plan.k,
        "source_tokens": plan.source_tokens,
        "style": plan.style,
        "max_tokens": plan.params.max_tokens,
        "n_ctx": plan.n_ctx,
        "kb": opts["kb"],
        "index_contexts": opts["index_contexts"],
    }


@contextlib.contextmanager
def _rag_retriever(
    app: AppContext, plan: EvalPlan, everything: list[Any], opts: dict[str, Any]
) -> Iterator[Retriever | None]:
    """rag's knowledge base: the file's contexts, --kb, or the default one (None without rag)."""
    if "rag" not in plan.setups:
        yield None
        return
    if opts["index_contexts"]:
        from ..evaluation.runner import context_retriever

        with context_retriever(
            app.home, everything, verbose=app.verbose, source_tokens=plan.source_tokens
        ) as r:
            yield r
        return
    from ..knowledge.retriever import open_retriever

    r = open_retriever(
        app.home, opts["kb"], strict=True, verbose=app.verbose, source_tokens=plan.source_tokens
    )
    if not r.available:
        raise UsageError(f"the rag setup needs a knowledge base (--kb or --index-contexts): {r.hint}")
    try:
        yield r
    finally:
        r.close()


def _k(value: int | None) -> int:
    from ..knowledge.grounding import DEFAULT_K

    return value or DEFAULT_K


def _source_tokens(value: int | None) -> int | None:
    """--source-tokens: None is the assistant's own packing, 0 whole chunks."""
    from ..knowledge.grounding import SOURCE_TOKENS

    if value is None:
        return SOURCE_TOKENS
    return value or None


def _echo_json(row: dict[str, Any]) -> None:
    from ..evaluation.report import json_line

    click.echo(json.dumps(json_line(row), ensure_ascii=False))


def _answer(app: AppContext, plan: EvalPlan, results: Any, kb: Retriever | None, as_json: bool) -> None:
    """Run what is not done yet, with a progress bar (ETA) at a terminal."""
    from ..evaluation.runner import run
    from .knowledge import progress_bar

    with progress_bar(plan.pending(results.done), "Answering") as update:

        def on_row(row: dict[str, Any]) -> None:
            results.append(row)
            if as_json:
                _echo_json(row)
            update(1)

        run(plan, done=results.done, on_row=on_row, kb=kb, verbose=app.verbose)


def _report(
    plan: EvalPlan, rows: list[dict[str, Any]], qa_file: Path, path: Path, opts: dict[str, Any]
) -> None:
    from ..evaluation import report
    from ..evaluation.runner import env_note

    summary = report.summarize(rows, plan.setup_names())
    costs = {plan.names[(s, v.name)]: v.cost_s for v in plan.variants for s in plan.setups}
    if opts["markdown"] is not None:
        about = [
            ("questions", f"{qa_file.name} ({len(plan.questions)} questions)"),
            ("models", ", ".join(v.name for v in plan.variants)),
            ("style", plan.style),
            ("rag", _rag_note(plan, opts)),
            ("answers", f"greedy, at most {plan.params.max_tokens} tokens"),
            ("machine", env_note()),
        ]
        report.write_markdown(opts["markdown"], report.markdown(summary, costs, about))
    if opts["as_json"]:
        click.echo(json.dumps(report.summary_json(summary), ensure_ascii=False))
    else:
        click.echo(report.terminal_table(summary, costs))
    click.secho(f"style: {plan.style}; rag: {_rag_note(plan, opts)}; results: {path}", dim=True, err=True)


def _rag_note(plan: EvalPlan, opts: dict[str, Any]) -> str:
    if "rag" not in plan.setups:
        return "not run"
    kb = "the file's contexts" if opts["index_contexts"] else (opts["kb"] or "the default knowledge base")
    focus = (
        f", sources focused within {plan.source_tokens} tokens" if plan.source_tokens else ", whole chunks"
    )
    return f"k={plan.k} from {kb}{focus}"
