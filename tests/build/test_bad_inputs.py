"""Every bad input: one line naming the file and the field, exit status 2, nothing written."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cvt_models
import pytest
from bld_support import RECIPE, Project

from convert.build import plan_build


def _replace(old: str, new: str) -> Callable[[Project], Path]:
    def make(p: Project) -> Path:
        assert old in RECIPE
        return p.write(RECIPE.replace(old, new))

    return make


def _other_shapes(p: Project) -> Path:
    other = cvt_models.make_decoder(p.root / "models" / "other", hidden=128, heads=4, kv_heads=2, ffn=256)
    cvt_models.make_adapter(p.root / "adapters" / "other", other, seed=3)
    return p.write(RECIPE.replace('path = "../adapters/a1"', 'path = "../adapters/other"'))


def _other_name(p: Project) -> Path:
    shutil.copytree(p.adapter("a1"), p.adapter("a3"))
    cfg_path = p.adapter("a3") / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = "Qwen/Qwen2-0.5B"
    cfg_path.write_text(json.dumps(cfg))
    return p.write(RECIPE.replace('path = "../adapters/a1"', 'path = "../adapters/a3"'))


def _no_weights(p: Project) -> Path:
    shutil.copytree(p.adapter("a1"), p.adapter("a4"))
    (p.adapter("a4") / "adapter_model.safetensors").unlink()
    return p.write(RECIPE.replace('path = "../adapters/a1"', 'path = "../adapters/a4"'))


def _short_eval(p: Project) -> Path:
    (p.root / "build" / "short.txt").write_text("Too short.")
    return p.write(RECIPE.replace('quant = "Q4_K_M"', 'quant = "Q4_K_M"\neval_text = "short.txt"'))


def _foreign_output(p: Project) -> Path:
    p.out.parent.mkdir()
    p.out.write_bytes(b"someone else's model")
    return p.recipe


def _broken_lock(p: Project) -> Path:
    p.out.parent.mkdir()
    p.lock.write_text("{not json")
    return p.recipe


def _not_utf8(p: Project) -> Path:
    p.recipe.write_bytes(b'base = "\xff\xfe"\n')
    return p.recipe


def _embedding_with_max_kld(p: Project) -> Path:
    cvt_models.make_bert(p.root / "models" / "bert")
    return p.write('base = "../models/bert"\nquant = "auto"\nmax_kld = 0.05\noutput = "out/bot.gguf"\n')


CASES: dict[str, tuple[Callable[[Project], Path], list[str]]] = {
    "toml syntax": (
        _replace('quant = "Q4_K_M"', "quant = Q4_K_M"),
        ["bot.toml, line 3, column", "TOML syntax error"],
    ),
    "toml syntax at end": (
        _replace("scale = 0.5\n", "scale = [0.5\n"),
        ["bot.toml, line", "TOML syntax error"],
    ),
    "unknown key": (
        _replace("quant =", "quantization ="),
        ["bot.toml: unknown key 'quantization'", "'quant'"],
    ),
    "unknown adapter key": (
        _replace("scale = 0.5", "scael = 0.5"),
        ["bot.toml: adapter[2]: unknown key 'scael'"],
    ),
    "missing base": (_replace('base = "../models/base"\n', ""), ["bot.toml: base: missing"]),
    "missing base path": (
        _replace("../models/base", "../models/nope"),
        ["bot.toml: base: ../models/nope: no such"],
    ),
    "missing adapter path": (
        _replace("../adapters/a2", "../adapters/gone"),
        ["bot.toml: adapter[2].path: ../adapters/gone: no such"],
    ),
    "adapter not an array": (
        lambda p: p.write('base = "../models/base"\n[adapter]\npath = "../adapters/a1"\n'),
        ["bot.toml: adapter: write [[adapter]]"],
    ),
    "scale not a number": (
        _replace("scale = 0.5", 'scale = "half"'),
        ["bot.toml: adapter[2].scale: expected a number"],
    ),
    "unknown quant": (_replace("Q4_K_M", "Q3_X"), ["bot.toml: quant: unknown type 'Q3_X'"]),
    "imatrix quant": (_replace("Q4_K_M", "IQ2_XS"), ["bot.toml: quant: IQ2_XS needs an importance matrix"]),
    "max_kld without auto": (
        _replace('quant = "Q4_K_M"', 'quant = "Q4_K_M"\nmax_kld = 0.05'),
        ['bot.toml: max_kld: only applies with quant = "auto"'],
    ),
    "min_cosine on a chat model": (
        _replace('quant = "Q4_K_M"', 'quant = "auto"\nmin_cosine = 0.99'),
        ["bot.toml: min_cosine: applies to embedding models"],
    ),
    "max_kld on an embedding model": (
        _embedding_with_max_kld,
        ["bot.toml: max_kld: next-token KLD does not apply"],
    ),
    "output inside an adapter": (
        _replace("out/bot.gguf", "../adapters/a1/merged.gguf"),
        ["bot.toml: output: ../adapters/a1/merged.gguf is inside the input directory of adapter[1].path"],
    ),
    "output inside the base": (
        _replace("out/bot.gguf", "../models/base/merged.gguf"),
        ["bot.toml: output:", "inside the input directory of base"],
    ),
    "output not .gguf": (
        _replace("out/bot.gguf", "out/bot.bin"),
        ["bot.toml: output: out/bot.bin should end in .gguf"],
    ),
    "missing eval_text": (
        _replace('quant = "Q4_K_M"', 'quant = "Q4_K_M"\neval_text = "nope.txt"'),
        ["bot.toml: eval_text: nope.txt: no such file"],
    ),
    "short eval_text": (_short_eval, ["bot.toml: eval_text: short.txt has 10 characters"]),
    "eval_tokens too many": (
        _replace('quant = "Q4_K_M"', 'quant = "Q4_K_M"\neval_tokens = 10000000'),
        ["bot.toml: eval_tokens: expected an integer from 64 to 16384"],
    ),
    "bad placeholder": (
        _replace("../models/base", "{hom}/base"),
        ["bot.toml: base:", "placeholder is {home}"],
    ),
    "hub repo not in the cache": (
        _replace("../models/base", "someorg/not-cached"),
        ["bot.toml: base: someorg/not-cached", "not in the local Hugging Face cache"],
    ),
    "adapter for another base (shapes)": (
        _other_shapes,
        ["bot.toml: adapter[1].path", "does not fit the base"],
    ),
    "adapter for another base (name)": (
        _other_name,
        ["bot.toml: adapter[1].path: ../adapters/a3 was trained on 'Qwen/Qwen2-0.5B'", "check_base = false"],
    ),
    "adapter without weights": (
        _no_weights,
        ["bot.toml: adapter[1].path", "missing adapter_model.safetensors"],
    ),
    "output from elsewhere": (
        _foreign_output,
        ["bot.toml: output:", "bot.gguf exists and was not built by a recipe"],
    ),
    "unreadable lock": (_broken_lock, ["bot.gguf.lock.json, line 1: not valid JSON"]),
    "recipe not UTF-8": (_not_utf8, ["bot.toml: not UTF-8 text"]),
    "no such recipe": (lambda p: p.root / "build" / "nope.toml", ["recipe", "nope.toml: no such file"]),
}


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_dir()
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case: str, project: Project, assistant, tmp_path: Path) -> None:
    make, expected = CASES[case]
    recipe = make(project)
    before = _tree(tmp_path)
    r = assistant("build", recipe, home=project.home)
    assert r.code == 2, (r.out, r.err)
    assert r.err.startswith("Error: ") and r.err.count("\n") == 1, r.err
    for text in expected:
        assert text in r.err, (text, r.err)
    assert _tree(tmp_path) == before  # nothing written, nothing left behind


def test_check_base_false_accepts_a_renamed_base(project: Project) -> None:
    _other_name(project)
    text = project.root / "build" / "bot.toml"
    text.write_text(
        text.read_text().replace('path = "../adapters/a3"', 'path = "../adapters/a3"\ncheck_base = false')
    )
    assert plan_build(text, project.home).needed  # accepted: the shapes fit, the name check is off


def test_real_process_exit_status(project: Project, run_cli) -> None:
    recipe = project.write(RECIPE.replace("Q4_K_M", "Q3_X"))
    r = run_cli("build", str(recipe), home=project.home)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().startswith("Error: ") and "quant: unknown type 'Q3_X'" in r.stderr
    r = run_cli("build", home=project.home)
    assert r.returncode == 2 and "give a recipe" in r.stderr
    r = run_cli("verify", str(project.root / "out" / "nope.gguf"), home=project.home)
    assert r.returncode == 2 and "nope.gguf: no such model file" in r.stderr
    os.makedirs(project.root / "out")
    (project.root / "out" / "plain.gguf").write_bytes(b"GGUF")
    r = run_cli("verify", str(project.root / "out" / "plain.gguf"), home=project.home)
    assert r.returncode == 2 and "plain.gguf.lock.json: no such lock file" in r.stderr
