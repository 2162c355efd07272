"""The `assistant` command: a thin click layer over the library.

Errors from the library (AssistantError) become one line on stderr and exit
status 2 here, and only here; ``--verbose`` adds the traceback and llama.cpp's
own log. Heavy modules (llama_cpp, textual) are imported inside commands so
``assistant --help`` starts fast.
"""

from __future__ import annotations

import logging
import sys
import traceback

import click

from . import __version__, interrupt
from .errors import AssistantError
from .home import Home

_state = {"verbose": False}


class AppContext:
    """What every command gets: the model home and the verbosity."""

    def __init__(self, home: str | None, verbose: bool) -> None:
        self._home_arg = home
        self.verbose = verbose
        self._home: Home | None = None

    @property
    def home(self) -> Home:
        if self._home is None:
            self._home = Home.resolve(self._home_arg)
        return self._home


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        logging.getLogger("assistant").setLevel(logging.WARNING)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="assistant")
@click.option(
    "--home",
    envvar="ASSISTANT_HOME",
    metavar="DIR",
    help="Model home (models, knowledge bases, chats). Default: models/ of a source checkout, "
    "else the user data directory. Env: ASSISTANT_HOME.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and llama.cpp's own log.")
@click.pass_context
def cli(ctx: click.Context, home: str | None, verbose: bool) -> None:
    """Offline assistant: chat with a local GGUF model, grounded in your documents.

    Run without a command to start chatting with the default model.
    """
    _state["verbose"] = verbose
    _setup_logging(verbose)
    ctx.obj = AppContext(home, verbose)
    if ctx.invoked_subcommand is None:
        from .commands.chat import chat_command

        ctx.invoke(chat_command)


def _register() -> None:
    from .commands import bench, chat, models, setup

    cli.add_command(chat.chat_command)
    cli.add_command(chat.ask_command)
    cli.add_command(models.models_group)
    cli.add_command(bench.bench_command)
    cli.add_command(setup.setup_command)

    from .commands import knowledge

    cli.add_command(knowledge.index_group)
    cli.add_command(knowledge.search_command)

    from convert.cli import convert_adapter_command, convert_command

    cli.add_command(convert_command)
    cli.add_command(convert_adapter_command)

    from .commands import build

    cli.add_command(build.build_command)
    cli.add_command(build.verify_command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into one-line messages."""
    run_cli(cli, "assistant", argv)


def run_cli(command: click.Command, prog_name: str, argv: list[str] | None = None) -> None:
    """Run a click command as a program: an AssistantError becomes one line on stderr and its
    exit status, anything else a one-line internal error; --verbose adds the traceback.
    Shared by `assistant` and `python -m convert`."""
    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args
    try:
        with interrupt.handling():  # Ctrl+C stops work inside llama.cpp too
            rv = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns Ctrl+C (KeyboardInterrupt) into Abort
        click.echo("Interrupted." if isinstance(exc.__context__, KeyboardInterrupt) else "Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AssistantError as exc:
        if verbose or _state["verbose"]:
            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head); nothing more to say
        sys.exit(0)
    except Exception as exc:  # a bug: say so briefly unless asked for details
        if verbose or _state["verbose"]:
            traceback.print_exc()
        click.echo(
            f"Error: internal error: {type(exc).__name__}: {exc} (run with --verbose for the traceback)",
            err=True,
        )
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
