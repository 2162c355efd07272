"""Chat templates: the GGUF's own, named formats, files, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.engine.template import BUILTIN_FORMATS, ChatTemplate, resolve_template
from assistant.errors import ChatTemplateError, UsageError

MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
]

# A template in the style of Gemma's: system messages are refused.
STRICT = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{{ '<' + m['role'] + '>' + m['content'] }}{% endfor %}"
)


def test_gguf_template_of_default_model(chat_model):
    text = chat_model.render([__import__("assistant.engine", fromlist=["Message"]).Message("user", "Hi")])
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nHi<|im_end|>" in text


@pytest.mark.parametrize("name", sorted(BUILTIN_FORMATS))
def test_builtin_formats_render_every_role(name):
    t = ChatTemplate(BUILTIN_FORMATS[name], name, bos_token="<s>", eos_token="</s>")
    text = t.render(MSGS)
    for m in MSGS:
        assert m["content"] in text
    assert text.index("Hi") < text.index("Hello!") < text.index("Bye")


def test_missing_template_names_chat_format(tmp_path):
    with pytest.raises(ChatTemplateError) as err:
        resolve_template(
            gguf_template=None, chat_format=None, model_path=tmp_path / "m.gguf", bos_token="", eos_token=""
        )
    assert "--chat-format" in str(err.value)
    assert "m.gguf" in str(err.value)


def test_chat_format_overrides_and_file(tmp_path):
    t = resolve_template(
        gguf_template="{{ 'gguf' }}", chat_format="chatml", model_path=Path("m"), bos_token="", eos_token=""
    )
    assert t.origin == "chatml"
    f = tmp_path / "t.jinja"
    f.write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}")
    t = resolve_template(
        gguf_template=None, chat_format=str(f), model_path=Path("m"), bos_token="", eos_token=""
    )
    assert t.render(MSGS[:2]) == "[system] Be brief.\n[user] Hi\n"


def test_unknown_chat_format():
    with pytest.raises(UsageError, match="unknown --chat-format 'nope'"):
        resolve_template(
            gguf_template=None, chat_format="nope", model_path=Path("m"), bos_token="", eos_token=""
        )


def test_syntax_error_is_reported():
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate("{% for %}", "gguf")


def test_system_folded_into_first_user_turn_when_refused():
    t = ChatTemplate(STRICT, "gguf")
    text = t.render(MSGS)
    assert text.startswith("<user>Be brief.\n\nHi")
    assert t.folds_system


def test_template_runtime_error_is_one_clear_line():
    t = ChatTemplate("{{ messages[5]['content'] + 1 }}", "gguf")
    with pytest.raises(ChatTemplateError, match="failed to render"):
        t.render([{"role": "user", "content": "x"}])


def test_generation_tags_and_tojson():
    t = ChatTemplate("{% generation %}{{ messages | tojson }}{% endgeneration %}", "gguf")
    assert t.render([{"role": "user", "content": "é"}]) == '[{"role": "user", "content": "é"}]'


def test_system_prompt_baked_into_the_gguf(tmp_path, default_model_path):
    """A build recipe's system_prompt (edge_assistant.system_prompt) is the default system message."""
    from support.gguf_factory import write_tiny_llama

    from assistant.engine import ChatModel, Message

    path = write_tiny_llama(
        tmp_path / "baked.gguf",
        default_model_path,
        extra_strings={"edge_assistant.system_prompt": "You are Support Bot."},
    )
    m = ChatModel(path, n_ctx=256)
    try:
        assert m.chat([Message("user", "hi")]).messages[0] == Message("system", "You are Support Bot.")
        mine = m.chat([Message("system", "Mine."), Message("user", "hi")])
        assert [x.content for x in mine.messages] == ["Mine.", "hi"]
    finally:
        m.close()


def test_empty_prompt_is_refused_before_llama_cpp(tmp_path, chat_model):
    """#12 item 1: zero prompt tokens never reach decode (llama.cpp aborts on sampling no logits)."""
    from assistant.engine import Message
    from assistant.errors import ModelError

    template = chat_model.template
    chat_model.template = ChatTemplate("", str(tmp_path / "empty.jinja"))
    try:
        with pytest.raises(
            ChatTemplateError, match=r"chat template file .*empty\.jinja renders an empty prompt"
        ):
            chat_model.chat([Message("user", "hi")]).text()
    finally:
        chat_model.template = template
    with pytest.raises(ModelError, match="nothing to decode"):
        chat_model._ctx.decode([])
