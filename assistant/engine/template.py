"""Chat templates: the Jinja template stored in the GGUF, or one named by --chat-format.

We render the model's own ``tokenizer.chat_template`` the way Hugging Face does
(sandboxed Jinja, trim_blocks, lstrip_blocks). A model without one is refused
with a message naming ``--chat-format``: guessing a template silently is how
users get garbage answers.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import ChatTemplateError, UsageError

log = logging.getLogger(__name__)

# Named formats for GGUFs that lack a template (--chat-format NAME).
BUILTIN_FORMATS: dict[str, str] = {
    "chatml": (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for m in messages %}"
        "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "llama2": (
        "{% if messages[0]['role'] == 'system' %}"
        "{% set sys = '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' %}{% set msgs = messages[1:] %}"
        "{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
        "{% for m in msgs %}{% if m['role'] == 'user' %}"
        "{{ bos_token + '[INST] ' + (sys if loop.first else '') + m['content'] | trim + ' [/INST]' }}"
        "{% else %}{{ ' ' + m['content'] | trim + ' ' + eos_token }}{% endif %}{% endfor %}"
    ),
    "mistral": (
        "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] + '\n\n' %}"
        "{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
        "{{ bos_token }}{% for m in msgs %}{% if m['role'] == 'user' %}"
        "{{ '[INST] ' + (sys if loop.first else '') + m['content'] + ' [/INST]' }}"
        "{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}"
    ),
    "gemma": (
        "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] + '\n\n' %}"
        "{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
        "{{ bos_token }}{% for m in msgs %}{% set role = 'model' if m['role'] == 'assistant' else 'user' %}"
        "{{ '<start_of_turn>' + role + '\n' + (sys if loop.first else '') + m['content'] | trim + '<end_of_turn>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    ),
    "phi3": (
        "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
    "zephyr": (
        "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + eos_token + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
}


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"the chat template refused the conversation: {message}")


def _tojson(
    value: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False
) -> str:
    if indent is not None and not 0 <= indent <= 16:  # each level of each line would carry it
        from .jinja_bounds import TemplateRefused

        raise TemplateRefused(f"tojson(indent={indent}) is out of range: expected 0 to 16")
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@dataclass
class ChatTemplate:
    """A compiled chat template plus the special tokens it may reference."""

    source: str
    origin: str  # "gguf", a builtin name, or a file path
    bos_token: str = ""
    eos_token: str = ""
    model_name: str = ""  # the GGUF file a "gguf" template comes from, for messages

    @property
    def label(self) -> str:
        """How messages name this template: its file, its model, or its builtin name."""
        if self.origin == "gguf":
            return (
                f"the chat template in {self.model_name}" if self.model_name else "the model's chat template"
            )
        if self.origin in BUILTIN_FORMATS:
            return f"the built-in {self.origin} chat template"
        return f"the chat template file {self.origin}"

    def __post_init__(self) -> None:
        from jinja2 import TemplateSyntaxError
        from jinja2.ext import loopcontrols

        from .jinja_bounds import BoundedSandbox, bounded_filter

        env = BoundedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = bounded_filter(_tojson)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(_strip_generation_tags(self.source))
        except TemplateSyntaxError as exc:
            raise ChatTemplateError(
                f"{self.label} does not compile (line {exc.lineno}: {exc.message}); "
                "pass --chat-format NAME or FILE.jinja"
            ) from exc
        self.folds_system = False

    def render(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """Render messages; folds the system prompt into the first user turn if the template refuses system roles."""
        msgs = list(messages)
        if self.folds_system:
            msgs = _fold_system(msgs)
        try:
            return self._render(msgs, add_generation_prompt)
        except Exception as first:
            from .jinja_bounds import TemplateRefused

            if isinstance(first, TemplateRefused):  # over its time or size bounds: no retry
                raise _template_error(self.label, first) from None
            if msgs and msgs[0].get("role") == "system" and not self.folds_system:
                try:
                    text = self._render(_fold_system(msgs), add_generation_prompt)
                except Exception:
                    raise _template_error(self.label, first) from first
                self.folds_system = True
                return text
            raise _template_error(self.label, first) from first

    def parts(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> list[Part]:
        """The rendered prompt split into the template's markup and the messages' contents.

        Only markup may become special tokens (a question saying ``<|im_start|>`` must stay
        text). The split comes from a second render with a unique marker for each content,
        checked against the real render; a template that transforms contents beyond
        trimming gets the marker render with the contents put back (safe, slightly less
        faithful).
        """
        real = self.render(messages, add_generation_prompt=add_generation_prompt)
        msgs = _fold_system(list(messages)) if self.folds_system else list(messages)
        nonce = secrets.randbelow(10**12)
        marks = {f"\u27e6{nonce}.{i}\u27e7": m.get("content", "") for i, m in enumerate(msgs)}
        marked = [{**m, "content": mark} for mark, m in zip(marks, msgs, strict=True)]
        try:
            skeleton = self._render(marked, add_generation_prompt)
        except Exception:  # the template judges contents: no safe split, so no special tokens at all
            log.warning("%s cannot be split into markup and contents; its markup is read as text", self.label)
            return [Part(real, True)]
        pieces = [
            Part(marks[p], True) if p in marks else Part(p, False)
            for p in re.split(f"(\u27e6{nonce}\\.\\d+\u27e7)", skeleton)
            if p
        ]
        return _align(pieces, real) or pieces

    def _render(self, msgs: list[dict[str, str]], add_generation_prompt: bool) -> str:
        from .jinja_bounds import MIN_LIMIT, render_bounded

        def chunks() -> Iterator[str]:
            return self._template.generate(
                messages=msgs,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )

        known = {id(m): sum(len(k) + len(str(v)) + 2 for k, v in m.items()) + 2 for m in msgs}
        known[id(msgs)] = sum(known.values()) + 2
        return render_bounded(chunks, MIN_LIMIT + 4 * known[id(msgs)], known)


@dataclass(frozen=True)
class Part:
    """A run of a rendered prompt: a message's content (plain text) or the template's markup."""

    text: str
    content: bool


def _align(pieces: list[Part], real: str) -> list[Part] | None:
    """The real render cut where the marker render says, if it matches exactly (contents as
    given or trimmed); None if the template changed a content some other way."""
    out: list[Part] = []
    pos = 0
    for i, piece in enumerate(pieces):
        if not piece.content:
            if not real.startswith(piece.text, pos):
                return None
            out.append(piece)
            pos += len(piece.text)
            continue
        nxt = pieces[i + 1].text if i + 1 < len(pieces) and not pieces[i + 1].content else None
        for text in dict.fromkeys((piece.text, piece.text.strip())):
            end = pos + len(text)
            if real.startswith(text, pos) and (nxt is None or real.startswith(nxt, end)):
                if text:
                    out.append(Part(text, True))
                pos = end
                break
        else:
            return None
    return out if pos == len(real) else None


def _template_error(label: str, exc: Exception) -> ChatTemplateError:
    if isinstance(exc, ChatTemplateError):
        return exc
    from .jinja_bounds import TemplateRefused

    if isinstance(exc, TemplateRefused):
        return ChatTemplateError(
            f"{label} was stopped: {exc}; fix it or pass --chat-format NAME or FILE.jinja to use another one"
        )
    return ChatTemplateError(
        f"{label} failed to render ({type(exc).__name__}: {exc}); "
        "pass --chat-format NAME or FILE.jinja to use another one"
    )


def _fold_system(msgs: list[dict[str, str]]) -> list[dict[str, str]]:
    if not msgs or msgs[0].get("role") != "system":
        return msgs
    system, rest = msgs[0]["content"], msgs[1:]
    if rest and rest[0].get("role") == "user":
        return [{"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}, *rest[1:]]
    return [{"role": "user", "content": system}, *rest]


def _strip_generation_tags(source: str) -> str:
    # HF's {% generation %} marks assistant spans for training masks; it renders its body.
    return re.sub(r"{%-?\s*(end)?generation\s*-?%}", "", source)


def resolve_template(
    *,
    gguf_template: str | None,
    chat_format: str | None,
    model_path: Path,
    bos_token: str,
    eos_token: str,
) -> ChatTemplate:
    """The model's own template unless --chat-format names another; never a silent guess."""
    if chat_format:
        if chat_format in BUILTIN_FORMATS:
            return ChatTemplate(BUILTIN_FORMATS[chat_format], chat_format, bos_token, eos_token)
        path = Path(chat_format).expanduser()
        if path.is_file():
            try:
                source = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"cannot read chat template {path}: {exc}") from exc
            return ChatTemplate(source, str(path), bos_token, eos_token)
        if chat_format == "gguf" and gguf_template:
            return ChatTemplate(gguf_template, "gguf", bos_token, eos_token, model_path.name)
        raise UsageError(
            f"unknown --chat-format {chat_format!r}: use one of {', '.join(sorted(BUILTIN_FORMATS))} "
            "or the path of a .jinja file"
        )
    if not gguf_template:
        raise ChatTemplateError(
            f"{model_path.name} has no chat template (tokenizer.chat_template); pass --chat-format "
            f"NAME ({', '.join(sorted(BUILTIN_FORMATS))}) or --chat-format FILE.jinja"
        )
    return ChatTemplate(gguf_template, "gguf", bos_token, eos_token, model_path.name)
