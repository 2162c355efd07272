"""Answer metrics: SQuAD v1.1 normalisation, exact match, token F1, "contains a gold answer",
refusals and citations. Pure functions over strings; each takes every gold answer and keeps the best.

Citation markers ("[1]", "[2, 3]") are removed before scoring: SQuAD normalisation would turn them
into words ("1") that no gold answer has.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from ..turn import CITATION, check_citations

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)

# "not in the sources" and its usual wordings: the model declined instead of answering
_REFUSAL = re.compile(
    r"\b(sources?|context|text|passage|documents?)\b[^.]{0,40}?\b((do|does|did)(\s+not|n[’']?t)|fails? to)\s+"
    r"(say|state|mention|contain|provide|specify|include|answer|tell|give)"
    r"|\bnot (mentioned|stated|provided|specified|given|found|included) in the (sources?|context|text)"
    r"|\b(no|not enough) information\b"
    r"|\bi (do not|don[’']?t) know\b"
    r"|\bi (cannot|can[’']?t|am unable to|[’']?m unable to) (answer|find|determine|tell)\b",
    re.I,
)


def strip_citations(text: str) -> str:
    """The answer without its citation markers."""
    return CITATION.sub("", text)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1: lower case, no punctuation, no articles (a, an, the), single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(answer: str, golds: Sequence[str]) -> float:
    pred = normalize_answer(strip_citations(answer))
    return float(any(pred == normalize_answer(g) for g in golds))


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)  # SQuAD: both empty is a match, one empty is 0
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(answer: str, golds: Sequence[str]) -> float:
    """Token overlap F1 with the best gold answer (SQuAD's bag of normalised words)."""
    pred = normalize_answer(strip_citations(answer)).split()
    return max((_f1(pred, normalize_answer(g).split()) for g in golds), default=0.0)


def _has(haystack: str, needle: str) -> bool:
    """Whole normalised words: 'art' is not in 'start'."""
    return bool(needle) and f" {needle} " in f" {haystack} "


def contains_gold(answer: str, golds: Sequence[str]) -> float:
    """1.0 when a gold answer occurs in the answer as whole words, after normalising both; a gold
    answer that normalises to nothing (e.g. "the") counts only as an exact match."""
    pred = normalize_answer(strip_citations(answer))
    return float(any(_has(pred, g) or (not g and not pred) for g in map(normalize_answer, golds)))


def is_refusal(answer: str) -> bool:
    """The model said the sources do not hold the answer (or that it does not know)."""
    return bool(_REFUSAL.search(answer))


def citations_valid(answer: str, n_sources: int) -> bool:
    """Every [n] in the answer is one of the sources 1..n_sources given (none cited is valid)."""
    return not check_citations(answer, n_sources).invalid


def citations_correct(answer: str, sources: Sequence[str], golds: Sequence[str]) -> bool | None:
    """Whether a source the answer cites holds a gold answer; None when it cites none that exists.
    ``sources`` are the texts of sources 1..n."""
    cited = check_citations(answer, len(sources)).valid
    if not cited:
        return None
    normal = [normalize_answer(g) for g in golds]
    return any(_has(normalize_answer(sources[n - 1]), g) for n in cited for g in normal)
