"""Every bad input: one line naming the file or value and what to do, exit 2, no traceback."""

from __future__ import annotations

import pytest
from support.gguf_factory import write_header_only, write_tiny_llama


def one_line_error(r, *needles: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("Error: ")
    for n in needles:
        assert n in err, (n, err)
    return err


def test_model_path_missing(run_cli, home, tmp_path):
    r = run_cli("ask", "--model", str(tmp_path / "nope.gguf"), "hi", home=home)
    one_line_error(r, "model file not found", "nope.gguf")


def test_not_a_gguf(run_cli, home, tmp_path):
    f = tmp_path / "weights.gguf"
    f.write_text("this is not a model\n")
    one_line_error(run_cli("ask", "--model", str(f), "hi", home=home), "weights.gguf", "not a GGUF file")


def test_truncated_gguf_data(run_cli, home, tmp_path, default_model_path):
    f = tmp_path / "cut.gguf"
    with open(default_model_path, "rb") as src, open(f, "wb") as dst:
        dst.write(src.read(20_000_000))
    one_line_error(run_cli("ask", "--model", str(f), "hi", home=home), "cut.gguf", "truncated", "missing")


def test_truncated_gguf_header(run_cli, home, tmp_path, default_model_path):
    f = tmp_path / "head.gguf"
    with open(default_model_path, "rb") as src, open(f, "wb") as dst:
        dst.write(src.read(5000))
    one_line_error(run_cli("ask", "--model", str(f), "hi", home=home), "head.gguf", "truncated")


def test_unknown_architecture(run_cli, home, tmp_path):
    f = write_header_only(tmp_path / "alien.gguf", "alien-arch")
    one_line_error(run_cli("ask", "--model", str(f), "hi", home=home), "alien.gguf", "'alien-arch'")


def test_embedding_model_for_chat(run_cli, home, tmp_path):
    f = write_header_only(tmp_path / "minilm.gguf", "bert")
    one_line_error(run_cli("ask", "--model", str(f), "hi", home=home), "minilm.gguf", "embedding model")


def test_adapter_for_chat(run_cli, home, tmp_path):
    f = write_header_only(tmp_path / "lora.gguf", "llama", general_type="adapter")
    one_line_error(run_cli("ask", "--model", str(f), "hi", home=home), "lora.gguf", "LoRA adapter")


def test_no_chat_template_names_chat_format(run_cli, home, tmp_path, default_model_path):
    f = write_tiny_llama(tmp_path / "bare.gguf", default_model_path, chat_template=None)
    one_line_error(run_cli("ask", "--model", str(f), "hi", home=home), "bare.gguf", "--chat-format")
    ok = run_cli("ask", "--model", str(f), "--chat-format", "chatml", "-n", "4", "hi", home=home)
    assert ok.returncode == 0, ok.stderr


def test_context_above_trained(run_cli, home_with_default):
    one_line_error(
        run_cli("ask", "--ctx", "100000", "hi", home=home_with_default), "100,000", "8,192", "--ctx 8192"
    )


def test_context_too_small(run_cli, home_with_default):
    one_line_error(run_cli("ask", "--ctx", "16", "hi", home=home_with_default), "too small")


@pytest.mark.parametrize("args,stdin", [(("",), None), (("   ",), None), ((), ""), ((), "  \n")])
def test_empty_question(run_cli, home_with_default, args, stdin):
    one_line_error(run_cli("ask", *args, input=stdin, home=home_with_default), "empty question")


def test_unknown_model_name_lists_known(run_cli, home_with_default):
    one_line_error(
        run_cli("ask", "--model", "llama-70b", "hi", home=home_with_default),
        "unknown model 'llama-70b'",
        "SmolLM2-135M-Instruct.Q8_0",
    )
    one_line_error(  # the stock model and the default share a prefix: say both
        run_cli("ask", "--model", "smollm2", "hi", home=home_with_default),
        "ambiguous",
        "SmolLM2-135M-grounded.Q8_0",
    )


def test_no_model_at_all(run_cli, home):
    one_line_error(run_cli("ask", "hi", home=home), "no chat model", "setup.sh")


def test_unknown_chat_format(run_cli, home_with_default):
    one_line_error(
        run_cli("ask", "--chat-format", "nope", "hi", home=home_with_default), "--chat-format 'nope'"
    )


def test_verbose_shows_traceback(run_cli, home, tmp_path):
    r = run_cli("--verbose", "ask", "--model", str(tmp_path / "nope.gguf"), "hi", home=home)
    assert r.returncode == 2
    assert "Traceback" in r.stderr
    assert "Error: model file not found" in r.stderr


def test_model_given_by_name_and_prefix(run_cli, home_with_default, tmp_path):
    for name in ("SmolLM2-135M-Instruct.Q8_0", "smollm2-135m-g"):
        r = run_cli("ask", "--model", name, "-n", "2", "hi", home=home_with_default)
        assert r.returncode == 0, r.stderr


def test_directory_as_model(run_cli, home, tmp_path):
    d = tmp_path / "somedir.gguf"
    d.mkdir()
    # "is a directory", not "model file not found" (#12 item 17; the test's own path holds "directory")
    one_line_error(run_cli("ask", "--model", str(d), "hi", home=home), "somedir.gguf", "is a directory")


def test_empty_chat_format_file(run_cli, home_with_default, tmp_path):
    """#12 item 1: a template that renders nothing used to abort llama.cpp (GGML_ASSERT logits)."""
    f = tmp_path / "empty.jinja"
    f.write_text("")
    r = run_cli("ask", "--chat-format", str(f), "hi", home=home_with_default)
    one_line_error(r, "empty prompt", "empty.jinja")


def test_gguf_template_rendering_empty(run_cli, home, tmp_path, default_model_path):
    f = write_tiny_llama(
        tmp_path / "blank.gguf", default_model_path, chat_template="{% if false %}x{% endif %}"
    )
    one_line_error(
        run_cli("ask", "--model", str(f), "hi", home=home), "chat template in blank.gguf", "empty prompt"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("ask", "--threads", "two", "hi"),
        ("ask", "--threads", "0", "hi"),
        ("chat", "--plain", "--threads", "-1"),
        ("index", "add", ".", "--threads", "1.5"),
        ("bench", "--threads", "many"),
        ("build", "--threads", "x"),
    ],
)
def test_bad_thread_count(run_cli, home_with_default, args):
    one_line_error(run_cli(*args, home=home_with_default), "--threads expects 'auto' or a whole number >= 1")
