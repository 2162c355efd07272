"""Every command and sub-command has help text."""

from __future__ import annotations

import click
from click.testing import CliRunner

from assistant.cli import cli


def walk(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from walk(cmd, (*prefix, name))


def test_every_command_has_help():
    runner = CliRunner()
    seen = 0
    for path, cmd in walk(cli):
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        assert cmd.help or cmd.short_help, f"{' '.join(path)} has no help text"
        seen += 1
    assert seen >= 6


def test_root_help_lists_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("ask", "chat", "models", "bench", "setup", "index", "search", "convert", "build", "verify"):
        assert name in result.output


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "assistant" in result.output


def test_start_up_stays_light():
    """`assistant --help` must not pay for llama.cpp, textual or numpy (hundreds of ms each)."""
    import subprocess
    import sys

    code = (
        "import sys; from assistant.cli import cli; "
        "print(sorted(m for m in ('llama_cpp', 'textual', 'numpy', 'gguf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_threads_option_is_auto_by_default():
    """#17: `--threads auto|N` wherever llama.cpp computes; auto (None downstream) unless pinned."""
    found = set()
    for path, cmd in walk(cli):
        for p in cmd.params:
            if p.name == "threads":
                assert isinstance(p, click.Option) and p.default == "auto", path
                assert p.callback is not None and p.callback(None, p, "auto") is None, path
                assert p.callback(None, p, "3") == 3, path
                found.add(" ".join(path))
    assert {"ask", "chat", "bench", "build", "index add", "index sync", "search"} <= found
