"""Man pages (roff with the man macros) to readable text, for the knowledge base.

Not a roff implementation: enough of the man(7) macros and escapes that the
text reads as `man` shows it. Sections become Markdown-style headings
(``# DESCRIPTION``) so the chunker cuts at them; filled text becomes one
line a paragraph; ``.nf`` blocks and tables keep their lines (indented);
``.TP``/``.IP`` tags go on their own line above their body. Comments, macro
definitions, conditionals and requests it does not know are dropped.
"""

from __future__ import annotations

import re

# \(xx and \[xx] special characters; unknown ones are dropped
_CHARS = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "lq": "\u201c",
    "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae",
    "tm": "\u2122", "mu": "\u00d7", "de": "\u00b0", ">=": "\u2265", "<=": "\u2264", "!=": "\u2260",
    "->": "\u2192", "<-": "\u2190", "ga": "`", "ha": "^", "ti": "~", "rs": "\\", "sl": "/", "ba": "|",
    "br": "|", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "at": "@", "sh": "#", "Do": "$", "Eu": "\u20ac",
    "Po": "\u00a3", "pl": "+", "eq": "=", "ua": "\u2191", "da": "\u2193", "ps": "\u00b6", "sc": "\u00a7",
    "aa": "\u00b4", "ss": "\u00df", "+-": "\u00b1", "tno": "~", "ul": "_", "ru": "_", "dg": "\u2020",
    "fo": "\u2039", "fc": "\u203a", "Fo": "\u00ab", "Fc": "\u00bb", "bq": "\u201e", "hA": "\u21d4",
    "rA": "\u21d2", "lA": "\u21d0", "<>": "\u2194", "ap": "~", "pc": "\u00b7", "OK": "\u2713",
}  # fmt: skip
# \*x, \*(xx, \*[xx] predefined strings of the man macros and of pod2man's preamble
_STRINGS = {"lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "Tm": "\u2122", "Aq": "'", "aq": "'",
            "C`": '"', "C'": '"', "L\"": "\u201c", "R\"": "\u201d", "S": "", "--": "-", "PI": "\u03c0"}  # fmt: skip
_ESCAPE = re.compile(
    r"""\\(?:
        (?P<font>f(?:\[[^\]]*\]|\(..|.))
      | (?P<size>s(?:[+-]?\d|\([+-]?\d\d|\[[^\]]*\]))
      | \((?P<char2>..)
      | \[(?P<charn>[^\]]*)\]
      | \*(?:\[(?P<strn>[^\]]*)\]|\((?P<str2>..)|(?P<str1>.))
      | (?P<reg>[nNgk](?:\[[^\]]*\]|\(..|.))
      | (?P<arg>[hvwlLoDbxXzZYVRSHCA]'[^']*')
      | (?P<one>.)
    )""",
    re.X,
)
# one-character escapes that print something; every other one prints nothing
_SINGLE = {"-": "-", "e": "\\", "E": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", ".": ".", "`": "`",
           "'": "\u00b4", "t": "\t"}  # fmt: skip
_COMMENT = re.compile(r'(?<!\\)(?:\\\\)*(\\["#])')
_MAN_START = re.compile(r"^[.'][ \t]*(TH|Dd|Dt)[ \t]", re.M)
_CONTINUATION = re.compile(r"(?<!\\)((?:\\\\)*)\\\n")  # a backslash at the end of a line joins the next
_FONT_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}
_FONT_SINGLE = {"B", "I", "SM", "SB"}
_PARAGRAPH = {"PP", "LP", "P", "HP", "RS", "RE", "sp", "bp", "in"}


def inline(text: str) -> str:
    """Text with roff escapes replaced by what they print."""

    def sub(m: re.Match[str]) -> str:
        if m.group("char2") is not None:
            return _CHARS.get(m.group("char2"), "")
        if m.group("charn") is not None:
            name = m.group("charn")
            if re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
                return chr(int(name[1:], 16))
            return _CHARS.get(name, "")
        for g in ("strn", "str2", "str1"):
            if m.group(g) is not None:
                return _STRINGS.get(m.group(g), "")
        if m.group("one") is not None:
            return _SINGLE.get(m.group("one"), "")
        return ""

    return _ESCAPE.sub(sub, text)


def split_args(rest: str) -> list[str]:
    """A request's arguments: blank-separated, "double quoted" ones may hold blanks ("" is a quote)."""
    args: list[str] = []
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t":
            i += 1
        if i >= n:
            break
        buf = []
        if rest[i] == '"':
            i += 1
            while i < n:
                if rest[i] == '"':
                    if rest[i + 1 : i + 2] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(rest[i])
                i += 1
        else:
            while i < n and rest[i] not in " \t":
                if rest[i] == "\\" and i + 1 < n:
                    buf.append(rest[i : i + 2])
                    i += 2
                    continue
                buf.append(rest[i])
                i += 1
        args.append("".join(buf))
    return args


def looks_like_man(head: str) -> bool:
    """roff source of a man page: a .TH (or mdoc .Dd/.Dt) request in its first KB, or only a .so link."""
    if _MAN_START.search(head):
        return True
    lines = [ln for ln in head.splitlines() if ln.strip() and not ln.startswith(('.\\"', "'\\\"", '\\"'))]
    return bool(lines) and lines[0].startswith(".so ")


# mdoc(7), the BSD macros (OpenSSH, tmux, ...): enough to read the words in order
_MDOC_ENCLOSE = {"Op": ("[", "]"), "Dq": ("\u201c", "\u201d"), "Qq": ('"', '"'), "Sq": ("\u2018", "\u2019"),
                 "Pq": ("(", ")"), "Aq": ("<", ">"), "Bq": ("[", "]"), "Brq": ("{", "}"), "Ql": ("'", "'")}  # fmt: skip
_MDOC_WORDS = {"Ar", "Cm", "Pa", "Ev", "Li", "Em", "Sy", "Va", "Dv", "Er", "Ic", "Ad", "Fa", "Ft", "Ms", "No",
               "Tn", "An", "Cd", "Lb", "In", "Vt", "Mt", "Sx", "Fd", "Nm", "Xr", "Fl", "Ns", "Pf", "Oo", "Oc",
               "Ux", "Bx", "At", "Fn", "Lk", "Eo", "Ec"} | set(_MDOC_ENCLOSE)  # fmt: skip
_MDOC_FIXED = {"Ux": "UNIX", "Bx": "BSD", "At": "AT&T UNIX", "Oo": "[", "Oc": "]"}
_CLOSING = set(".,:;)]?!")


def _mdoc_words(tokens: list[str], name: str) -> str:
    """The printed words of an mdoc line's arguments (callable macros applied)."""
    out = ""
    glue = False  # no space before the next word
    i = 0

    def add(word: str) -> None:
        nonlocal out, glue
        if out and not glue and not (len(word) == 1 and word in _CLOSING) and word != "]":
            out += " "
        out += word
        glue = word in ("(", "[")

    while i < len(tokens):
        t = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) and tokens[i + 1] not in _MDOC_WORDS else None
        i += 1
        if t in _MDOC_ENCLOSE:
            left, right = _MDOC_ENCLOSE[t]
            add(left + _mdoc_words(tokens[i:], name) + right)
            break
        if t == "Fl":
            add("-" + inline(nxt or ""))
            i += nxt is not None
        elif t == "Xr" and nxt is not None and i + 1 < len(tokens):
            add(f"{inline(nxt)}({inline(tokens[i + 1])})")
            i += 2
        elif t == "Nm" and nxt is None:
            add(name)
        elif t == "Ar" and nxt is None:
            add("file ...")
        elif t in ("Ns", "Pf"):
            glue = True
            if t == "Pf" and nxt is not None:
                add(inline(nxt))
                glue, i = True, i + 1
        elif t in _MDOC_FIXED:
            add(_MDOC_FIXED[t])
            glue = t == "Oo"
        elif t not in _MDOC_WORDS:
            add(inline(t))
    return out


class _Renderer:
    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.lines: list[str] = []  # finished lines of the paragraph being built
        self.words: list[str] = []  # the line being filled
        self.nofill = False
        self.skip_depth = 0  # inside a \{ ... \} block of a conditional
        self.in_macro = False  # inside .de ... ..
        self.table_format = False  # between .TS and its format line ending in "."
        self.heading_next = ""  # "#" or "##": the next text line is a heading
        self.tag_next = False  # the next text line is a .TP tag
        self.glue = False  # \c at the end of the previous line: no space before the next word
        self.url = ""
        self.name = ""
        self.section = ""
        self.redirect = ""
        self.in_name = False
        self.name_line = ""
        self.mdoc_name = ""  # the first .Nm of an mdoc page, printed by a bare .Nm

    # -- output ---------------------------------------------------------------------

    def _words(self, text: str) -> None:
        if text.endswith("\\c"):
            text, glue_after = text[:-2], True
        else:
            glue_after = False
        words = inline(text).split()
        if words and self.glue and self.words:
            self.words[-1] += words.pop(0)
        self.words.extend(words)
        self.glue = glue_after

    def _break(self) -> None:
        if self.words:
            self.lines.append(" ".join(self.words))
            self.words = []

    def _paragraph(self) -> None:
        self._break()
        if self.lines:
            block = "\n".join(self.lines)
            if self.in_name and not self.name_line:
                self.name_line = " ".join(block.split())
            self.blocks.append(block)
            self.lines = []

    def _heading(self, marks: str, text: str) -> None:
        self._paragraph()
        title = " ".join(inline(text).split())
        self.in_name = marks == "#" and title.upper() == "NAME"
        if title:
            self.blocks.append(f"{marks} {title}")

    # -- input ----------------------------------------------------------------------

    def line(self, raw: str) -> None:
        if self.in_macro:
            if raw.rstrip() == "..":
                self.in_macro = False
            return
        m = _COMMENT.search(raw)
        if m:
            raw = raw[: m.start(1)]
            if raw.strip() in ("", ".", "'"):  # a whole-line comment (.\" or \"): no blank line
                return
        if self.skip_depth:
            self.skip_depth = max(0, self.skip_depth + raw.count("\\{") - raw.count("\\}"))
            return
        if raw[:1] in (".", "'"):
            self.request(raw[1:].strip())
        else:
            self.text(raw)

    def request(self, body: str) -> None:
        name, _, rest = body.partition(" ")
        if "\t" in name:
            name, _, more = name.partition("\t")
            rest = more + " " + rest
        args = split_args(rest)
        if name in ("de", "de1", "am", "ig"):
            self.in_macro = True
        elif name in ("if", "ie", "el", "while"):
            self.skip_depth = max(0, body.count("\\{") - body.count("\\}"))
        elif name == "TH":
            self.name = inline(args[0]) if args else ""
            self.section = inline(args[1]) if len(args) > 1 else ""
        elif name in ("SH", "SS"):
            marks = "#" if name == "SH" else "##"
            if args:
                self._heading(marks, " ".join(args))
            else:
                self._paragraph()
                self.heading_next = marks
        elif name in ("TP", "TQ"):
            if name == "TP":
                self._paragraph()
            else:
                self._break()
            self.tag_next = True
        elif name == "IP":
            self._paragraph()
            if args and inline(args[0]).strip():
                self.words = [inline(args[0]).strip()]  # a bullet or number: the body follows on its line
        elif name in _PARAGRAPH:
            self._paragraph()
        elif name == "br":
            self._break()
        elif name in ("nf", "EX", "Vb"):  # Vb/Ve: pod2man's verbatim blocks
            self._paragraph()
            self.nofill = True
        elif name in ("fi", "EE", "Ve"):
            self._paragraph()
            self.nofill = False
        elif name == "TS":
            self._paragraph()
            self.nofill, self.table_format = True, True
        elif name == "TE":
            self._paragraph()
            self.nofill, self.table_format = False, False
        elif name in _FONT_SINGLE or name in _FONT_ALTERNATING:
            if args:
                self.text(("" if name in _FONT_ALTERNATING else " ").join(args))
        elif name in ("UR", "MT"):
            self.url = inline(args[0]) if args else ""
        elif name in ("UE", "ME"):
            if self.url:
                self._words(f"<{self.url}>" + (args[0] if args else ""))
            self.url = ""
        elif name == "so" and args:
            self.redirect = args[0]
        elif name[:1].isupper() and name[1:2].islower():
            self.mdoc(name, args)
        # anything else (.ds .nr .ft .ad .na .hy .ll .PD .UC ...) prints nothing

    def mdoc(self, name: str, args: list[str]) -> None:
        """One mdoc macro line (.Sh .Pp .Bd .It .Nm ... and the inline ones)."""
        if name == "Dt":
            self.name = inline(args[0]) if args else ""
            self.section = inline(args[1]) if len(args) > 1 else ""
        elif name in ("Sh", "Ss"):
            self._heading("#" if name == "Sh" else "##", " ".join(args))
        elif name in ("Pp", "Lp", "Bl", "El"):
            self._paragraph()
        elif name == "Bd":
            self._paragraph()
            self.nofill = "-literal" in args or "-unfilled" in args
        elif name == "Ed":
            self._paragraph()
            self.nofill = False
        elif name == "It":
            self._paragraph()
            if args:
                self.lines.append(_mdoc_words(args, self.mdoc_name))
        elif name in ("D1", "Dl"):
            self._paragraph()
            self.lines.append("    " + _mdoc_words(args, self.mdoc_name))
            self._paragraph()
        elif name == "Nd":
            self.words.extend(["-", *_mdoc_words(args, self.mdoc_name).split()])
        elif name not in ("Dd", "Os", "Sm", "Bk", "Ek") and (name in _MDOC_WORDS or name in ("Nm", "Xr")):
            if name == "Nm" and args and not self.mdoc_name:
                self.mdoc_name = inline(args[0])
            words = _mdoc_words([name, *args], self.mdoc_name)
            if words and len(words) == 1 and words in _CLOSING and self.words:
                self.words[-1] += words
            elif words:
                if self.nofill:
                    self.lines.append("    " + words)
                else:
                    self.words.extend(words.split(" ") if not self.words else [words])

    def text(self, raw: str) -> None:
        if self.heading_next:
            marks, self.heading_next = self.heading_next, ""
            self._heading(marks, raw)
            return
        if self.table_format:
            if raw.rstrip().endswith("."):
                self.table_format = False
            return
        if self.tag_next:
            self.tag_next = False
            self._break()
            self._words(raw)
            self._break()
            return
        if self.nofill:
            line = inline(raw.replace("T{", "").replace("T}", "")).replace("\t", "  ").rstrip()
            self._break()
            self.lines.append("    " + line if line.strip() else "")
            return
        if not raw.strip():
            self._paragraph()
            return
        if raw[:1] in " \t":
            self._break()
        self._words(raw)

    def finish(self) -> tuple[str, str]:
        self._paragraph()
        title = f"{self.name}({self.section})" if self.name and self.section else self.name
        if self.name_line and " - " in self.name_line:
            title = f"{title} - {self.name_line.split(' - ', 1)[1]}" if title else self.name_line
        text = "\n\n".join(b.rstrip() for b in self.blocks if b.strip())
        return title, (text + "\n" if text else "")


def man_to_text(source: str) -> tuple[str, str, str]:
    """(title, text, .so target) of a man page; the text is empty for a page that only sources another."""
    r = _Renderer()
    source = _CONTINUATION.sub(r"\1", source)
    for line in source.splitlines():
        r.line(line)
    title, text = r.finish()
    return title, text, r.redirect
