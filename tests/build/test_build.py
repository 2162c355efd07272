"""Recipe builds on a generated tiny model with two adapters: reproducible bytes, rebuild only on change,
lock contents, verify (against the lock, the embedded provenance and the inputs)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from bld_support import Project, flip_byte

from convert.build import build_recipe, plan_build
from convert.provenance import KEY


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _meta(path: Path) -> dict:
    from assistant.models.gguf_info import read_gguf_info

    return read_gguf_info(path).metadata


def test_two_adapters_byte_identical_rebuilds_threads_and_elsewhere(tmp_path: Path, project: Project) -> None:
    first = build_recipe(project.recipe, project.home, threads=1)
    assert first.built and project.out.is_file() and project.lock.is_file()
    sha = _sha(project.out)

    again = build_recipe(project.recipe, project.home, force=True, threads=2)  # several quantization threads
    assert again.built and _sha(project.out) == sha

    # The same recipe and inputs in another directory and another model home: the same bytes.
    other = tmp_path / "elsewhere"
    shutil.copytree(project.root / "models", other / "models")
    shutil.copytree(project.root / "adapters", other / "adapters")
    shutil.copytree(project.root / "build", other / "build")
    moved = build_recipe(other / "build" / "bot.toml", tmp_path / "home2", threads=2)
    assert _sha(moved.out) == sha
    assert str(project.root) not in project.out.read_bytes()[:200_000].decode("latin-1")  # no absolute paths

    # The lock: what went in, with what tools, and what came out.
    lock = json.loads(project.lock.read_text())
    assert lock["output"]["sha256"] == sha and lock["output"]["size"] == project.out.stat().st_size
    assert (
        lock["output"]["type"] == "Q4_K_M" and len(lock["output"]["tensors"]) == lock["output"]["n_tensors"]
    )
    assert lock["recipe"]["text"] == project.recipe.read_text()
    assert lock["recipe"]["sha256"] == _sha(project.recipe)
    assert lock["recipe"]["settings"]["adapters"][1] == {
        "path": "../adapters/a2",
        "scale": 0.5,
        "check_base": True,
    }
    base_files = {f["file"]: f["sha256"] for f in lock["inputs"]["base"]["files"]}
    assert base_files["model.safetensors"] == _sha(project.root / "models/base/model.safetensors")
    assert base_files["tokenizer.json"] == _sha(project.root / "models/base/tokenizer.json")
    for i, name in enumerate(["a1", "a2"]):
        files = {f["file"]: f["sha256"] for f in lock["inputs"]["adapters"][i]["files"]}
        assert files["adapter_model.safetensors"] == _sha(project.adapter(name) / "adapter_model.safetensors")
    versions = lock["versions"]
    assert versions["llama_cpp_python"] and versions["gguf"] and versions["llama_cpp"]
    assert versions["llama_cpp_libs"] and all(len(h) == 64 for h in versions["llama_cpp_libs"].values())
    q = lock["quality"]
    assert q["kind"] == "next-token" and q["reference"] == "F32" and q["rows"][0]["type"] == "Q4_K_M"

    # The GGUF: the provenance record (paths as the recipe writes them) and the system prompt.
    meta = _meta(project.out)
    record = json.loads(meta[KEY])
    assert record == lock["provenance"]
    assert record["base"]["path"] == "../models/base"
    assert [a["path"] for a in record["adapters"]] == ["../adapters/a1", "../adapters/a2"]
    assert [a["scale"] for a in record["adapters"]] == [1.0, 0.5]
    assert record["recipe"] == {"name": "bot", "settings_sha256": lock["recipe"]["settings_sha256"]}
    assert meta["edge_assistant.system_prompt"] == "You are terse."


def test_rebuilds_only_on_change_and_verify_of_the_old_lock_fails(project: Project, assistant) -> None:
    first = assistant("build", project.recipe, "--threads", "1", home=project.home)
    assert first.code == 0, first.err
    assert "building" in first.out and "mean KLD" in first.out
    sha, mtime = _sha(project.out), project.out.stat().st_mtime_ns

    second = assistant("build", project.recipe, home=project.home)
    assert second.code == 0 and "up to date" in second.out
    assert project.out.stat().st_mtime_ns == mtime
    assert assistant("verify", project.out, home=project.home).code == 0

    # One byte of adapter a2 changes (same size): verify names it, build rebuilds.
    weights = project.adapter("a2") / "adapter_model.safetensors"
    flip_byte(weights, weights.stat().st_size - 3)
    old_lock = project.lock.with_name("old.lock.json")
    shutil.copy(project.lock, old_lock)
    stale = assistant("verify", project.out, home=project.home)
    assert stale.code == 2
    assert "DIFFERS adapter[2]" in stale.out and "adapter_model.safetensors" in stale.out
    assert "ok      adapter[1]" in stale.out and "ok      output" in stale.out
    assert stale.err.count("\n") == 1 and stale.err.startswith("Error: ") and "adapter[2]" in stale.err

    plan = plan_build(project.recipe, project.home)
    assert plan.needed and plan.reasons == ["adapter[2] ../adapters/a2: adapter_model.safetensors changed"]
    rebuilt = assistant("build", project.recipe, "--threads", "1", home=project.home)
    assert rebuilt.code == 0 and "adapter_model.safetensors changed" in rebuilt.out
    assert _sha(project.out) != sha
    assert assistant("verify", project.out, home=project.home).code == 0

    old = assistant("verify", project.out, "--lock", old_lock, home=project.home)
    assert old.code == 2
    assert "DIFFERS output" in old.out and "DIFFERS provenance" in old.out and "DIFFERS adapter[2]" in old.out


def test_recipe_changes_rebuild_comments_do_not(project: Project, assistant) -> None:
    build_recipe(project.recipe, project.home, threads=1)
    assert not plan_build(project.recipe, project.home).needed
    sha = _sha(project.out)

    # Comments, layout and the description do not change the GGUF: no rebuild, the lock takes the new text.
    text = project.recipe.read_text().replace(
        "# two adapters over a tiny model", '# reviewed\ndescription = "ok"'
    )
    project.recipe.write_text(text.replace("scale = 0.5", "scale    =    0.5   # half"))
    plan = plan_build(project.recipe, project.home)
    assert not plan.needed and plan.refresh_lock and "no rebuild needed" in plan.notes[0]
    r = assistant("build", project.recipe, home=project.home)
    assert r.code == 0 and "is up to date" in r.out and "no rebuild needed" in r.out
    assert (
        _sha(project.out) == sha
        and json.loads(project.lock.read_text())["recipe"]["text"] == project.recipe.read_text()
    )
    assert assistant("verify", project.out, home=project.home).code == 0
    assert not plan_build(project.recipe, project.home).refresh_lock

    project.recipe.write_text(project.recipe.read_text().replace("0.5   # half", "0.25"))
    plan = plan_build(project.recipe, project.home)
    assert plan.reasons == [f"the recipe {project.recipe} changed: adapter[2].scale"]
    r = assistant("verify", project.out, home=project.home)
    assert r.code == 2 and "DIFFERS recipe" in r.out and "bot.toml changed: adapter[2].scale" in r.out
    result = build_recipe(project.recipe, project.home, threads=1)
    record = json.loads(_meta(project.out)[KEY])
    assert result.built and record["adapters"][1]["scale"] == 0.25 and _sha(project.out) != sha


def test_flipped_byte_in_the_gguf_verify_names_the_tensor_build_refuses(project: Project, run_cli) -> None:
    from assistant.models.gguf_info import read_gguf_info

    build_recipe(project.recipe, project.home, threads=1)
    info = read_gguf_info(project.out)
    t = next(t for t in info.tensors if t.name == "blk.1.ffn_down.weight")
    flip_byte(project.out, info.data_offset + t.offset + t.n_bytes // 2)
    damaged = _sha(project.out)

    r = run_cli("verify", str(project.out), home=project.home)  # the real command, in a subprocess
    assert r.returncode == 2
    assert "DIFFERS output" in r.stdout and "tensor data differs: blk.1.ffn_down.weight" in r.stdout
    assert "ok      base" in r.stdout and "ok      adapter[2]" in r.stdout
    assert r.stderr.count("\n") == 1 and "bot.gguf does not match" in r.stderr

    r = run_cli("build", str(project.recipe), home=project.home)  # a lock that does not match its GGUF
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "bot.gguf does not match its lock" in r.stderr and "--force" in r.stderr
    assert _sha(project.out) == damaged  # left alone

    r = run_cli("build", str(project.recipe), "--force", "--threads", "1", home=project.home)
    assert r.returncode == 0, r.stderr
    assert run_cli("verify", str(project.out), home=project.home).returncode == 0

    # A flipped byte in the header (the metadata) is named as such.
    flip_byte(project.out, 40)
    r = run_cli("verify", str(project.out), "--json", home=project.home)
    report = json.loads(r.stdout)
    assert r.returncode == 2 and not report["ok"]
    (output,) = [c for c in report["checks"] if c["subject"] == "output"]
    assert output["status"] == "differs" and (
        "header" in output["detail"] or "cannot be read" in output["detail"]
    )


def test_build_all_dry_run_and_json(project: Project, assistant) -> None:
    f16_recipe = RECIPE_TEMPLATE.format(quant="F16", out="f16")
    project.write(f16_recipe, "f16")
    dry = assistant("build", "--all", "--dir", project.root / "build", "--dry-run", home=project.home)
    assert dry.code == 0 and dry.out.count("would build (not built yet)") == 2
    assert not project.out.parent.exists()

    r = assistant(
        "build", "--all", "--dir", project.root / "build", "--json", "--threads", "1", home=project.home
    )
    assert r.code == 0, r.err
    lines = [json.loads(line) for line in r.out.splitlines()]
    assert [x["status"] for x in lines] == ["built", "built"]
    assert {x["type"] for x in lines} == {"Q4_K_M", "F16"}
    f16 = next(x for x in lines if x["type"] == "F16")
    assert f16["quality"]["rows"][0]["mean_kld"] < 1e-4 and f16["quality"]["rows"][0]["top1"] > 0.99
    r = assistant("build", "--all", "--dir", project.root / "build", "--json", home=project.home)
    assert [json.loads(line)["status"] for line in r.out.splitlines()] == ["up-to-date", "up-to-date"]

    project.write(f16_recipe.replace("f16.gguf", "bot.gguf"), "clash")  # two recipes, one output
    r = assistant("build", "--all", "--dir", project.root / "build", home=project.home)
    assert r.code == 2 and "both write" in r.err


RECIPE_TEMPLATE = """\
base = "../models/base"
quant = "{quant}"
output = "out/{out}.gguf"
[[adapter]]
path = "../adapters/a1"
"""
