"""Every answer metric against values computed by hand (SQuAD v1.1 normalisation and its edge cases)."""

from __future__ import annotations

import pytest

from assistant.evaluation.metrics import (
    citations_correct,
    citations_valid,
    contains_gold,
    exact_match,
    is_refusal,
    normalize_answer,
    strip_citations,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Eiffel Tower", "eiffel tower"),  # case, article
        ("  an   apple,  a pear!  ", "apple pear"),  # articles, punctuation, spaces
        ("U.S.A.", "usa"),  # punctuation is removed, not replaced by a space (SQuAD)
        ("well-known", "wellknown"),
        ("Theatre anthem", "theatre anthem"),  # articles only as whole words
        ("the", ""),
        ("", ""),
        ("Paris\n\tFrance", "paris france"),
    ],
)
def test_normalisation(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_best_of_the_golds():
    assert exact_match("the Louvre.", ["Louvre"]) == 1.0
    assert exact_match("Louvre museum", ["Louvre"]) == 0.0
    assert exact_match("1889", ["in 1887", "1889"]) == 1.0
    assert exact_match("", ["Louvre"]) == 0.0


def test_token_f1_by_hand():
    # "the cat sat on mat" vs "cat on the mat": normalised pred [cat sat on mat], gold [cat on mat]
    # overlap 3; precision 3/4, recall 3/3; F1 = 2*0.75*1/(1.75) = 6/7
    assert token_f1("The cat sat on the mat", ["cat on the mat"]) == pytest.approx(6 / 7)
    # repeated words count once per occurrence: pred [a? no] -> [paris paris], gold [paris]
    # overlap min(2,1)=1; precision 1/2, recall 1; F1 = 2/3
    assert token_f1("Paris, Paris", ["Paris"]) == pytest.approx(2 / 3)
    # best gold wins: vs "London" 0, vs "Paris France" P=1/2 R=1/2 -> 0.5 ... vs "paris" P=1/2 R=1 -> 2/3
    assert token_f1("Paris Texas", ["London", "Paris France", "Paris"]) == pytest.approx(2 / 3)
    assert token_f1("nothing in common", ["Paris"]) == 0.0


def test_f1_empty_answer_and_empty_gold():
    assert token_f1("", ["Paris"]) == 0.0
    assert token_f1("The.", ["the"]) == 1.0  # both normalise to nothing: SQuAD counts it a match
    assert token_f1("Paris", ["the"]) == 0.0


def test_contains_whole_words_after_normalising():
    assert contains_gold("It was built in 1889 by Gustave Eiffel.", ["1889"]) == 1.0
    assert contains_gold("THE EIFFEL TOWER, in Paris", ["Eiffel Tower"]) == 1.0
    assert contains_gold("It was the start.", ["art"]) == 0.0  # not inside a word
    assert contains_gold("Paris", ["Paris, France"]) == 0.0  # the gold must be in the answer, not around
    assert contains_gold("Lyon, then Paris", ["Marseille", "paris"]) == 1.0  # any gold
    assert contains_gold("", ["Paris"]) == 0.0
    assert contains_gold("A tree.", ["the"]) == 0.0  # an empty gold is not in every answer
    assert contains_gold("", ["the"]) == 1.0  # ... only an exact (empty) match


def test_citations_are_not_scored_as_words():
    assert strip_citations("Paris [1][2, 3].") == "Paris ."
    assert exact_match("Paris [1].", ["Paris"]) == 1.0
    assert token_f1("Paris [1]", ["Paris"]) == 1.0
    assert contains_gold("In [2] 1889", ["2 1889"]) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "The sources do not say when it was built.",
        "The source doesn't mention the date.",
        "The context does not provide that information.",
        "This is not mentioned in the sources.",
        "There is no information about this.",
        "I don't know.",
        "I cannot answer that from the given text.",
    ],
)
def test_refusals(text):
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    ["It was built in 1889 [1].", "The sources say it opened in 1889.", "No, it is in Paris.", ""],
)
def test_not_refusals(text):
    assert not is_refusal(text)


def test_citation_validity():
    assert citations_valid("Paris [1], 1889 [2].", 2)
    assert not citations_valid("Paris [3].", 2)
    assert not citations_valid("Paris [1, 3].", 2)  # one invalid number is enough
    assert citations_valid("No citation at all.", 2)  # nothing cited is nothing invalid
    assert not citations_valid("Paris [1].", 0)  # no source was given
    assert citations_valid("`a[5]` is code", 1)  # code is not a citation


def test_citation_correctness():
    sources = ["The tower opened in 1889.", "Paris is in France."]
    assert citations_correct("It opened in 1889 [1].", sources, ["1889"]) is True
    assert citations_correct("It opened in 1889 [2].", sources, ["1889"]) is False
    assert citations_correct("1889 [1][2]", sources, ["1889"]) is True  # one cited source holds it
    assert citations_correct("It opened in 1889.", sources, ["1889"]) is None  # nothing cited
    assert citations_correct("It opened in 1889 [7].", sources, ["1889"]) is None  # only made-up numbers
    assert citations_correct("France [2]", sources, ["The France"]) is True  # normalised both sides
