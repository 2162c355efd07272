"""Build recipes: one TOML file per model (``build/NAME.toml``), read and checked here.

::

    base = "path/to/hf-dir"            # or a Hub repo id "org/name[@revision]", or a .gguf
    quant = "Q4_K_M"                   # a type of convert.quantize, or "auto" (+ max_kld / min_cosine)
    output = "models/support-bot.gguf" # optional; default {home}/<recipe name>.gguf
    eval_text = "eval/support.txt"     # optional text for the quality report
    system_prompt = "..."              # optional, stored in the GGUF (edge_assistant.system_prompt)
    [[adapter]]
    path = "adapters/support-v3"       # or a Hub repo id
    scale = 1.0

Paths are relative to the recipe file; ``{home}`` at the start of a path is the model home
(``--home``, ``ASSISTANT_HOME``, ``models/`` of a checkout). A recipe's output stays inside
the model home or the recipe's own directory tree (symlinks resolved): a recipe from elsewhere
cannot write into system directories; ``assistant build -o FILE`` puts it anywhere. Every problem is one
:class:`~assistant.errors.RecipeError` naming the file and the field (TOML syntax errors
with their line), raised before anything is written.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import RecipeError

from .quant_types import NEEDS_IMATRIX, QUANT_TYPES

HOME_VAR = "{home}"
SYSTEM_PROMPT_KEY = "edge_assistant.system_prompt"
DEFAULT_MAX_KLD = 0.05
DEFAULT_MIN_COSINE = 0.999
DEFAULT_EVAL_TOKENS = 1024
# The reference's log-probabilities are kept on disk: half the tokens x vocabulary x 4 bytes
# (16384 tokens of a 128k vocabulary: 4 GB).
MAX_EVAL_TOKENS = 16384
MIN_EVAL_CHARS = 200
AUTO = "auto"

TOP_KEYS: dict[str, str] = {
    "base": "a Hugging Face model directory, a Hub repo id (org/name[@revision]) or a .gguf file",
    "quant": f"one of auto, {', '.join(QUANT_TYPES)}",
    "max_kld": "the largest mean KL divergence quant = auto may accept (chat models), e.g. 0.05",
    "min_cosine": "the smallest mean cosine quant = auto may accept (embedding models), e.g. 0.999",
    "output": "the GGUF file to write, ending in .gguf",
    "eval_text": "a UTF-8 text file for the quality report",
    "eval_tokens": "how many tokens of eval_text the quality report uses",
    "system_prompt": "a default system prompt stored in the GGUF",
    "description": "free text about the recipe",
    "adapter": "[[adapter]] tables",
}
ADAPTER_KEYS: dict[str, str] = {
    "path": "a PEFT LoRA adapter directory or a Hub repo id",
    "scale": "a number multiplying the adapter's update (default 1.0)",
    "check_base": "false to skip the base_model_name_or_path check",
}
_HUB = re.compile(
    r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<rev>[A-Za-z0-9._/-]+))?$"
)


def show(path: Path) -> str:
    """A path as the user best recognises it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Source:
    """A base model or adapter as the recipe names it: a local path or a Hub repo."""

    field: str  # "base" or "adapter[2].path", for messages
    spec: str  # as written in the recipe
    path: Path | None  # local file or directory (absolute); None for a Hub repo
    repo: str | None = None
    revision: str | None = None  # as written after "@"

    @property
    def is_hub(self) -> bool:
        return self.repo is not None


@dataclass(frozen=True)
class AdapterEntry:
    source: Source
    scale: float
    check_base: bool = True


@dataclass
class Recipe:
    path: Path
    name: str
    text: str
    sha256: str
    home: Path
    base: Source
    adapters: list[AdapterEntry]
    quant: str  # a QUANT_TYPES name or "auto"
    output: Path
    output_spec: str
    max_kld: float | None = None
    min_cosine: float | None = None
    eval_text: Path | None = None
    eval_text_spec: str | None = None
    eval_tokens: int = DEFAULT_EVAL_TOKENS
    system_prompt: str | None = None
    description: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    output_explicit: bool = False  # chosen by the user (-o), not by the recipe: may be anywhere

    @property
    def auto(self) -> bool:
        return self.quant == AUTO

    @property
    def where(self) -> str:
        return show(self.path)

    def error(self, field_name: str, message: str) -> RecipeError:
        return RecipeError(f"{self.where}: {field_name}: {message}")

    @property
    def metadata(self) -> dict[str, str]:
        return {SYSTEM_PROMPT_KEY: self.system_prompt} if self.system_prompt else {}

    def settings(self) -> dict[str, Any]:
        """Every setting, parsed (comments and layout do not matter)."""
        return {
            "base": self.base.spec,
            "quant": self.quant,
            "max_kld": self.max_kld,
            "min_cosine": self.min_cosine,
            "output": self.output_spec,
            "eval_text": self.eval_text_spec,
            "eval_tokens": self.eval_tokens,
            "system_prompt": self.system_prompt,
            "description": self.description,
            "adapters": [
                {"path": a.source.spec, "scale": a.scale, "check_base": a.check_base} for a in self.adapters
            ],
        }

    def output_settings(self) -> dict[str, Any]:
        """The settings that decide the GGUF's bytes (not where it goes, not the description); with
        quant = "auto" the budget and the eval text pick the type, so they count too."""
        d: dict[str, Any] = {
            "base": self.base.spec,
            "adapters": [{"path": a.source.spec, "scale": a.scale} for a in self.adapters],
            "quant": self.quant,
            "system_prompt": self.system_prompt,
        }
        if self.auto:
            d.update(
                max_kld=self.max_kld,
                min_cosine=self.min_cosine,
                eval_text=self.eval_text_spec,
                eval_tokens=self.eval_tokens,
            )
        return d

    @property
    def settings_sha256(self) -> str:
        import json

        text = json.dumps(self.output_settings(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return sha256_bytes(text.encode("utf-8"))


def expand(spec: str, recipe_dir: Path, home: Path) -> Path:
    """A recipe path: ``{home}/...``, ``~/...``, absolute, or relative to the recipe's directory."""
    if spec.startswith(HOME_VAR):
        rest = spec[len(HOME_VAR) :].lstrip("/\\")
        p = home / rest if rest else home
    else:
        p = Path(spec).expanduser()
        if not p.is_absolute():
            p = recipe_dir / p
    return Path(os.path.normpath(p.absolute()))


def _bad_placeholder(spec: str) -> bool:
    rest = spec[len(HOME_VAR) :] if spec.startswith(HOME_VAR) else spec
    return "{" in rest or "}" in rest


def _source(spec: str, field_name: str, recipe: Path, home: Path, what: str) -> Source:
    if _bad_placeholder(spec):
        raise RecipeError(
            f"{show(recipe)}: {field_name}: {spec!r}: the only placeholder is {HOME_VAR} at the start of a path"
        )
    local = expand(spec, recipe.parent, home)
    if local.exists():
        return Source(field_name, spec, local)
    m = _HUB.match(spec)
    if m and not spec.startswith(("./", "../", "~", "/", HOME_VAR)):
        return Source(field_name, spec, None, m.group("repo"), m.group("rev"))
    hint = (
        f"{HOME_VAR} is the model home, {show(home)}"
        if spec.startswith(HOME_VAR)
        else "paths are relative to the recipe file"
    )
    raise RecipeError(
        f"{show(recipe)}: {field_name}: {spec}: no such {what} ({show(local)} does not exist; {hint})"
    )


def _toml_error(path: Path, exc: tomllib.TOMLDecodeError) -> RecipeError:
    msg = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
    if m:
        return RecipeError(
            f"{show(path)}, line {m.group(1)}, column {m.group(2)}: TOML syntax error: {msg[: m.start()]}"
        )
    m = re.search(r"\s*\(at end of document\)$", msg)
    if m:
        lines = path.read_text(encoding="utf-8", errors="replace").count("\n") + 1
        return RecipeError(f"{show(path)}, line {lines} (end of file): TOML syntax error: {msg[: m.start()]}")
    return RecipeError(f"{show(path)}: TOML syntax error: {msg}")


def _unknown(where: str, key: str, known: dict[str, str]) -> RecipeError:
    close = difflib.get_close_matches(key, list(known), n=1) or [
        k for k in known if key.startswith(k) or k.startswith(key)
    ]
    hint = f"did you mean {close[0]!r}? " if close else ""
    return RecipeError(f"{where}: unknown key {key!r}; {hint}known keys: {', '.join(known)}")


def _string(recipe: Path, data: dict[str, Any], key: str, field_name: str | None = None) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    name = field_name or key
    if not isinstance(value, str):
        raise RecipeError(f"{show(recipe)}: {name}: expected a string, got {_tname(value)} {value!r}")
    if not value.strip():
        raise RecipeError(f"{show(recipe)}: {name}: is empty")
    return value


def _number(recipe: Path, data: dict[str, Any], key: str, field_name: str | None = None) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    name = field_name or key
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecipeError(f"{show(recipe)}: {name}: expected a number, got {_tname(value)} {value!r}")
    if not math.isfinite(value):
        raise RecipeError(f"{show(recipe)}: {name}: expected a finite number, got {value}")
    return float(value)


def _tname(value: Any) -> str:
    return {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def parse_quant(recipe: Path, value: str) -> str:
    key = value.strip().upper()
    if key == AUTO.upper():
        return AUTO
    if key in QUANT_TYPES:
        return key
    if key in NEEDS_IMATRIX:
        raise RecipeError(
            f"{show(recipe)}: quant: {value} needs an importance matrix (imatrix), which this converter does not "
            f"compute; choose one of auto, {', '.join(QUANT_TYPES)}"
        )
    raise RecipeError(
        f"{show(recipe)}: quant: unknown type {value!r}; choose one of auto, {', '.join(QUANT_TYPES)}"
    )


def load_recipe(
    path: str | os.PathLike[str], home: Path, output: str | os.PathLike[str] | None = None
) -> Recipe:
    """Read and check a recipe (syntax, keys, types, local paths); nothing is written.

    ``output``: the user's own output file (``-o``), instead of the recipe's ``output``.
    Checks run in the order of the fields below, so a recipe with several mistakes names the first.
    """
    rpath = Path(os.path.normpath(Path(path).expanduser().absolute()))
    raw, text, data = _read_toml(rpath)
    home = Path(home)
    base = _base(rpath, data, home)
    adapters = _adapters(rpath, data, home)
    quant, max_kld, min_cosine = _quant_and_budget(rpath, data)
    output_spec, out_path = _output(rpath, data, home, output)
    eval_spec, eval_path = _eval_text(rpath, data, home)
    eval_tokens = _eval_tokens(rpath, data)
    system_prompt = _optional_text(rpath, data, "system_prompt")
    description = _optional_text(rpath, data, "description")
    return Recipe(
        path=rpath,
        name=rpath.stem,
        text=text,
        sha256=sha256_bytes(raw),
        home=home,
        base=base,
        adapters=adapters,
        quant=quant,
        output=out_path,
        output_spec=output_spec,
        output_explicit=output is not None,
        max_kld=max_kld,
        min_cosine=min_cosine,
        eval_text=eval_path,
        eval_text_spec=eval_spec,
        eval_tokens=eval_tokens,
        system_prompt=system_prompt or None,
        description=description,
        raw=data,
    )


def _read_toml(rpath: Path) -> tuple[bytes, str, dict[str, Any]]:
    """The recipe file's bytes, its text and its TOML table (top-level keys checked)."""
    if rpath.is_dir():
        raise RecipeError(f"{show(rpath)} is a directory; give a recipe file (build/NAME.toml) or use --all")
    if not rpath.is_file():
        raise RecipeError(f"recipe {show(rpath)}: no such file")
    if rpath.suffix != ".toml":
        raise RecipeError(f"recipe {show(rpath)}: expected a .toml file")
    raw = rpath.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(
            f"{show(rpath)}: not UTF-8 text (byte {exc.start}); save the recipe as UTF-8"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(rpath, exc) from exc
    for key in data:
        if key not in TOP_KEYS:
            raise _unknown(show(rpath), key, TOP_KEYS)
    return raw, text, data


def _base(rpath: Path, data: dict[str, Any], home: Path) -> Source:
    where = show(rpath)
    base_spec = _string(rpath, data, "base")
    if base_spec is None:
        raise RecipeError(f"{where}: base: missing; give {TOP_KEYS['base']}")
    base = _source(base_spec, "base", rpath, home, "file or directory")
    if base.path is not None and base.path.is_file() and base.path.suffix.lower() != ".gguf":
        raise RecipeError(f"{where}: base: {base_spec} is a file but not a .gguf; give {TOP_KEYS['base']}")
    return base


def _adapters(rpath: Path, data: dict[str, Any], home: Path) -> list[AdapterEntry]:
    where = show(rpath)
    adapters_raw = data.get("adapter", [])
    if isinstance(adapters_raw, dict):
        raise RecipeError(f"{where}: adapter: write [[adapter]] (an array of tables), not [adapter]")
    if not isinstance(adapters_raw, list):
        raise RecipeError(f"{where}: adapter: expected [[adapter]] tables, got {_tname(adapters_raw)}")
    return [_adapter(rpath, f"adapter[{i}]", entry, home) for i, entry in enumerate(adapters_raw, start=1)]


def _adapter(rpath: Path, fname: str, entry: Any, home: Path) -> AdapterEntry:
    """One [[adapter]] table; ``fname`` names it in messages (adapter[1], ...)."""
    where = show(rpath)
    if not isinstance(entry, dict):
        raise RecipeError(f"{where}: {fname}: expected a table with path and scale, got {_tname(entry)}")
    for key in entry:
        if key not in ADAPTER_KEYS:
            raise _unknown(f"{where}: {fname}", key, ADAPTER_KEYS)
    spec = _string(rpath, entry, "path", f"{fname}.path")
    if spec is None:
        raise RecipeError(f"{where}: {fname}.path: missing; give {ADAPTER_KEYS['path']}")
    src = _source(spec, f"{fname}.path", rpath, home, "adapter directory")
    if src.path is not None and not src.path.is_dir():
        raise RecipeError(
            f"{where}: {fname}.path: {spec} is a file; expected a PEFT adapter directory "
            "(adapter_config.json + adapter_model.safetensors)"
        )
    scale = _number(rpath, entry, "scale", f"{fname}.scale")
    check = entry.get("check_base", True)
    if not isinstance(check, bool):
        raise RecipeError(f"{where}: {fname}.check_base: expected true or false, got {check!r}")
    return AdapterEntry(src, 1.0 if scale is None else scale, check)


def _quant_and_budget(rpath: Path, data: dict[str, Any]) -> tuple[str, float | None, float | None]:
    """quant, and the quality budget (max_kld, min_cosine) that only quant = "auto" takes."""
    from .quant_types import DEFAULT_QUANT

    where = show(rpath)
    quant_text = _string(rpath, data, "quant")
    quant = parse_quant(rpath, quant_text) if quant_text is not None else DEFAULT_QUANT
    max_kld = _number(rpath, data, "max_kld")
    min_cosine = _number(rpath, data, "min_cosine")
    for key, value in (("max_kld", max_kld), ("min_cosine", min_cosine)):
        if value is not None and quant != AUTO:
            raise RecipeError(f'{where}: {key}: only applies with quant = "auto" (quant is {quant})')
    if max_kld is not None and max_kld < 0:
        raise RecipeError(f"{where}: max_kld: must be 0 or more, got {max_kld}")
    if min_cosine is not None and not 0 < min_cosine <= 1:
        raise RecipeError(f"{where}: min_cosine: must be in (0, 1], got {min_cosine}")
    return quant, max_kld, min_cosine


def _output(
    rpath: Path, data: dict[str, Any], home: Path, output: str | os.PathLike[str] | None
) -> tuple[str, Path]:
    """The output as written (the recipe's, or -o) and the file it names."""
    where = show(rpath)
    output_spec = _string(rpath, data, "output") or f"{HOME_VAR}/{rpath.stem}.gguf"
    if output is not None:
        output_spec = str(output)
        where_out = f"-o {output_spec}"
    else:
        where_out = f"{where}: output"
    if not output_spec.lower().endswith(".gguf"):
        raise RecipeError(f"{where_out}: {output_spec} should end in .gguf")
    if output is None and _bad_placeholder(output_spec):
        raise RecipeError(f"{where}: output: the only placeholder is {HOME_VAR} at the start of a path")
    out_path = (
        Path(os.path.normpath(Path(output).expanduser().absolute()))
        if output is not None
        else expand(output_spec, rpath.parent, home)
    )
    if out_path.is_dir():
        raise RecipeError(f"{where_out}: {output_spec} is a directory; give a file name ending in .gguf")
    return output_spec, out_path


def _eval_text(rpath: Path, data: dict[str, Any], home: Path) -> tuple[str | None, Path | None]:
    """eval_text as written and the file it names: UTF-8, at least MIN_EVAL_CHARS of text."""
    where = show(rpath)
    eval_spec = _string(rpath, data, "eval_text")
    if eval_spec is None:
        return None, None
    eval_path = expand(eval_spec, rpath.parent, home)
    if not eval_path.is_file():
        raise RecipeError(f"{where}: eval_text: {eval_spec}: no such file ({show(eval_path)})")
    try:
        sample = eval_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{where}: eval_text: {eval_spec} is not UTF-8 text") from exc
    if len(sample.strip()) < MIN_EVAL_CHARS:
        raise RecipeError(
            f"{where}: eval_text: {eval_spec} has {len(sample.strip())} characters; "
            f"give at least {MIN_EVAL_CHARS} (a few paragraphs)"
        )
    return eval_spec, eval_path


def _eval_tokens(rpath: Path, data: dict[str, Any]) -> int:
    eval_tokens = data.get("eval_tokens", DEFAULT_EVAL_TOKENS)
    if (
        isinstance(eval_tokens, bool)
        or not isinstance(eval_tokens, int)
        or not 64 <= eval_tokens <= MAX_EVAL_TOKENS
    ):
        raise RecipeError(
            f"{show(rpath)}: eval_tokens: expected an integer from 64 to {MAX_EVAL_TOKENS}, got {eval_tokens!r}"
        )
    return eval_tokens


def _optional_text(rpath: Path, data: dict[str, Any], key: str) -> str | None:
    """A free-text field (system_prompt, description): a string when given, empty allowed."""
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise RecipeError(f"{show(rpath)}: {key}: expected a string, got {_tname(value)}")
    return value
