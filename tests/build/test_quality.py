"""The quality report (llama.cpp on the real GGUF files) and quant = "auto"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bld_support import Project

from convert.build import build_recipe
from convert.quality import AUTO_ORDER

AUTO = """\
base = "../models/base"
quant = "auto"
{budget}
output = "out/{name}.gguf"
[[adapter]]
path = "../adapters/a1"
[[adapter]]
path = "../adapters/a2"
scale = 0.5
"""


@pytest.fixture(scope="module")
def full_table(tmp_path_factory: pytest.TempPathFactory, sources: Path) -> dict[str, dict]:
    """max_kld = 0: no quantized type is within budget, so auto measures every candidate (F32 last)."""
    import shutil

    root = tmp_path_factory.mktemp("table") / "proj"
    shutil.copytree(sources, root)
    (root / "build").mkdir()
    p = Project(root, root.parent / "home")
    result = build_recipe(p.write(AUTO.format(budget="max_kld = 0", name="all"), "all"), p.home, threads=1)
    rows = {r["type"]: r for r in result.lock["quality"]["rows"]}
    assert list(rows) == AUTO_ORDER and result.output_type == "F32"
    return rows


def test_kld_is_zero_for_f32_and_grows_from_q8_0_to_q4_0(full_table: dict[str, dict]) -> None:
    kld = {t: r["mean_kld"] for t, r in full_table.items()}
    assert kld["F32"] == 0.0 and full_table["F32"]["top1"] == 1.0
    assert kld["F16"] < 1e-5
    assert kld["F16"] < kld["Q8_0"] < kld["Q6_K"] < kld["Q5_K_M"] < kld["Q4_K_M"] < kld["Q4_0"]
    assert kld["Q4_0"] > 20 * kld["Q8_0"]
    # top-1 agreement falls and the quantized perplexity moves away from the reference's
    assert full_table["Q8_0"]["top1"] > full_table["Q4_0"]["top1"]
    ref_ppl = {r["ref_ppl"] for r in full_table.values()}
    assert len(ref_ppl) == 1
    (ref,) = ref_ppl
    assert abs(full_table["Q8_0"]["ppl"] - ref) < abs(full_table["Q4_0"]["ppl"] - ref)
    for r in full_table.values():
        assert r["p99_kld"] >= r["mean_kld"] and np.isfinite(r["ppl"])
    sizes = [full_table[t]["size"] for t in AUTO_ORDER]
    assert sizes == sorted(sizes)  # the candidates really are tried smallest first


@pytest.mark.parametrize("between", [("Q5_K_S", "Q4_K_M"), ("Q8_0", "Q6_K")])
def test_auto_picks_the_smallest_type_within_budget(
    project: Project, full_table: dict[str, dict], between: tuple[str, str]
) -> None:
    budget = (full_table[between[0]]["mean_kld"] + full_table[between[1]]["mean_kld"]) / 2
    want = next(t for t in AUTO_ORDER if full_table[t]["mean_kld"] <= budget)
    fits = [t for t in AUTO_ORDER if full_table[t]["mean_kld"] <= budget]
    assert want == min(fits, key=lambda t: full_table[t]["size"])
    recipe = project.write(AUTO.format(budget=f"max_kld = {budget!r}", name="auto"), "auto")
    result = build_recipe(recipe, project.home, threads=1)
    q = result.lock["quality"]
    assert result.output_type == want and q["chosen"] == want and q["budget"] == {"max_kld": budget}
    assert [r["type"] for r in q["rows"]] == AUTO_ORDER[: AUTO_ORDER.index(want) + 1]
    assert all(not r["within_budget"] for r in q["rows"][:-1]) and q["rows"][-1]["within_budget"]
    for r in q["rows"]:  # the same measurements as the full table (deterministic)
        assert r["mean_kld"] == pytest.approx(full_table[r["type"]]["mean_kld"], rel=1e-6, abs=1e-9)
    from assistant.models.gguf_info import read_gguf_info

    assert read_gguf_info(result.out).quant_type == want
    assert json.loads(read_gguf_info(result.out).get("edge_assistant.provenance"))["output_type"] == want
    assert f"smallest type within budget: {want}" in result.quality.table()


def test_auto_default_budget_is_0_05(project: Project, full_table: dict[str, dict]) -> None:
    recipe = project.write(AUTO.format(budget="", name="default"), "default")
    result = build_recipe(recipe, project.home, threads=1)
    want = next(t for t in AUTO_ORDER if full_table[t]["mean_kld"] <= 0.05)
    assert result.lock["quality"]["budget"] == {"max_kld": 0.05} and result.output_type == want


def test_report_table_and_eval_text(project: Project) -> None:
    text = project.root / "build" / "eval.txt"
    text.write_text(("The router restarts when the light turns orange. " * 8 + "\n\n") * 6)
    recipe = project.write(
        project.recipe.read_text().replace(
            'quant = "Q4_K_M"', 'quant = "Q8_0"\neval_text = "eval.txt"\neval_tokens = 300'
        ),
        "evalled",
    )
    result = build_recipe(recipe, project.home, threads=1)
    q = result.lock["quality"]
    assert q["eval_text"] == "eval.txt" and q["scored_tokens"] > 32 and q["window"] <= 256
    row = q["rows"][0]
    assert row["type"] == "Q8_0" and 0 < row["mean_kld"] < 0.01 and row["top1"] > 0.8
    table = result.quality.table().splitlines()
    assert "on eval.txt" in table[0] and table[1].split()[:4] == ["type", "size", "mean", "KLD"]
    assert table[2].startswith("Q8_0")
    inputs = result.lock["inputs"]["eval_text"]
    assert inputs["spec"] == "eval.txt" and inputs["files"][0]["file"] == "eval.txt"


def test_eval_logits_match_token_by_token_decoding(default_model_path: Path) -> None:
    """The backend's all-positions logits equal what the chat path sees after each token."""
    from assistant.engine.backend import ContextConfig, LlamaContext, LlamaModel
    from assistant.errors import ModelError

    model = LlamaModel(default_model_path)
    ctx = LlamaContext(model, ContextConfig(n_ctx=64, n_threads=1, n_batch=16))
    try:
        ids = model.tokenize("The quick brown fox jumps over the lazy dog, twice over.", add_special=True)
        assert 8 < len(ids) < 64
        all_logits = ctx.eval_logits(ids)  # several n_batch slices
        assert all_logits.shape == (len(ids), model.n_vocab) and all_logits.dtype == np.float32
        ctx.clear()
        for i, t in enumerate(ids):
            ctx.decode([t])
            step = np.ctypeslib.as_array(ctx.logits())
            assert np.allclose(step, all_logits[i], atol=2e-3), i
        with pytest.raises(ModelError, match=f"takes 1 to {ctx.n_ctx} tokens"):
            ctx.eval_logits([1] * (ctx.n_ctx + 1))  # llama.cpp would abort past its context
        with pytest.raises(ModelError, match="outside the vocabulary"):
            ctx.eval_logits([model.n_vocab])
    finally:
        ctx.close()
        model.close()


def test_embedding_model_report_and_auto_min_cosine(project: Project) -> None:
    """An embedding model is judged by its embeddings (cosine to the unquantized build), not by KLD."""
    import cvt_models

    cvt_models.make_bert(project.root / "models" / "bert", hidden=256, ffn=512)
    recipe = project.write(
        'base = "../models/bert"\nquant = "auto"\nmin_cosine = 1.0\noutput = "out/e.gguf"\n', "e"
    )
    result = build_recipe(recipe, project.home, threads=1)
    q = result.lock["quality"]
    rows = {r["type"]: r for r in q["rows"]}
    assert q["kind"] == "embedding" and q["passages"] >= 8 and list(rows) == AUTO_ORDER
    assert "mean_kld" not in rows["Q8_0"] and result.output_type == "F32"
    assert rows["F32"]["mean_cosine"] == pytest.approx(1.0, abs=1e-9)
    assert rows["F16"]["mean_cosine"] > rows["Q8_0"]["mean_cosine"] > rows["Q4_0"]["mean_cosine"]
    assert rows["Q8_0"]["mean_cosine"] > 0.999 and rows["Q4_0"]["min_cosine"] <= rows["Q4_0"]["mean_cosine"]
    assert "mean cosine" in result.quality.table()

    budget = (rows["Q8_0"]["mean_cosine"] + rows["Q6_K"]["mean_cosine"]) / 2
    want = next(t for t in AUTO_ORDER if rows[t]["mean_cosine"] >= budget)
    recipe.write_text(recipe.read_text().replace("min_cosine = 1.0", f"min_cosine = {budget!r}"))
    result = build_recipe(recipe, project.home, threads=1)
    assert result.output_type == want and result.lock["quality"]["budget"] == {"min_cosine": budget}
