"""The question file: both layouts, one-line errors naming the file and line, --limit and --sample."""

from __future__ import annotations

import json

import pytest

from assistant.errors import UsageError
from assistant.evaluation.questions import contexts, load_questions, select

MLQA = {
    "id": "q1",
    "title": "Eiffel Tower",
    "context": "The tower opened in 1889.",
    "context_id": "c0",
    "question": "When did the tower open?",
    "answers": {"text": ["1889", "in 1889"], "answer_start": [20, 17]},
}


def write(tmp_path, *lines):
    p = tmp_path / "qa.jsonl"
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return p


def test_both_layouts(tmp_path):
    p = write(tmp_path, MLQA, "", {"question": "Capital of France?", "answer": "Paris"},
              {"question": "Two primes?", "answer": ["2", "3"], "id": 7})  # fmt: skip
    a, b, c = load_questions(p)
    assert (a.id, a.golds, a.context_id, a.title, a.line) == (
        "q1",
        ("1889", "in 1889"),
        "c0",
        "Eiffel Tower",
        1,
    )
    assert a.context == "The tower opened in 1889."
    assert (b.id, b.golds, b.context, b.context_id, b.line) == ("line-3", ("Paris",), None, None, 3)
    assert (c.id, c.golds) == ("7", ("2", "3"))


def test_context_without_id_gets_one_from_its_text(tmp_path):
    same = {"question": "q?", "answer": "a", "context": "Some paragraph."}
    a, b = load_questions(write(tmp_path, {**same, "id": "1"}, {**same, "id": "2"}))
    assert a.context_id == b.context_id and a.context_id.startswith("ctx-")
    assert len(contexts([a, b])) == 1


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "line 2: not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ('{"answer": "x"}', 'line 2: expected a non-empty "question"'),
        ('{"question": "q?"}', "line 2: expected the gold answers"),
        ('{"question": "q?", "answers": {"text": [" "]}}', "line 2: no gold answer"),
        ('{"question": "q?", "answer": "a", "context": 5}', "line 2: context should be a string"),
        ('{"question": "q?", "answer": "a", "id": "q1"}', "line 2: duplicate id 'q1' (first on line 1)"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, needle):
    p = write(tmp_path, MLQA, line)
    with pytest.raises(UsageError) as e:
        load_questions(p)
    assert str(e.value).startswith(f"{p} {needle}"), str(e.value)
    assert "\n" not in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(UsageError, match="no such question file"):
        load_questions(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(UsageError, match="no questions"):
        load_questions(tmp_path / "empty.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe{")
    with pytest.raises(UsageError, match="not UTF-8"):
        load_questions(tmp_path / "bin.jsonl")


def test_limit_and_sample(tmp_path):
    qs = load_questions(
        write(tmp_path, *({"question": f"q{i}?", "answer": "a", "id": str(i)} for i in range(10)))
    )
    assert [q.id for q in select(qs, limit=3, sample=None, seed=0)] == ["0", "1", "2"]
    one = select(qs, limit=None, sample=4, seed=1)
    assert len(one) == 4 and [q.id for q in one] == sorted((q.id for q in one), key=int)  # file order
    assert one == select(qs, limit=None, sample=4, seed=1)  # the seed decides
    assert one != select(qs, limit=None, sample=4, seed=2)
    assert select(qs, limit=None, sample=50, seed=0) == qs
    with pytest.raises(UsageError, match="give one"):
        select(qs, limit=2, sample=2, seed=0)
