"""`assistant index add|sync|list|remove|stats|eval` and `assistant search`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from .options import threads_option

if TYPE_CHECKING:
    from ..knowledge.kb import KnowledgeBase
    from .context import AppContext

MODES = ("hybrid", "vector", "bm25")
MAX_PROBLEMS_SHOWN = 30


def kb_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--kb",
        metavar="NAME|PATH",
        help="Knowledge base: a name in the model home's knowledge/ or a .db path (default: knowledge/default.db).",
    )(f)


def embed_model_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--embed-model",
        metavar="NAME|PATH",
        help="Embedding model GGUF (default: the one the index was built with, else all-MiniLM-L6-v2.gguf).",
    )(f)


def follow_symlinks_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--follow-symlinks",
        is_flag=True,
        help="Also index files that symlinks lead to outside the directory given (default: skipped).",
    )(f)


def _open(
    app: AppContext,
    kb: str | None,
    embed_model: str | None,
    *,
    create: bool = False,
    readonly: bool = True,
    need_vectors: bool = False,
    threads: int | None = None,
) -> KnowledgeBase:
    from ..engine import compute
    from ..knowledge.kb import KnowledgeBase

    compute.claim_current_thread()  # a CLI command embeds from this thread only: no hop per text
    return KnowledgeBase.open(
        app.home,
        kb,
        embed_model=embed_model,
        create=create,
        readonly=readonly,
        need_vectors=need_vectors,
        threads=threads,
        verbose=app.verbose,
    )


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar with ETA on a terminal (stderr); nothing otherwise."""
    if not sys.stderr.isatty() or total <= 0:
        yield lambda n: None
        return
    with click.progressbar(
        length=total, label=label, show_eta=True, show_percent=True, file=sys.stderr, width=30
    ) as bar:
        yield bar.update


def _print_problems(problems: list[Any], verbose: bool) -> None:
    shown = problems if verbose else problems[:MAX_PROBLEMS_SHOWN]
    for p in shown:
        click.secho(
            f"{p.kind:8} {p.path}: {p.message}", err=True, fg="yellow" if p.kind != "failed" else "red"
        )
    if len(problems) > len(shown):
        click.secho(f"… and {len(problems) - len(shown)} more (--verbose lists all)", err=True, dim=True)


def _summary(r: Any, totals: dict[str, int]) -> str:
    """Files by what happened to them, what this run wrote, and what the knowledge base holds now."""
    counts = [(r.added, "added"), (r.updated, "updated"), (r.unchanged, "unchanged"), (r.removed, "removed"),
              (r.skipped, "skipped"), (r.failed, "failed")]  # fmt: skip
    files = ", ".join(f"{n:,} {what}" for n, what in counts if n) or "nothing to do"
    rate = f", {r.tokens / r.embed_seconds:,.0f} tokens/s" if r.embed_seconds > 0 and r.tokens else ""
    wrote = f"wrote {r.documents:,} documents ({r.chunks:,} chunks, {r.tokens:,} tokens{rate})"
    return (
        f"files: {files}; {wrote} in {r.seconds:,.1f} s; "
        f"the knowledge base now holds {totals['documents']:,} documents ({totals['chunks']:,} chunks)"
    )


@click.group("index")
def index_group() -> None:
    """Build and inspect a knowledge base (documents for grounded answers).

    \b
        assistant index add ~/notes docs/ --collection work
        assistant index add corpus.jsonl          # BEIR JSONL: {"_id", "title", "text"} a line
        assistant index sync                      # re-scan: new, changed, deleted files
        assistant index list | stats
        assistant index remove ~/notes/old.md
        assistant index eval --queries q.jsonl --qrels qrels.tsv
    """


@index_group.command("add")
@click.argument("paths", nargs=-1, required=True)
@click.option("--collection", default="", metavar="NAME", help="Put these documents in a named collection.")
@click.option("--glob", metavar="PATTERN", help="Only files whose name or relative path match (e.g. '*.md').")
@click.option(
    "--chunk-tokens",
    type=click.IntRange(32, 500),
    default=None,
    help="Chunk size in embedding tokens (default 256).",
)
@click.option(
    "--overlap",
    type=click.IntRange(0, 128),
    default=None,
    help="Overlap between chunks in tokens (default 32).",
)
@click.option(
    "--max-file-mb",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Skip files larger than this (default 64).",
)
@click.option("--hidden", is_flag=True, help="Include hidden files and directories.")
@follow_symlinks_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the counts and problems.")
@kb_option
@embed_model_option
@threads_option
@click.pass_obj
def index_add(
    app: AppContext,
    paths: tuple[str, ...],
    collection: str,
    glob: str | None,
    chunk_tokens: int | None,
    overlap: int | None,
    max_file_mb: int | None,
    hidden: bool,
    follow_symlinks: bool,
    as_json: bool,
    kb: str | None,
    embed_model: str | None,
    threads: int | None,
) -> int:
    """Add files and directories: txt, md, rst, html, man pages, pdf, code, BEIR JSONL (text, html and
    man pages may be .gz).

    Unchanged files are skipped; changed ones are re-indexed. Ctrl+C leaves the
    index consistent and the next run continues where it stopped.
    """
    import os

    from ..knowledge.ingest import DEFAULT_MAX_FILE_MB, IngestOptions, Ingestor

    missing = [p for p in paths if not os.path.lexists(Path(p).expanduser())]
    if len(missing) == len(paths):
        raise UsageError(f"{missing[0]}: no such file or directory; nothing to index")
    base = _open(app, kb, embed_model, create=True, readonly=False, need_vectors=True, threads=threads)
    assert base.embedder is not None
    opts = IngestOptions.for_store(
        base.store,
        max_tokens=chunk_tokens,
        overlap=overlap,
        collection=collection,
        glob=glob,
        max_file_bytes=(max_file_mb or DEFAULT_MAX_FILE_MB) << 20,
        include_hidden=hidden,
        follow_symlinks=follow_symlinks,
    )
    try:
        ing = Ingestor(base.store, base.embedder, opts)
        files, total = ing.plan(paths)
        if not files and not ing.report.problems:
            raise UsageError(
                "no files to index under " + ", ".join(paths) + (f" matching {glob!r}" if glob else "")
            )
        with progress_bar(total, "Indexing") as update:
            try:
                ing.add(paths, planned=files, on_progress=update)
            except KeyboardInterrupt:
                click.echo("", err=True)
                click.secho(
                    "Interrupted: what was written is consistent; run the same command again to continue.",
                    err=True,
                )
                return 130
        return _report(ing.report, base, as_json, app.verbose)
    finally:
        base.close()


def _report(report: Any, base: KnowledgeBase, as_json: bool, verbose: bool) -> int:
    totals = {"documents": base.store.document_count(), "chunks": base.store.chunk_count()}
    if as_json:
        click.echo(
            json.dumps({"kb": str(base.path), **report.as_dict(), "kb_totals": totals}, ensure_ascii=False)
        )
    else:
        _print_problems(report.problems, verbose)
        click.echo(f"{base.path}: {_summary(report, totals)}")
    return 1 if report.failed and not (report.added or report.updated or report.unchanged) else 0


@index_group.command("sync")
@follow_symlinks_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the counts and problems.")
@kb_option
@embed_model_option
@threads_option
@click.pass_obj
def index_sync(
    app: AppContext,
    follow_symlinks: bool,
    as_json: bool,
    kb: str | None,
    embed_model: str | None,
    threads: int | None,
) -> int:
    """Look again at every path added before: index new and changed files, remove deleted ones."""
    from ..knowledge.ingest import IngestOptions, Ingestor

    base = _open(app, kb, embed_model, readonly=False, need_vectors=True, threads=threads)
    assert base.embedder is not None
    opts = IngestOptions.for_store(base.store, follow_symlinks=follow_symlinks)
    try:
        ing = Ingestor(base.store, base.embedder, opts)
        plan = ing.plan_sync()
        with progress_bar(plan.total, "Syncing") as update:
            try:
                report = ing.sync(plan, on_progress=update)
            except KeyboardInterrupt:
                click.secho("\nInterrupted: the index is consistent; run sync again to continue.", err=True)
                return 130
        return _report(report, base, as_json, app.verbose)
    finally:
        base.close()


def _store(app: AppContext, kb: str | None, *, readonly: bool = True) -> Any:
    from ..knowledge.store import KnowledgeStore, resolve_kb_path

    return KnowledgeStore(resolve_kb_path(kb, app.home.knowledge_dir), create=False, readonly=readonly)


@index_group.command("list")
@click.option("--collection", metavar="NAME", help="Only this collection.")
@click.option("--excluded", is_flag=True, help="List the paths `index remove` excluded from sync instead.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per document.")
@kb_option
@click.pass_obj
def index_list(
    app: AppContext, collection: str | None, excluded: bool, as_json: bool, kb: str | None
) -> None:
    """List the documents in a knowledge base."""
    with _store(app, kb) as store:
        if excluded:
            paths = store.exclusions()
            for e in paths:
                click.echo(json.dumps({"excluded": e}, ensure_ascii=False) if as_json else e)
            if not as_json:
                click.secho(f"{len(paths)} excluded path(s)", dim=True, err=True)
            return
        docs = store.documents(collection=collection)
        for d in docs:
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "doc_id": d.doc_key,
                            "uri": d.uri,
                            "title": d.title,
                            "kind": d.kind,
                            "collection": d.collection,
                            "chunks": d.n_chunks,
                            "tokens": d.n_tokens,
                            "complete": d.complete,
                            "updated_at": d.updated_at,
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                flag = "" if d.complete else "  (incomplete: run `index add` again)"
                coll = f" [{d.collection}]" if d.collection else ""
                click.echo(f"{d.uri}{coll}  {d.n_chunks} chunks{flag}")
        if not as_json:
            click.secho(f"{len(docs)} document(s)", dim=True, err=True)


@index_group.command("remove")
@click.argument("targets", nargs=-1)
@click.option("--collection", metavar="NAME", help="Remove every document of this collection.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the count removed.")
@kb_option
@click.pass_obj
def index_remove(
    app: AppContext, targets: tuple[str, ...], collection: str | None, as_json: bool, kb: str | None
) -> int:
    """Remove documents: by path (a directory removes everything under it), JSONL id or uri.

    A path inside a folder that `index sync` looks at stays out: it is recorded as excluded
    (`index list --excluded`) until you `index add` that path again.
    """
    if not targets and collection is None:
        raise UsageError("give paths or ids to remove, or --collection NAME")
    with _store(app, kb, readonly=False) as store:
        result = store.remove(targets, collection=collection)
    n = len(result.removed)
    if as_json:
        click.echo(json.dumps({"removed": n, "not_found": result.not_found, "excluded": result.excluded}))
    else:
        for m in result.not_found:
            click.secho(f"not found: {m}", err=True, fg="yellow")
        click.echo(f"removed {n} document(s)")
        for e in result.excluded:
            click.secho(f"excluded from sync: {e} (`index add` it to include it again)", err=True, dim=True)
    return 1 if result.not_found and not n else 0


@index_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@kb_option
@click.pass_obj
def index_stats(app: AppContext, as_json: bool, kb: str | None) -> None:
    """Documents, chunks, tokens, collections, embedding model and size of a knowledge base."""
    with _store(app, kb) as store:
        st = store.stats()
    if as_json:
        click.echo(json.dumps(st, ensure_ascii=False))
        return
    model = st["embedding_model"]
    click.echo(f"knowledge base   {st['path']}")
    click.echo(
        f"documents        {st['documents']:,}"
        + (f" ({st['incomplete_documents']} incomplete)" if st["incomplete_documents"] else "")
    )
    click.echo(f"chunks           {st['chunks']:,} ({st['tokens']:,} tokens)")
    if st["collections"]:
        click.echo(
            "collections      " + ", ".join(f"{k or '(none)'}: {v}" for k, v in st["collections"].items())
        )
    if st["kinds"]:
        click.echo("kinds            " + ", ".join(f"{k}: {v}" for k, v in st["kinds"].items()))
    if model:
        click.echo(f"embedding model  {model['name']} ({model['dim']} dims, sha256 {model['sha256'][:12]}…)")
    size = st["file_bytes"] + st["wal_bytes"]
    per = f", {st['bytes_per_chunk']:,.0f} bytes/chunk" if st["bytes_per_chunk"] else ""
    click.echo(f"size             {size / 1e6:,.1f} MB{per}")


@index_group.command("eval")
@click.option(
    "--queries", "queries_path", required=True, type=click.Path(dir_okay=False), help="BEIR queries JSONL."
)
@click.option("--qrels", "qrels_path", required=True, type=click.Path(dir_okay=False), help="BEIR qrels TSV.")
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice([*MODES, "all"]),
    help="Search mode(s) (default: all three).",
)
@click.option("--collection", metavar="NAME", help="Only search this collection.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per mode.")
@kb_option
@embed_model_option
@threads_option
@click.pass_obj
def index_eval(
    app: AppContext,
    queries_path: str,
    qrels_path: str,
    modes: tuple[str, ...],
    collection: str | None,
    as_json: bool,
    kb: str | None,
    embed_model: str | None,
    threads: int | None,
) -> None:
    """Measure retrieval on labelled data: nDCG@10, Recall@10, Recall@100, MRR@10 per mode."""
    from ..knowledge.eval import evaluate, load_qrels, load_queries

    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path)
    chosen = list(MODES) if not modes or "all" in modes else list(dict.fromkeys(modes))
    base = _open(app, kb, embed_model, need_vectors=any(m != "bm25" for m in chosen), threads=threads)
    try:
        if not as_json:
            click.echo(
                f"{'mode':8} {'queries':>7} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7} {'MRR@10':>7} {'ms/q':>7}"
            )
        for mode in chosen:
            n = sum(1 for q in queries if q.id in qrels)
            with progress_bar(n, f"eval {mode}") as update:
                res = evaluate(
                    base.searcher, queries, qrels, mode=mode, collection=collection, progress=update
                )
            if as_json:
                click.echo(json.dumps(res.as_dict()))
            else:
                click.echo(
                    f"{mode:8} {res.queries:7d} {res.ndcg_10:8.4f} {res.recall_10:7.4f} {res.recall_100:7.4f} "
                    f"{res.mrr_10:7.4f} {res.ms_per_query:7.1f}"
                )
    finally:
        base.close()


@click.command("search")
@click.argument("query", nargs=-1)
@click.option(
    "-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Number of results."
)
@click.option("--mode", type=click.Choice(MODES), default="hybrid", show_default=True, help="Search mode.")
@click.option("--collection", metavar="NAME", help="Only search this collection.")
@click.option(
    "--chunks", is_flag=True, help="Rank chunks instead of documents (a document may appear twice)."
)
@click.option(
    "--queries",
    "queries_path",
    type=click.Path(dir_okay=False),
    help='Batch: BEIR queries JSONL ({"_id", "text"} a line); prints one JSON line per query.',
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (one object; one line per query with --queries)."
)
@kb_option
@embed_model_option
@threads_option
@click.pass_obj
def search_command(
    app: AppContext,
    query: tuple[str, ...],
    k: int,
    mode: str,
    collection: str | None,
    chunks: bool,
    queries_path: str | None,
    as_json: bool,
    kb: str | None,
    embed_model: str | None,
    threads: int | None,
) -> None:
    """Search the knowledge base (documents ranked by their best chunk).

    \b
        assistant search "how do I rotate the logs" -k 5
        assistant search --queries queries.jsonl -k 100 --mode bm25 --json
    """
    from ..knowledge.eval import load_queries

    text = " ".join(query).strip()
    if queries_path is None and not text:
        raise UsageError('give a query (assistant search "...") or --queries FILE.jsonl')
    if queries_path is not None and text:
        raise UsageError("give either a query or --queries, not both")
    base = _open(app, kb, embed_model, need_vectors=False, threads=threads)
    try:
        used = base.default_mode(mode)
        if used != mode:
            click.secho(f"note: keyword search only: {base.vector_unavailable}", err=True, dim=True)
        s = base.searcher
        if queries_path is not None:
            qs = load_queries(queries_path)
            for q in qs:
                hits = (
                    s.search(q.text, k, mode=used, collection=collection)
                    if chunks
                    else s.search_documents(q.text, k, mode=used, collection=collection)
                )
                results = [
                    {
                        "doc_id": h.doc_key,
                        "chunk_id": h.chunk_id,
                        "score": round(h.score, 6),
                        "title": h.title,
                        "uri": h.uri,
                    }
                    for h in hits
                ]
                click.echo(json.dumps({"query_id": q.id, "results": results}, ensure_ascii=False))
            return
        hits = (
            s.search(text, k, mode=used, collection=collection)
            if chunks
            else s.search_documents(text, k, mode=used, collection=collection)
        )
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "query": text,
                        "mode": used,
                        "results": [h.as_dict() for h in hits],
                        "timings": {key: round(v, 2) for key, v in s.last_timings.items()},
                    },
                    ensure_ascii=False,
                )
            )
            return
        if not hits:
            click.echo("no results")
            return
        from ..knowledge.grounding import Source

        for i, h in enumerate(hits, start=1):
            src = Source.from_hit(i, h)
            where = ", ".join(x for x in (h.uri, src.location) if x)
            click.secho(f"{i}. {h.title}  ", bold=True, nl=False)
            click.secho(f"{h.score:.4f}", dim=True)
            click.secho(f"   {where}", fg="cyan")
            click.echo(f"   {src.excerpt}")
    finally:
        base.close()
