"""The recipes that ship: build/minilm.toml, build/smollm2.toml and build/smollm2-grounded.toml (run by
`assistant setup`) and the sample
build/examples/support-bot.toml (a Hub chat model plus an adapter), on real or generated models."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cvt_models
from bld_support import ROOT

from convert.build import build_recipe
from convert.recipe import load_recipe

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_sample_recipe_hub_chat_model_plus_adapter(tmp_path: Path, run_cli) -> None:
    """The sample as shipped, on a tiny generated model placed in a scratch Hugging Face cache under the
    sample's repo id (offline), and a tiny adapter in {home}/sources/support-v3."""
    (tmp_path / "proj" / "build").mkdir(parents=True)
    for name in ("support-bot.toml", "support-bot.txt"):
        shutil.copy(ROOT / "build" / "examples" / name, tmp_path / "proj" / "build" / name)

    hf = tmp_path / "hf"
    repo = hf / "hub" / "models--HuggingFaceTB--SmolLM2-135M-Instruct"
    model = cvt_models.make_decoder(repo / "snapshots" / COMMIT, tokenizer="bytelevel-smollm")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    home = tmp_path / "home"
    adapter = cvt_models.make_adapter(home / "sources" / "support-v3", model, targets=["q_proj", "v_proj"])
    cfg = json.loads((adapter.path / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"  # as PEFT writes it
    (adapter.path / "adapter_config.json").write_text(json.dumps(cfg))

    recipe = load_recipe(tmp_path / "proj" / "build" / "support-bot.toml", home)
    assert recipe.base.repo == "HuggingFaceTB/SmolLM2-135M-Instruct" and recipe.base.revision == "main"
    env = {"HF_HOME": str(hf)}
    toml = str(tmp_path / "proj" / "build" / "support-bot.toml")
    r = run_cli("build", toml, "--threads", "1", home=home, env=env)
    assert r.returncode == 0, r.stderr
    assert "on support-bot.txt" in r.stdout and "Q4_K_M" in r.stdout
    out = home / "support-bot.gguf"
    lock = json.loads((home / "support-bot.gguf.lock.json").read_text())
    assert lock["inputs"]["base"]["revision"] == {
        "repo": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "commit": COMMIT,
        "requested": "main",
    }
    assert lock["inputs"]["adapters"][0]["spec"] == "{home}/sources/support-v3"
    assert lock["output"]["sha256"] == _sha(out)
    from assistant.models.gguf_info import read_gguf_info

    meta = read_gguf_info(out).metadata
    record = json.loads(meta["edge_assistant.provenance"])
    assert record["revisions"] == {"HuggingFaceTB/SmolLM2-135M-Instruct@main": COMMIT}
    assert record["base"]["path"] == "HuggingFaceTB/SmolLM2-135M-Instruct@main"
    assert meta["edge_assistant.system_prompt"].startswith("You are the support assistant for Acme routers.")

    # verify finds the base in the Hub cache at the recorded commit and the adapter through {home}
    r = run_cli("verify", str(out), home=home, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok      base" in r.stdout and "ok      adapter[1]" in r.stdout and "ok      recipe" in r.stdout
    r = run_cli("build", toml, home=home, env=env)
    assert r.returncode == 0 and "is up to date" in r.stdout


def test_setup_runs_the_recipes(
    tmp_path: Path,
    run_cli,
    minilm_src: Path,
    default_model_path: Path,
    stock_model_path: Path,
    default_source_path: Path,
) -> None:
    """setup builds the default models with build/'s recipes; a home laid out by an older setup (the
    Q4_1 at the top) has it moved into sources/, and the chat models' bytes are the checkout's."""
    from convert.minilm import MINILM_GGUF, MINILM_QUANT
    from convert.setup_recipes import gguf_current, setup_recipe_path

    recipe_path = setup_recipe_path("minilm.toml")
    assert recipe_path == ROOT / "build" / "minilm.toml"
    home = tmp_path / "home"
    (home / "sources").mkdir(parents=True)
    (home / "sources" / "all-MiniLM-L6-v2").symlink_to(minilm_src)  # extracted already: no download
    assert load_recipe(recipe_path, home).quant == MINILM_QUANT
    (home / default_source_path.name).symlink_to(default_source_path)  # where older setups put it

    r = run_cli("setup", home=home)
    assert r.returncode == 0, r.stderr
    assert "with the recipe minilm.toml" in r.stdout and "mean cosine" in r.stdout
    out = home / MINILM_GGUF
    lock = json.loads((home / f"{MINILM_GGUF}.lock.json").read_text())
    q = lock["quality"]
    assert q["kind"] == "embedding" and q["reference"] == "F32" and q["passages"] >= 8
    (row,) = q["rows"]
    assert row["type"] == "F16" and row["mean_cosine"] > 0.9999 and row["min_cosine"] > 0.999
    assert row["neighbours"] == 1.0
    assert lock["inputs"]["base"]["spec"] == "{home}/sources/all-MiniLM-L6-v2"
    assert gguf_current("minilm.toml", out)

    stock, chat = home / stock_model_path.name, home / default_model_path.name
    assert f"ok  {default_source_path.name} moved into sources/" in r.stdout
    assert (home / "sources" / default_source_path.name).is_symlink()
    assert not (home / default_source_path.name).exists()
    for model, recipe in ((stock, "smollm2.toml"), (chat, "smollm2-grounded.toml")):
        assert f"ok  {model.name} (built from sources/{default_source_path.name}, Q8_0" in r.stdout
        assert gguf_current(recipe, model)
        (row,) = json.loads((home / f"{model.name}.lock.json").read_text())["quality"]["rows"]
        assert row["type"] == "Q8_0" and row["mean_kld"] < 0.01
    assert "quantizes it a second time" not in r.stderr  # Q4_1 -> Q8_0 keeps the values: no warning
    assert _sha(stock) == _sha(stock_model_path) and _sha(chat) == _sha(default_model_path)
    # the default carries its adapter's training record: what it was trained on, how, at what cost
    lock = json.loads((home / f"{chat.name}.lock.json").read_text())
    (adapter,) = lock["inputs"]["adapters"]
    assert adapter["spec"] == "adapters/smollm2-grounded"
    assert adapter["training"]["loss"] == "answers" and adapter["training"]["forgetting_best_epoch"] < 0.1

    r = run_cli("setup", home=home)
    assert r.returncode == 0 and f"ok  {MINILM_GGUF} (up to date" in r.stdout
    assert f"ok  {stock.name} (up to date with its recipe smollm2.toml)" in r.stdout
    assert f"ok  {chat.name} (up to date with its recipe smollm2-grounded.toml)" in r.stdout
    r = run_cli("build", str(recipe_path), home=home)  # the recipe by hand: the same thing, nothing to do
    assert r.returncode == 0 and "is up to date" in r.stdout
    r = run_cli("verify", str(out), home=home)
    assert r.returncode == 0, r.stdout + r.stderr

    # Another model home gets the very same bytes (knowledge bases record the model's sha256).
    other = tmp_path / "home2"
    (other / "sources").mkdir(parents=True)
    (other / "sources" / "all-MiniLM-L6-v2").symlink_to(minilm_src)
    again = build_recipe(recipe_path, other, threads=1)
    assert _sha(again.out) == _sha(out)


def test_an_installed_copy_carries_the_setup_recipes_and_their_adapters() -> None:
    """An installed copy has no build/: the wheel (pyproject's force-include) and the bundle's project
    wheel must both carry every recipe setup runs and the adapter directories they name, at the same
    relative paths (a recipe names its adapter relative to itself)."""
    import tomllib

    from assistant.bundle.wheels import _setup_recipes
    from convert.recipe import load_recipe
    from convert.setup_recipes import SETUP_ADAPTERS, SETUP_RECIPES

    packed = {rel for rel, _ in _setup_recipes()}
    assert set(SETUP_RECIPES) <= packed
    for d in SETUP_ADAPTERS:
        assert {f"{d}/adapter_config.json", f"{d}/adapter_model.safetensors", f"{d}/training.json"} <= packed
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for rel in (*SETUP_RECIPES, *SETUP_ADAPTERS):
        assert included[f"build/{rel}"] == f"convert/recipes/{rel}"
    named = {
        Path(a.source.spec).as_posix()
        for name in SETUP_RECIPES
        for a in load_recipe(ROOT / "build" / name, ROOT / "models").adapters
    }
    assert named == set(SETUP_ADAPTERS)
