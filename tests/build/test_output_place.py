"""Issue 12 item 9: a recipe writes only into the model home or its own directory tree (symlinks
resolved), unless the user chooses the file with -o; item 16: a build cleans the leftovers of
killed builds next to its output."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bld_support import RECIPE, Project

from assistant.errors import RecipeError
from convert.build import plan_build


@pytest.mark.parametrize("where", ["relative", "absolute", "symlink", "symlinked-dir"])
def test_recipe_output_outside_home_and_recipe_tree_is_refused(
    project: Project, assistant, tmp_path: Path, where: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    spec = {
        "relative": "../../../../../../../../../../.." + str(outside / "x.gguf"),
        "absolute": str(outside / "x.gguf"),
        "symlink": "link/x.gguf",
        "symlinked-dir": "out/x.gguf",
    }[where]
    if where == "symlink":
        (project.root / "build" / "link").symlink_to(outside)
    if where == "symlinked-dir":
        (project.root / "build" / "out").symlink_to(outside)
    recipe = project.write(RECIPE.replace('output = "out/bot.gguf"', f'output = "{spec}"'))
    r = assistant("build", recipe, home=project.home)
    assert r.code == 2 and r.out == "" and r.err.count("\n") == 1
    assert f"bot.toml: output: {spec} ({outside / 'x.gguf'}) is outside the model home" in r.err
    assert "choose the file with -o" in r.err
    assert list(outside.iterdir()) == []


def test_home_and_recipe_tree_are_accepted(project: Project) -> None:
    for spec, want in (
        ("{home}/sub/bot.gguf", project.home / "sub" / "bot.gguf"),
        ("deeper/bot.gguf", project.root / "build" / "deeper" / "bot.gguf"),
    ):
        text = RECIPE.replace('output = "out/bot.gguf"', f'output = "{spec}"')
        plan = plan_build(project.write(text), project.home)
        assert plan.recipe.output == want and plan.needed


def test_explicit_o_writes_anywhere(project: Project, assistant, tmp_path: Path) -> None:
    outside = tmp_path / "chosen" / "mine.gguf"
    escaping = project.write(RECIPE.replace('output = "out/bot.gguf"', 'output = "../../x.gguf"'))
    r = assistant("build", escaping, "-o", outside, home=project.home)
    assert r.code == 0, r.err
    assert outside.is_file() and outside.with_name("mine.gguf.lock.json").is_file()
    assert not (project.root.parent / "x.gguf").exists()
    r = assistant("verify", outside, home=project.home)
    assert r.code == 0, r.out + r.err
    r = assistant("build", "--all", "--dir", project.root / "build", "-o", outside, home=project.home)
    assert r.code == 2 and "-o names one output file" in r.err


def test_plan_build_refuses_before_anything_is_written(project: Project, tmp_path: Path) -> None:
    recipe = project.write(RECIPE.replace('output = "out/bot.gguf"', 'output = "/etc/x.gguf"'))
    with pytest.raises(RecipeError, match=r"output: /etc/x\.gguf \(/etc/x\.gguf\) is outside the model home"):
        plan_build(recipe, project.home)


def test_build_removes_leftovers_of_killed_builds(project: Project, assistant) -> None:
    outdir = project.out.parent
    outdir.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer runs
    past = time.time() - 3600
    work = outdir / f".bot.gguf.build-@{proc.pid}-777.x1y2z3.tmp-partial"
    work.mkdir()
    (work / "F32.gguf").write_bytes(b"GGUF" + bytes(1000))
    lock_tmp = outdir / f".bot.gguf.lock.json.@{proc.pid}-777.q9w8e7.tmp-partial"
    lock_tmp.write_text("{")
    for p in (work / "F32.gguf", work, lock_tmp):
        os.utime(p, (past, past))
    r = assistant("build", project.recipe, home=project.home)
    assert r.code == 0, r.err
    assert project.out.is_file()
    assert sorted(p.name for p in outdir.iterdir()) == ["bot.gguf", "bot.gguf.lock.json"]
