"""`assistant models` list/show output from headers, without loading weights."""

from __future__ import annotations

import json

from support.gguf_factory import write_header_only


def test_list_table(run_cli, home_with_default):
    write_header_only(home_with_default / "minilm.gguf", "bert")
    r = run_cli("models", home=home_with_default)
    assert r.returncode == 0, r.stderr
    header, smol = r.stdout.splitlines()[0:2]
    assert header.split() == ["NAME", "ROLE", "ARCH", "PARAMS", "QUANT", "SIZE", "CTX", "TEMPLATE", "SHA256"]
    assert (
        smol.split()
        == [
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "chat",
            "llama",
            "135M",
            "Q4_1",
            "98.4",
            "MB",
            "8,192",
            "yes",
            "b179c9523d0e",
        ]
        or "SmolLM2" in r.stdout
    )
    assert "minilm.gguf" in r.stdout and "embedding" in r.stdout


def test_list_json(run_cli, home_with_default):
    r = run_cli("models", "list", "--json", home=home_with_default)
    (line,) = r.stdout.strip().splitlines()
    d = json.loads(line)
    assert d["architecture"] == "llama"
    assert d["quant_type"] == "Q4_1"
    assert d["context_length"] == 8192
    assert d["chat_template"] is True
    assert d["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert d["size_bytes"] == 98_362_432


def test_show(run_cli, home_with_default):
    r = run_cli("models", "show", "smollm2", home=home_with_default)
    assert r.returncode == 0, r.stderr
    assert "llama.context_length = 8192" in r.stdout
    assert "tokenizer.ggml.tokens = <array of 49,152>" in r.stdout
    j = json.loads(run_cli("models", "show", "--json", "smollm2", home=home_with_default).stdout)
    assert j["metadata"]["general.architecture"] == "llama"


def test_empty_home(run_cli, home):
    r = run_cli("models", home=home)
    assert r.returncode == 0
    assert "No models in" in r.stdout
