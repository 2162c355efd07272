"""`assistant build` (recipes -> GGUF + lock + quality report) and `assistant verify` (GGUF vs its lock)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .options import threads_option

if TYPE_CHECKING:
    from .context import AppContext


def _recipes_dir(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    here = Path("build")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent.parent / "build"  # the checkout's build/


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


@click.command("build")
@click.argument("recipes", nargs=-1, type=click.Path(path_type=Path))
@click.option("--all", "build_all", is_flag=True, help="Build every recipe (*.toml) in the recipe directory.")
@click.option(
    "--dir",
    "recipes_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Recipe directory for --all (default: ./build, else the checkout's build/).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Rebuild even if nothing changed; also replaces an output that does not match its lock.",
)
@threads_option
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the GGUF (and its lock) here instead of the recipe's output; one recipe only. "
    "Without it a recipe writes only into the model home or its own directory.",
)
@click.option("--dry-run", is_flag=True, help="Only check the recipes and say what would be built and why.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per recipe, one per line.")
@click.pass_obj
def build_command(
    app: AppContext,
    recipes: tuple[Path, ...],
    build_all: bool,
    recipes_dir: Path | None,
    force: bool,
    threads: int | None,
    out: Path | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Build models from recipes (build/NAME.toml): merge the adapters into the base, quantize, and
    write OUT plus OUT.lock.json (input hashes, versions, quality report).

    A recipe is rebuilt only when an input file or the recipe changed (--force to override). Every
    recipe is checked before anything is built; a bad one stops the run with nothing written.
    """
    from convert.build import find_recipes, plan_build, run_build, up_to_date_result
    from convert.progress import for_terminal

    from ..errors import UsageError

    paths = list(recipes)
    if build_all:
        paths += find_recipes(_recipes_dir(recipes_dir))
    if not paths:
        raise UsageError(
            "give a recipe (assistant build build/NAME.toml) or --all"
            if not build_all
            else f"no recipes (*.toml) in {_recipes_dir(recipes_dir)}"
        )
    if out is not None and (build_all or len(paths) != 1):
        raise UsageError("-o names one output file: give exactly one recipe, and no --all")
    home = app.home.root
    plans = [plan_build(p, home, force=force, output=out) for p in paths]
    seen: dict[Path, Path] = {}
    for plan in plans:
        other = seen.setdefault(plan.recipe.output, plan.recipe.path)
        if other != plan.recipe.path:
            raise UsageError(
                f"{other} and {plan.recipe.path} both write {plan.recipe.output}; give one another output"
            )
    for plan in plans:
        r = plan.recipe
        if dry_run:
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "recipe": str(r.path),
                            "output": str(r.output),
                            "status": "would build" if plan.needed else "up-to-date",
                            "reasons": plan.reasons,
                            "notes": plan.notes,
                        }
                    )
                )
            else:
                state = f"would build ({'; '.join(plan.reasons)})" if plan.needed else "up to date"
                click.echo(f"{r.name}: {r.output} {state}")
                for note in plan.notes:
                    click.echo(f"  note: {note}")
            continue
        if not plan.needed:
            result = up_to_date_result(plan)
        else:
            if not as_json:
                adapters = f" + {len(r.adapters)} adapter(s)" if r.adapters else ""
                click.echo(
                    f"{r.name}: building {r.output} from {r.base.spec}{adapters}, {r.quant} ({'; '.join(plan.reasons)})"
                )
            bar = None if as_json else for_terminal()
            try:
                result = run_build(plan, threads=threads, progress=bar)
            finally:
                if bar is not None:
                    bar.close()
        if as_json:
            click.echo(json.dumps(result.as_dict()))
            continue
        made = result.lock["output"]
        if result.built:
            assert result.quality is not None
            click.echo(result.quality.table())
            click.echo(
                f"{r.name}: wrote {result.out} ({made['type']}, {_human(made['size'])}, sha256 {made['sha256'][:16]}…) "
                f"and {result.lock_path.name} in {result.seconds:.1f} s"
            )
        else:
            click.echo(
                f"{r.name}: {result.out} is up to date ({made['type']}, sha256 {made['sha256'][:16]}…)"
            )
        for note in result.notes:
            click.echo(f"  note: {note}")


@click.command("verify")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--lock",
    "lock_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The lock to compare with (default: MODEL.lock.json).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as one JSON object.")
@click.pass_obj
def verify_command(app: AppContext, model: Path, lock_path: Path | None, as_json: bool) -> None:
    """Check a built GGUF against its lock: its sha256, the provenance embedded in it, and the
    recipe and input files that are present here (hashed again). Without a lock (a `convert`
    output) the provenance embedded in the GGUF is the reference: input files, type, tool version.

    Exits 0 only when everything matches; otherwise lists exactly what differs and exits 2.
    Inputs that are not present on this machine are reported and not counted.
    """
    from convert.recipe import show
    from convert.verify import verify_model

    from ..errors import VerificationError

    home = app.home.root
    if not model.exists() and (home / model).is_file():
        model = home / model
    report = verify_model(model, lock_path, home=home)
    against = show(report.lock) if report.lock is not None else "its embedded provenance"
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        no_lock = "" if report.lock is not None else " (no lock file: only some checks are possible)"
        click.echo(f"verify {show(report.model)} against {against}{no_lock}")
        labels = {"ok": "ok     ", "differs": "DIFFERS", "missing": "skipped", "note": "note   "}
        for c in report.checks:
            click.echo(f"{labels[c.status]} {c.subject}: {c.detail}")
    if not report.ok:
        what = "; ".join(f"{c.subject}: {c.detail}" for c in report.differences)
        raise VerificationError(f"{show(report.model)} does not match {against}: {what}")
    if not as_json:
        skipped = sum(c.status == "missing" for c in report.checks)
        click.echo("all checks passed" + (f" ({skipped} could not be made here)" if skipped else ""))
