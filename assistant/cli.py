"""The `assistant` command: a thin click layer over the library.

Errors from the library (AssistantError) become one line on stderr and exit
status 2 at this edge (console.run_cli, shared with `python -m convert`);
``--verbose`` adds the traceback and llama.cpp's own log. Heavy modules (llama_cpp, textual) are imported inside commands so
``assistant --help`` starts fast.
"""

from __future__ import annotations

import click

from . import __version__
from .commands.context import AppContext
from .console import run_cli, setup_logging


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
    setup_logging(verbose)
    ctx.obj = AppContext(home, verbose)
    if ctx.invoked_subcommand is None:
        from .commands.chat import chat_command

        # a context of its own, so its options' defaults go through their callbacks as on the
        # command line (ctx.invoke would pass --threads' raw default "auto")
        with chat_command.make_context("chat", [], parent=ctx) as sub:
            chat_command.invoke(sub)


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

    from .commands import eval as eval_cmd

    cli.add_command(eval_cmd.eval_command)

    from .commands import bundle

    cli.add_command(bundle.bundle_command)

    from .commands import finetune

    cli.add_command(finetune.finetune_command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into one-line messages."""
    run_cli(cli, "assistant", argv)
