"""From result rows to what a team reads: the summary per setup, the terminal table (rows: the
measures; columns: the setups), the Markdown report and the ``--json`` lines.

The ``--json`` line and summary keys are an interface (other tooling reads them): ``JSON_KEYS`` and
``SUMMARY_KEYS`` hold exactly what issue 14 specifies; the other measures are in the table, the
Markdown and the results file.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

JSON_KEYS = ("setup", "model", "id", "question", "answer", "gold", "exact", "f1", "contains", "recall",
             "citations_valid", "ttft_ms", "decode_tps", "prompt_tokens")  # fmt: skip
SUMMARY_KEYS = ("n", "exact", "f1", "contains", "recall", "citations_valid", "ttft_ms_median", "ttft_ms_p90",
                "decode_tps_median", "prompt_tokens_mean", "peak_rss_mb")  # fmt: skip


def json_line(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in JSON_KEYS}


def _mean(values: Sequence[Any]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return round(statistics.fmean(known), 4) if known else None


def _median(values: Sequence[Any]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return round(statistics.median(known), 1) if known else None


def p90(values: Sequence[Any]) -> float | None:
    """The 90th percentile, nearest rank: a value that was measured, at or above 90% of them."""
    known = sorted(float(v) for v in values if v is not None)
    return round(known[math.ceil(0.9 * len(known)) - 1], 1) if known else None


def summarize_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every measure of one setup (SUMMARY_KEYS and the table's others)."""
    col = {k: [r.get(k) for r in rows] for k in ("exact", "f1", "contains", "recall", "citations_valid",
           "citations_correct", "refusal", "ttft_ms", "prefill_tps", "decode_tps", "prompt_tokens",
           "completion_tokens", "retrieval_ms", "rss_mb")}  # fmt: skip
    hits = [r for r in rows if r.get("recall") == 1.0]
    misses = [r for r in rows if r.get("recall") == 0.0]
    grounded = [r for r in rows if r.get("citations_valid") is not None]
    return {
        "n": len(rows),
        "exact": _mean(col["exact"]),
        "f1": _mean(col["f1"]),
        "contains": _mean(col["contains"]),
        "recall": _mean(col["recall"]),
        "citations_valid": _mean(col["citations_valid"]),
        "ttft_ms_median": _median(col["ttft_ms"]),
        "ttft_ms_p90": p90(col["ttft_ms"]),
        "decode_tps_median": _median(col["decode_tps"]),
        "prompt_tokens_mean": _mean(col["prompt_tokens"]),
        "peak_rss_mb": max((v for v in col["rss_mb"] if v is not None), default=None),
        # the table's other rows
        "contains_recall_hit": _mean([r["contains"] for r in hits]),
        "contains_recall_miss": _mean([r["contains"] for r in misses]),
        "cites": _mean([bool(r.get("citations_correct") is not None) for r in grounded])
        if grounded
        else None,
        "citations_correct": _mean(col["citations_correct"]),
        "refusals": _mean(col["refusal"]),
        "prefill_tps_median": _median(col["prefill_tps"]),
        "completion_tokens_mean": _mean(col["completion_tokens"]),
        "retrieval_ms_median": _median(col["retrieval_ms"]),
    }


def summarize(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The measures of each setup name (in ``names`` order), over every row of the run."""
    return {name: summarize_rows([r for r in rows if r["setup"] == name]) for name in names}


def summary_json(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"summary": {name: {k: s[k] for k in SUMMARY_KEYS} for name, s in summary.items()}}


def _num(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _seconds(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.0f} s" if v < 120 else f"{v / 60:.0f} min"


# (label, summary key, format): the rows of the comparison table
ROWS: tuple[tuple[str, str, str], ...] = (
    ("questions", "n", "d"),
    ("exact match", "exact", ".2f"),
    ("token F1", "f1", ".2f"),
    ("contains a gold answer", "contains", ".2f"),
    ("gold context retrieved (recall@k)", "recall", ".2f"),
    ("  contains, gold retrieved", "contains_recall_hit", ".2f"),
    ("  contains, gold missed", "contains_recall_miss", ".2f"),
    ('refusals ("not in the sources")', "refusals", ".2f"),
    ("answers citing a source", "cites", ".2f"),
    ("citations valid", "citations_valid", ".2f"),
    ("citations correct", "citations_correct", ".2f"),
    ("time to first token, median (ms)", "ttft_ms_median", ",.0f"),
    ("time to first token, p90 (ms)", "ttft_ms_p90", ",.0f"),
    ("retrieval, median (ms)", "retrieval_ms_median", ",.1f"),
    ("prompt tokens, mean", "prompt_tokens_mean", ",.0f"),
    ("answer tokens, mean", "completion_tokens_mean", ".0f"),
    ("prefill tok/s, median", "prefill_tps_median", ",.0f"),
    ("decode tok/s, median", "decode_tps_median", ".0f"),
    ("peak RSS (MB)", "peak_rss_mb", ",.0f"),
)


def table_cells(summary: dict[str, dict[str, Any]], costs: dict[str, float | None]) -> list[list[str]]:
    """Header row, then one row per measure; the last row is the cost to update."""
    names = list(summary)
    out = [["", *names]]
    for label, key, spec in ROWS:
        out.append([label, *(_num(summary[n][key], spec) for n in names)])
    out.append(["cost to update (build, training)", *(_seconds(costs.get(n)) for n in names)])
    return out


def terminal_table(summary: dict[str, dict[str, Any]], costs: dict[str, float | None]) -> str:
    cells = table_cells(summary, costs)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for row in cells:
        first = row[0].ljust(widths[0])
        lines.append(
            "  ".join([first, *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]).rstrip()
        )
    return "\n".join(lines)


def markdown(
    summary: dict[str, dict[str, Any]], costs: dict[str, float | None], about: Sequence[tuple[str, str]]
) -> str:
    """The report to paste into a decision document: what was run, then the table."""
    cells = table_cells(summary, costs)
    head = ["# Evaluation", ""] + [f"- {k}: {v}" for k, v in about] + [""]
    rows = [f"| {' | '.join(cells[0])} |", "|" + "---|" * len(cells[0])]
    rows += [f"| {' | '.join(r)} |" for r in cells[1:]]
    notes = [
        "",
        "Accuracy: SQuAD normalisation (case, punctuation, articles, spaces), best of the gold answers; "
        "citation markers removed before scoring. Citations valid: every [n] is a source given; correct: a "
        "cited source holds a gold answer. Time to first token: a cold prompt, as a new `assistant ask` "
        "process; p90 by nearest rank. Cost to update: the build time in the model's lock plus the training time `assistant finetune` recorded for its adapters (for a runtime adapter, its training time); '-' when neither is recorded.",
    ]
    return "\n".join(head + rows + notes) + "\n"


def write_markdown(path: Path, text: str) -> None:
    from ..io import atomic_write_text

    atomic_write_text(path, text)
