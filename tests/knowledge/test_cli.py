"""`assistant index ...` and `assistant search` end to end (subprocesses, real models)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from assistant.knowledge.store import KnowledgeStore

from .conftest import ROOT, assert_consistent


def test_help_for_every_command(run_cli) -> None:
    for args in (["index"], ["index", "add"], ["index", "sync"], ["index", "list"], ["index", "remove"],
                 ["index", "stats"], ["index", "eval"], ["search"]):  # fmt: skip
        r = run_cli(*args, "--help")
        assert r.returncode == 0 and "Usage:" in r.stdout and len(r.stdout) > 200, args


def test_index_search_list_stats_remove(kb_home, docs_dir, run_cli) -> None:
    r = run_cli("index", "add", str(docs_dir), "--collection", "notes", "--json", home=kb_home)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["added"] == 4 and rep["failed"] == 0 and rep["kb"].endswith("knowledge/default.db")

    r = run_cli("search", "how long are logs kept", "-k", "2", "--json", home=kb_home)
    obj = json.loads(r.stdout)
    assert obj["results"][0]["uri"].endswith("guide.md") and obj["results"][0]["lines"] == [7, 9]

    r = run_cli("search", "how long are logs kept", "-k", "2", home=kb_home)
    assert r.returncode == 0 and "1. Widget guide" in r.stdout and "guide.md, lines 7-9" in r.stdout

    r = run_cli("index", "list", "--json", home=kb_home)
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(docs) == 4 and all(d["collection"] == "notes" and d["complete"] for d in docs)

    r = run_cli("index", "stats", "--json", home=kb_home)
    st = json.loads(r.stdout)
    assert st["documents"] == 4 and st["embedding_model"]["dim"] == 384 and st["bytes_per_chunk"] > 0

    r = run_cli("index", "remove", str(docs_dir / "facts.txt"), home=kb_home)
    assert r.returncode == 0 and "removed 1 document" in r.stdout
    r = run_cli("index", "remove", "--collection", "notes", "--json", home=kb_home)
    assert json.loads(r.stdout)["removed"] == 3


def test_batch_search_prints_one_json_line_per_query(kb_home, docs_dir, tmp_path, run_cli) -> None:
    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text(
        '{"_id": "d1", "title": "Tea", "text": "Green tea is brewed at 80 degrees."}\n'
        '{"_id": "d2", "title": "Coffee", "text": "Espresso is brewed under 9 bar of pressure."}\n'
    )
    kb = tmp_path / "beir.db"
    assert run_cli("index", "add", str(jsonl), "--kb", str(kb), home=kb_home).returncode == 0
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"_id": "q1", "text": "tea temperature"}\n{"_id": "q2", "text": "espresso pressure"}\n'
    )
    for mode in ("hybrid", "vector", "bm25"):
        r = run_cli("search", "--queries", str(queries), "-k", "2", "--mode", mode, "--json", "--kb", str(kb),
                    home=kb_home)  # fmt: skip
        assert r.returncode == 0, r.stderr
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        assert [o["query_id"] for o in lines] == ["q1", "q2"]
        assert lines[0]["results"][0]["doc_id"] == "d1" and lines[1]["results"][0]["doc_id"] == "d2"
        assert set(lines[0]["results"][0]) == {"doc_id", "chunk_id", "score", "title", "uri"}
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    r = run_cli("index", "eval", "--queries", str(queries), "--qrels", str(qrels), "--json", "--kb", str(kb),
                home=kb_home)  # fmt: skip
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["mode"] for x in rows] == ["hybrid", "vector", "bm25"]
    assert all(x["ndcg@10"] == 1.0 and x["recall@100"] == 1.0 for x in rows)


def test_errors_are_one_clear_line(kb_home, tmp_path, run_cli, docs_dir, default_model_path) -> None:
    r = run_cli("search", "anything", home=kb_home)
    assert r.returncode == 2 and r.stderr.startswith("Error: no knowledge base at")
    r = run_cli("index", "add", str(tmp_path / "nope"), home=kb_home)
    assert r.returncode == 2 and "no such file or directory" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "1", "text": "ok"}\n{broken\n')
    r = run_cli("index", "add", str(bad), home=kb_home)
    assert r.returncode == 0 and "line 2: not valid JSON" in r.stderr
    # a knowledge base built with one embedding model refuses another
    r = run_cli("index", "add", str(docs_dir), "--embed-model", str(default_model_path), home=kb_home)
    assert r.returncode == 2 and "was built with the embedding model" in r.stderr
    r = run_cli("index", "add", str(docs_dir), "--kb", str(tmp_path), home=kb_home)
    assert r.returncode == 2 and "is a directory" in r.stderr
    not_db = tmp_path / "notes.db"
    not_db.write_text("hello, not sqlite")
    r = run_cli("index", "stats", "--kb", str(not_db), home=kb_home)
    assert r.returncode == 2 and r.stderr.startswith("Error:") and "Traceback" not in r.stderr


@pytest.mark.slow
def test_a_killed_ingest_leaves_a_consistent_index_and_resumes(kb_home, scifact_subset, tmp_path) -> None:
    kb = tmp_path / "killed.db"
    corpus = tmp_path / "corpus.jsonl"
    lines = scifact_subset.corpus.read_text().splitlines()[:60]
    corpus.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env["ASSISTANT_HOME"] = str(kb_home)
    cmd = [sys.executable, "-m", "assistant", "index", "add", str(corpus), "--kb", str(kb)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        n = 0
        while time.time() < deadline:
            time.sleep(0.5)
            if kb.exists():
                try:
                    s = KnowledgeStore(kb, readonly=True)
                    n = len(s.documents())
                    s.close()
                except Exception:
                    n = 0
            if n >= 10:
                break
        assert n >= 10, "the ingest did not get going"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    s = KnowledgeStore(kb, readonly=True)
    assert_consistent(s)
    partial = len(s.documents())
    s.close()
    assert partial < len(lines)
    r = subprocess.run([*cmd, "--json"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    s = KnowledgeStore(kb, readonly=True)
    assert len(s.documents()) == len(lines) and all(d.complete for d in s.documents())
    assert_consistent(s)
    s.close()
