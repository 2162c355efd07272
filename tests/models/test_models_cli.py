"""`assistant models` list/show output from headers, without loading weights."""

from __future__ import annotations

import json
from pathlib import Path

from support.gguf_factory import write_header_only

DEFAULT = "SmolLM2-135M-grounded.Q8_0.gguf"
STOCK = "SmolLM2-135M-Instruct.Q8_0.gguf"


def _built_sha256(home: Path, name: str = DEFAULT) -> str:
    lock = json.loads((home / f"{name}.lock.json").read_text())
    return lock["output"]["sha256"]


def test_list_table(run_cli, home_with_default):
    write_header_only(home_with_default / "minilm.gguf", "bert")
    r = run_cli("models", home=home_with_default)
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["NAME", "ROLE", "ARCH", "PARAMS", "QUANT", "SIZE", "CTX", "TEMPLATE", "SHA256"]
    by_name = {row.split()[0]: row.split() for row in rows if row.strip()}
    for name in (DEFAULT, STOCK):  # the fine-tune keeps the stock model's shape, template and window
        size = (home_with_default / name).stat().st_size
        assert by_name[name] == [
            name,
            "chat",
            "llama",
            "135M",
            "Q8_0",
            f"{size / 1e6:.1f}",
            "MB",
            "8,192",
            "yes",
            _built_sha256(home_with_default, name)[:12],
        ]
    assert _built_sha256(home_with_default) != _built_sha256(home_with_default, STOCK)
    assert "minilm.gguf" in r.stdout and "embedding" in r.stdout
    assert "Q4_1" not in r.stdout  # the build's source in sources/ is not a model to run


def test_list_json(run_cli, home_with_default):
    r = run_cli("models", "list", "--json", home=home_with_default)
    lines = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert sorted(d["name"] for d in lines) == [STOCK, DEFAULT]
    d = next(d for d in lines if d["name"] == DEFAULT)
    assert d["architecture"] == "llama"
    assert d["quant_type"] == "Q8_0"
    assert d["context_length"] == 8192
    assert d["chat_template"] is True
    assert d["sha256"] == _built_sha256(home_with_default)
    assert d["size_bytes"] == (home_with_default / DEFAULT).stat().st_size


def test_show(run_cli, home_with_default):
    r = run_cli("models", "show", "smollm2-135m-g", home=home_with_default)
    assert r.returncode == 0, r.stderr
    assert "llama.context_length = 8192" in r.stdout
    assert "tokenizer.ggml.tokens = <array of 49,152>" in r.stdout
    j = json.loads(
        run_cli("models", "show", "--json", "SmolLM2-135M-Instruct", home=home_with_default).stdout
    )
    assert j["metadata"]["general.architecture"] == "llama"


def test_empty_home(run_cli, home):
    r = run_cli("models", home=home)
    assert r.returncode == 0
    assert "No models in" in r.stdout
