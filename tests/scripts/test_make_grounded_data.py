"""The grounded fine-tune's answer lines (scripts/make_grounded_data.py): what the model is taught to say.

The shipped adapter is only as good as these targets, so their shaping rules are pinned here:
the sentence that holds the gold answer, narrowed when long, cited before its stop, and refusals
only for retrieval misses, capped.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def grounded():
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location("make_grounded_data", SCRIPTS / "make_grounded_data.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))


SOURCE = (
    "Plant cell\n\nStretchable support is a good way to describe what collenchyma does. "
    "Parts of the strings in celery are collenchyma. He got a Ph.D in Comparative literature "
    "from Princeton in 1978. Then he left…"
)


def test_the_sentence_holding_the_answer_not_its_neighbours(grounded):
    assert (
        grounded.answer_sentence(SOURCE, "strings in CELERY")
        == "Parts of the strings in celery are collenchyma."
    )
    # "Ph.D in" does not end a sentence (no capital after it)
    assert grounded.answer_sentence(SOURCE, "Comparative literature") == (
        "He got a Ph.D in Comparative literature from Princeton in 1978."
    )
    # a line break ends one; the answer's first match decides
    assert grounded.answer_sentence(SOURCE, "Plant cell") == "Plant cell"
    assert grounded.answer_sentence(SOURCE, "left") == "Then he left"
    assert grounded.answer_sentence(SOURCE, "xylem") is None
    assert grounded.answer_sentence(SOURCE, "  ") is None


def test_long_sentences_narrow_to_the_clauses_around_the_answer(grounded):
    long = (
        "In 1998, after years of negotiation between the two parties, which had been at odds since "
        "the collapse of the earlier agreement in the northern provinces and the unrest among farmers, "
        "traders and several local militias, the treaty was finally signed in Geneva by the foreign "
        "ministers of both countries, who had met there for a week."
    )
    assert len(long.split()) > grounded.LONGEST_SENTENCE
    geneva = grounded.answer_sentence(long, "Geneva")
    assert geneva == "the treaty was finally signed in Geneva by the foreign ministers of both countries"
    first = grounded.answer_sentence(long, "1998")
    assert first.startswith("In 1998, after years of negotiation")
    assert grounded.SHORTEST_CLAUSES <= len(first.split()) < len(long.split())
    assert not first.endswith(",")


def test_answers_cite_before_the_stop_and_fall_back_to_the_span(grounded):
    assert grounded.cite("It is collenchyma.", 2) == "It is collenchyma [2]."
    assert grounded.cite("the treaty was signed in Geneva", 1) == "the treaty was signed in Geneva [1]."
    assert grounded.cite('it was "soft-core nonsense."', 1) == 'it was "soft-core nonsense" [1].'
    assert grounded.cite("(It includes boosts.)", 3) == "(It includes boosts) [3]."
    # a sentence holding a closing quote keeps it (the sources' own sentence cut, focus.sentences)
    quoted = 'Intro. Mitchell questioned her "soft-core nonsense." It made money.'
    assert grounded.answer_sentence(quoted, "soft-core") == 'Mitchell questioned her "soft-core nonsense."'
    shown = ["Nothing relevant here.", SOURCE]
    assert grounded.target(["collenchyma"], shown, True, "sentence") == (
        "Stretchable support is a good way to describe what collenchyma does [2].",
        grounded.ANSWER,
    )
    assert grounded.target(["collenchyma"], shown, True) == ("collenchyma [2]", grounded.ANSWER)
    # normalisation finds it ("the" dropped, punctuation ignored), the verbatim search does not: the span
    assert grounded.target(["the celery's strings"], ["celerys strings"], True, "sentence") == (
        "the celery's strings [1]",
        grounded.ANSWER,
    )


def test_refusals_only_for_misses_and_capped(grounded):
    assert grounded.target(["xylem"], [SOURCE], False) == (grounded.REFUSAL, grounded.MISSED)
    assert grounded.target(["xylem"], [SOURCE], True) == (grounded.REFUSAL, grounded.FOCUSED_AWAY)
    lines = [(grounded.ANSWER, f"a{i}") for i in range(46)] + [(grounded.MISSED, f"r{i}") for i in range(20)]
    kept = grounded.cap_refusals(lines, 0.08, seed=0)
    refusals = [text for kind, text in kept if kind == grounded.MISSED]
    assert len(refusals) == 4 and len(kept) == 50  # 4 of 50 = 8%
    assert kept[:46] == lines[:46]  # every answer, in file order
    assert grounded.cap_refusals(lines, 0.08, seed=0) == kept  # seeded
