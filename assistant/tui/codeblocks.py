"""Fenced code blocks of an answer, for "copy code block" (no textual imports)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeBlock:
    language: str
    code: str

    @property
    def title(self) -> str:
        first = next((line.strip() for line in self.code.splitlines() if line.strip()), "")
        if len(first) > 40:
            first = first[:39] + "…"
        lang = f"{self.language} " if self.language else ""
        return f"{lang}{first}".strip() or "(empty)"


def code_blocks(markdown: str) -> list[CodeBlock]:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(markdown)
    return [
        CodeBlock((t.info or "").strip().split(" ")[0], t.content)
        for t in tokens
        if t.type in ("fence", "code_block")
    ]
