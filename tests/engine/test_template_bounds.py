"""#12 item 3: a chat template cannot hang the process, burn minutes of CPU or exhaust memory.

Templates come inside downloaded models. Every costly operation is checked before it runs,
the output is counted, and a render past RENDER_SECONDS is interrupted; the refusal is one
line naming the template.
"""

from __future__ import annotations

import pytest

from assistant.engine.jinja_bounds import MIN_LIMIT, RENDER_SECONDS
from assistant.engine.template import BUILTIN_FORMATS, ChatTemplate
from assistant.errors import ChatTemplateError

MSGS = [{"role": "user", "content": "hi"}]


def refused(source: str, *needles: str) -> str:
    t = ChatTemplate(source, "/tmp/evil.jinja")
    with pytest.raises(ChatTemplateError) as err:
        t.render(MSGS)
    msg = str(err.value)
    assert msg.startswith("the chat template file /tmp/evil.jinja was stopped: "), msg
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize(
    "source,needle",
    [
        ("{{ 9**(9**9) }}", "too large a number"),  # 22 s of CPU in one C call (Jinja's ** binds left)
        ("{{ 'a' * 3000000000 }}", "a repeated value would be 3,000,000,000 characters"),  # MemoryError
        ("{{ ['x' * 100000] * 100000 }}", "a repeated value"),
        ("{{ (['x' * 100000] * 10)|join * 10 }}", "a repeated value"),
        ("{{ 'x'|center(3000000000) }}", "center got the number 3,000,000,000"),
        ("{{ 'x'.ljust(3000000000) }}", "got the number 3,000,000,000"),
        ("{{ '%0999999999d' % 1 }}", "a %-format got the number 999,999,999"),
        ("{{ '{:>999999999}'.format(1) }}", "got the number 999,999,999"),
        ("{{ ('a' * 10000).replace('a', 'b' * 1000) }}", "replace"),
        ("{{ ('a\n' * 100000)|indent(100) }}", "the filter indent"),
        ("{{ messages|tojson(indent=100000) }}", "tojson(indent=100000) is out of range"),
    ],
)
def test_costly_operations_are_refused_before_they_run(source, needle):
    refused(source, needle)


def test_string_doubling_in_a_namespace_is_refused():
    for op in ("~", "+"):
        source = (
            "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
            f"{{% set ns.s = ns.s {op} ns.s %}}{{% endfor %}}{{{{ ns.s|length }}}}"
        )
        refused(source, "over the limit")


def test_output_is_bounded():
    refused("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "output passed the limit")


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% set xs = range(100000)|list %}{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}",
    ],
)
def test_a_render_that_runs_too_long_is_interrupted(source):
    refused(source, f"it ran for more than {RENDER_SECONDS:g} s")


def test_after_a_timeout_renders_go_on_normally():
    """The interrupt is delivered inside the render only: nothing is left pending for later code."""
    refused("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    t = ChatTemplate(BUILTIN_FORMATS["chatml"], "chatml")
    for _ in range(2000):
        assert t.render(MSGS).endswith("<|im_start|>assistant\n")


def test_a_gguf_template_is_named_by_its_model_file():
    t = ChatTemplate("{{ 9**(9**9) }}", "gguf", model_name="evil.gguf")
    with pytest.raises(ChatTemplateError, match=r"^the chat template in evil\.gguf was stopped: "):
        t.render(MSGS)


@pytest.mark.parametrize("name", sorted(BUILTIN_FORMATS))
def test_ordinary_templates_and_big_contents_still_render(name):
    """The limits grow with the contents: a long piped document is no template abuse."""
    big = "word " * (MIN_LIMIT // 2)  # 2.5 MB, more than the fixed part of the limit
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": big}]
    text = ChatTemplate(BUILTIN_FORMATS[name], name, bos_token="<s>", eos_token="</s>").render(msgs)
    assert big.strip() in text


def test_default_model_template_renders_a_long_chat(chat_model):
    from assistant.engine import Message

    turns = [Message("user" if i % 2 == 0 else "assistant", f"turn {i} " * 50) for i in range(41)]
    text = chat_model.render(turns)
    assert text.count("<|im_start|>") >= 42 and "turn 40" in text


def test_cli_names_the_template_file(run_cli, home_with_default, tmp_path):
    f = tmp_path / "slow.jinja"
    f.write_text("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    r = run_cli("ask", "--chat-format", str(f), "hi", home=home_with_default)
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"Error: the chat template file {f} was stopped: it ran for more than")
