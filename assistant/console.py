"""The edge between the library and a terminal, shared by `assistant` and `python -m convert`.

An AssistantError becomes one line on stderr and its exit status (2), anything else a one-line
internal error (1), Ctrl+C "Interrupted." (130; 143 when a SIGTERM stopped work that takes it as
one, like finetune); ``--verbose`` adds the traceback. Library code raises and logs; only this
module (and the TUI) prints errors and chooses exit codes.
"""

from __future__ import annotations

import logging
import sys
import traceback

import click

from . import interrupt
from .errors import AssistantError

# Whether --verbose was given, as the command group's callback parsed it (setup_logging records
# it): run_cli's error handler runs after click is done, and its own look at argv only sees a
# flag spelled exactly "-v"/"--verbose".
_verbose = False


def setup_logging(verbose: bool) -> None:
    """Log to stderr: messages only by default, level and logger name (and DEBUG) with --verbose."""
    global _verbose
    _verbose = verbose
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        logging.getLogger("assistant").setLevel(logging.WARNING)


def run_cli(command: click.Command, prog_name: str, argv: list[str] | None = None) -> None:
    """Run a click command as a program: an AssistantError becomes one line on stderr and its
    exit status, anything else a one-line internal error; --verbose adds the traceback."""
    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args
    try:
        with interrupt.handling():  # Ctrl+C stops work inside llama.cpp too
            rv = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns Ctrl+C (KeyboardInterrupt) into Abort
        click.echo("Interrupted." if isinstance(exc.__context__, KeyboardInterrupt) else "Aborted.", err=True)
        sys.exit(interrupt.exit_status() if isinstance(exc.__context__, KeyboardInterrupt) else 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AssistantError as exc:
        if verbose or _verbose:
            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(interrupt.exit_status())
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head); nothing more to say
        sys.exit(0)
    except Exception as exc:  # a bug: say so briefly unless asked for details
        if verbose or _verbose:
            traceback.print_exc()
        click.echo(
            f"Error: internal error: {type(exc).__name__}: {exc} (run with --verbose for the traceback)",
            err=True,
        )
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
