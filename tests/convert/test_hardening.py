"""Issue 12, convert items: bad adapters are named as such (15), PEFT's save_embedding_layers
adapters are accepted (29), runtime LoRAs llama.cpp would abort on are refused (30), verify of a
`convert` output without a lock (its embedded provenance), and a warning when re-quantizing."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import cvt_models
import numpy as np
import pytest
from safetensors.numpy import load_file

from assistant.errors import AssistantError, ConversionError, ModelError
from convert.api import convert_adapter, convert_model
from convert.peft import parse_adapter_arg


def _tensors(path: Path) -> dict[str, np.ndarray]:
    from gguf import GGUFReader

    return {t.name: np.array(t.data) for t in GGUFReader(path).tensors}


def _poison(adapter: Path, key: str, value: float = np.nan) -> None:
    weights = dict(load_file(adapter / "adapter_model.safetensors"))
    weights[key] = weights[key].copy()
    weights[key].flat[3] = value
    cvt_models.write_safetensors(adapter / "adapter_model.safetensors", weights)


# ---------------------------------------------------------------------------------------------- item 15


def test_nan_in_an_adapter_names_the_adapter_file_and_tensor(tmp_path: Path, tiny_llama) -> None:
    ad = cvt_models.make_adapter(tmp_path / "ad", tiny_llama, targets=["q_proj"])
    key = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"
    _poison(ad.path, key)
    out = tmp_path / "m.gguf"
    with pytest.raises(ConversionError) as err:
        convert_model(tiny_llama.path, out, [(ad.path, 1.0)], quant="F16")
    msg = str(err.value)
    assert key in msg and str(ad.path / "adapter_model.safetensors") in msg and "NaN/Inf" in msg
    assert str(tiny_llama.path) not in msg.replace(str(ad.path), "")  # the base is not blamed
    assert not out.exists()


def test_inf_in_a_replaced_tensor_names_the_adapter(tmp_path: Path, tiny_llama) -> None:
    norm = tiny_llama.weights["model.norm.weight"].copy()
    norm[0] = np.inf
    ad = cvt_models.make_adapter(
        tmp_path / "ad", tiny_llama, targets=["q_proj"], modules_to_save={"model.norm.weight": norm}
    )
    with pytest.raises(ConversionError, match=r"model\.norm\.weight has 1 NaN/Inf values \(adapter .*ad/"):
        convert_model(tiny_llama.path, tmp_path / "m.gguf", [(ad.path, 1.0)], quant="F32")


@pytest.mark.parametrize("scale", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_scale_is_refused_at_parse_time(tmp_path: Path, scale: str) -> None:
    with pytest.raises(
        ConversionError, match=f"--adapter ad@{scale}: the scale '{scale}' is not a finite number"
    ):
        parse_adapter_arg(f"ad@{scale}")
    assert parse_adapter_arg("ad@0.5") == ("ad", 0.5)
    assert parse_adapter_arg("ad@v2") == ("ad@v2", 1.0)  # not a number: part of the path
    named = tmp_path / f"ad@{scale}"
    named.mkdir()
    assert parse_adapter_arg(str(named)) == (str(named), 1.0)  # an existing path is a path


def test_non_finite_scale_cli_and_recipe(tmp_path: Path, tiny_llama, tiny_adapter, cli) -> None:
    r = cli(
        "convert",
        str(tiny_llama.path),
        "-o",
        str(tmp_path / "m.gguf"),
        "--adapter",
        f"{tiny_adapter.path}@nan",
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "the scale 'nan' is not a finite number" in r.stderr and not (tmp_path / "m.gguf").exists()
    from convert.recipe import load_recipe

    recipe = tmp_path / "r.toml"
    recipe.write_text(f'base = "{tiny_llama.path}"\n[[adapter]]\npath = "{tiny_adapter.path}"\nscale = nan\n')
    with pytest.raises(AssistantError, match=r"adapter\[1\]\.scale: expected a finite number, got nan"):
        load_recipe(recipe, tmp_path)


# ---------------------------------------------------------------------------------------------- item 29


def _embedding_adapter(path: Path, model, *, save: bool, seed: int = 4):
    return cvt_models.make_adapter(
        path,
        model,
        targets=["q_proj", "v_proj", "lm_head"],
        embedding_lora=True,
        save_embedding_layers=save,
        seed=seed,
        std=0.1,
    )


def test_peft_save_embedding_layers_layout_is_merged(tmp_path: Path, tiny_llama) -> None:
    """The exact keys PEFT writes: ...embed_tokens.base_layer.weight and lm_head.base_layer.weight."""
    saved = _embedding_adapter(tmp_path / "saved", tiny_llama, save=True)
    plain = _embedding_adapter(tmp_path / "plain", tiny_llama, save=False)
    keys = set(load_file(saved.path / "adapter_model.safetensors"))
    assert {
        "base_model.model.model.embed_tokens.base_layer.weight",
        "base_model.model.lm_head.base_layer.weight",
        "base_model.model.model.embed_tokens.lora_embedding_A",
        "base_model.model.lm_head.lora_A.weight",
    } <= keys
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    convert_model(tiny_llama.path, a, [(saved.path, 1.0)], quant="F32")
    convert_model(tiny_llama.path, b, [(plain.path, 1.0)], quant="F32")
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)
    ref = saved.merged(tiny_llama.weights)
    assert np.allclose(ta["token_embd.weight"], ref["model.embed_tokens.weight"], atol=1e-5)
    # the runtime LoRA export accepts it too (the copy is checked, not exported)
    la, lb = tmp_path / "la.gguf", tmp_path / "lb.gguf"
    convert_adapter(saved.path, tiny_llama.path, la, outtype="f32")
    convert_adapter(plain.path, tiny_llama.path, lb, outtype="f32")
    ta, tb = _tensors(la), _tensors(lb)
    assert ta.keys() == tb.keys() and "token_embd.weight.lora_a" in ta
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_save_embedding_layers_on_a_tied_model(tmp_path: Path) -> None:
    """Tied embeddings: PEFT's copy of lm_head's base layer is the embedding matrix."""
    tied = cvt_models.make_decoder(tmp_path / "tied", tie=True)
    saved = _embedding_adapter(tmp_path / "saved", tied, save=True)
    plain = _embedding_adapter(tmp_path / "plain", tied, save=False)
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    convert_model(tied.path, a, [(saved.path, 1.0)], quant="F32")
    convert_model(tied.path, b, [(plain.path, 1.0)], quant="F32")
    ta, tb = _tensors(a), _tensors(b)
    assert "output.weight" in ta and ta.keys() == tb.keys()
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_a_copy_that_is_not_the_base_is_refused(tmp_path: Path, tiny_llama) -> None:
    ad = _embedding_adapter(tmp_path / "ad", tiny_llama, save=True)
    other = cvt_models.make_decoder(tmp_path / "other", seed=9)  # same shapes, other weights
    weights = dict(load_file(ad.path / "adapter_model.safetensors"))
    weights["base_model.model.model.embed_tokens.base_layer.weight"] = other.weights[
        "model.embed_tokens.weight"
    ]
    cvt_models.write_safetensors(ad.path / "adapter_model.safetensors", weights)
    want = f"adapter {ad.path} was trained for another base: its copy of model.embed_tokens.weight differs"
    for run in (
        lambda: convert_model(tiny_llama.path, tmp_path / "m.gguf", [(ad.path, 1.0)], quant="F32"),
        lambda: convert_adapter(ad.path, tiny_llama.path, tmp_path / "l.gguf"),
    ):
        with pytest.raises(ConversionError) as err:
            run()
        assert str(err.value).startswith(want) and "\n" not in str(err.value)
    assert not (tmp_path / "m.gguf").exists() and not (tmp_path / "l.gguf").exists()


def test_a_copy_of_another_shape_is_refused(tmp_path: Path, tiny_llama) -> None:
    ad = _embedding_adapter(tmp_path / "ad", tiny_llama, save=True)
    weights = dict(load_file(ad.path / "adapter_model.safetensors"))
    key = "base_model.model.lm_head.base_layer.weight"
    weights[key] = np.concatenate([weights[key], weights[key][:8]])
    cvt_models.write_safetensors(ad.path / "adapter_model.safetensors", weights)
    with pytest.raises(ConversionError, match=r"trained for another base: its copy of lm_head\.weight is \["):
        convert_model(tiny_llama.path, tmp_path / "m.gguf", [(ad.path, 1.0)], quant="F32")


def test_copies_are_compared_with_a_quantized_gguf_base(tmp_path: Path, tiny_llama) -> None:
    ad = _embedding_adapter(tmp_path / "ad", tiny_llama, save=True)
    q8 = tmp_path / "base-q8.gguf"
    convert_model(tiny_llama.path, q8, quant="Q8_0")
    out = tmp_path / "m.gguf"
    convert_model(q8, out, [(ad.path, 1.0)], quant="F16")  # quantization noise is not "another base"
    assert out.is_file()


# ---------------------------------------------------------------------------------------------- item 30


@pytest.fixture(scope="module")
def tied_pair(tmp_path_factory: pytest.TempPathFactory):
    """Two models of the same shapes, one with tied embeddings, as GGUF; an embedding LoRA exported
    over the untied one (shapes fit the tied one too, which is what llama.cpp cannot take)."""
    root = tmp_path_factory.mktemp("tied")
    untied = cvt_models.make_decoder(root / "untied", seed=3)
    tied = cvt_models.make_decoder(root / "tied", seed=3, tie=True)
    convert_model(untied.path, root / "untied.gguf", quant="F32")
    convert_model(tied.path, root / "tied.gguf", quant="F32")
    ad = cvt_models.make_adapter(root / "ad", untied, targets=["q_proj"], embedding_lora=True, std=0.1)
    convert_adapter(ad.path, untied.path, root / "embed-lora.gguf", outtype="f32")
    return root, tied, ad


def test_embedding_lora_on_tied_model_refused_at_export(tmp_path: Path, tied_pair) -> None:
    _root, tied, _ = tied_pair
    ad = cvt_models.make_adapter(tmp_path / "ad", tied, targets=["q_proj"], embedding_lora=True)
    out = tmp_path / "l.gguf"
    with pytest.raises(ConversionError) as err:
        convert_adapter(ad.path, tied.path, out)
    assert "targets embed_tokens, which is tied to the output head" in str(err.value)
    assert "merge it with `assistant convert` instead" in str(err.value) and not out.exists()


def _rank_mismatch_lora(path: Path, n_vocab: int, n_embd: int) -> None:
    """token_embd LoRA whose factors disagree on the rank: llama.cpp loads it, then asserts in decode."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", 8.0)
    w.add_tensor("token_embd.weight.lora_a", np.full((n_vocab, 4), 0.01, dtype=np.float32))
    w.add_tensor("token_embd.weight.lora_b", np.full((n_embd, 8), 0.01, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_runtime_loader_refuses_adapters_llama_cpp_would_abort_on(tmp_path: Path, tied_pair) -> None:
    """In a child process: before the fix, llama.cpp aborts it (GGML_ASSERT, exit 134)."""
    root, tied, _ = tied_pair
    n_vocab, n_embd = tied.weights["model.embed_tokens.weight"].shape
    _rank_mismatch_lora(tmp_path / "rank.gguf", n_vocab, n_embd)
    other = cvt_models.make_decoder(tmp_path / "wide", hidden=128, heads=4, kv_heads=2)
    wide = cvt_models.make_adapter(tmp_path / "wide-ad", other, targets=["q_proj"])
    convert_adapter(wide.path, other.path, tmp_path / "wide.gguf", outtype="f32")
    code = textwrap.dedent(
        f"""
        from assistant.engine.chat import ChatModel
        from assistant.message import Message
        from assistant.engine.sampling import SamplingParams
        from assistant.errors import ModelError
        cases = [({str(root / "tied.gguf")!r}, {str(root / "embed-lora.gguf")!r}),
                 ({str(root / "untied.gguf")!r}, {str(tmp_path / "rank.gguf")!r}),
                 ({str(root / "untied.gguf")!r}, {str(tmp_path / "wide.gguf")!r})]
        for model, lora in cases:
            m = ChatModel(model, n_ctx=128, n_threads=1)
            try:
                m.set_adapters([(lora, 1.0)])
                print("accepted", flush=True)
            except ModelError as exc:
                print("refused:", exc, flush=True)
            text = m.chat([Message("user", "hello")], SamplingParams(max_tokens=3, seed=1)).text()
            print("alive", m.adapters == [], flush=True)
            m.close()
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 6 and lines[1::2] == ["alive True"] * 3, proc.stdout
    assert (
        "refused: LoRA adapter embed-lora.gguf changes token_embd.weight, which is tied to the output head"
        in lines[0]
    )
    assert "refused: LoRA adapter rank.gguf does not fit untied.gguf: token_embd.weight is" in lines[2]
    assert (
        "refused: LoRA adapter wide.gguf does not fit untied.gguf: blk.0.attn_q.weight is [64, 64]"
        in lines[4]
    )


def test_runtime_loader_still_applies_a_fitting_adapter(tied_pair) -> None:
    from assistant.engine.lora import check_adapter_fits
    from assistant.models.gguf_info import read_gguf_info

    root, _, _ = tied_pair
    lora = read_gguf_info(root / "embed-lora.gguf")
    check_adapter_fits(lora, read_gguf_info(root / "untied.gguf"))  # fits: no exception
    with pytest.raises(ModelError, match="tied to the output head"):
        check_adapter_fits(lora, read_gguf_info(root / "tied.gguf"))


# ---------------------------------------------------------------------------------------------- also


def test_requantizing_a_quantized_gguf_warns(
    tmp_path: Path, tiny_llama, caplog: pytest.LogCaptureFixture
) -> None:
    q8 = tmp_path / "base-q8.gguf"
    f16 = tmp_path / "base-f16.gguf"
    convert_model(tiny_llama.path, q8, quant="Q8_0")
    convert_model(tiny_llama.path, f16, quant="F16")
    caplog.set_level(logging.WARNING, logger="convert.api")
    convert_model(f16, tmp_path / "from-f16.gguf", quant="Q4_0")
    convert_model(q8, tmp_path / "to-f32.gguf", quant="F32")
    assert not [r for r in caplog.records if "quantizes it a second time" in r.getMessage()]
    convert_model(q8, tmp_path / "q4.gguf", quant="Q4_0")
    msgs = [r.getMessage() for r in caplog.records if "quantizes it a second time" in r.getMessage()]
    assert msgs == [
        "base-q8.gguf is already quantized (Q8_0): converting it to Q4_0 quantizes it a second time and loses "
        "quality; start from its F16/F32 GGUF or the Hugging Face model if you have one"
    ]


def test_verify_a_convert_output_against_its_embedded_provenance(
    tmp_path: Path, tiny_llama, tiny_adapter, cli
) -> None:
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_llama.path, base)
    out = tmp_path / "m.gguf"
    convert_model(base, out, [(tiny_adapter.path, 1.0)], quant="Q8_0")
    r = cli("verify", str(out), assistant=True)
    assert r.returncode == 0, r.stderr
    assert "against its embedded provenance (no lock file" in r.stdout
    assert "skipped output: no lock file m.gguf.lock.json" in r.stdout
    assert (
        "ok      type: Q8_0" in r.stdout and "ok      base:" in r.stdout and "ok      adapter[1]:" in r.stdout
    )
    assert "all checks passed (1 could not be made here)" in r.stdout
    report = json.loads(cli("verify", str(out), "--json", assistant=True).stdout)
    assert report["lock"] is None and report["against"] == "embedded provenance" and report["ok"]
    # an input changed since: named, exit 2
    cfg = base / "config.json"
    cfg.write_text(cfg.read_text() + " ")
    r = cli("verify", str(out), assistant=True)
    assert r.returncode == 2 and "DIFFERS base:" in r.stdout and "config.json" in r.stdout
    assert r.stderr.startswith("Error: ") and "does not match its embedded provenance" in r.stderr
    # inputs gone: skipped, not failed
    shutil.rmtree(base)
    r = cli("verify", str(out), assistant=True)
    assert r.returncode == 0 and "skipped base:" in r.stdout


def test_verify_without_lock_or_provenance(tmp_path: Path, cli) -> None:
    plain = tmp_path / "plain.gguf"
    plain.write_bytes(b"GGUF")
    r = cli("verify", str(plain), assistant=True)
    assert r.returncode == 2 and "plain.gguf.lock.json: no such lock file, and" in r.stderr
    assert "has no embedded provenance" in r.stderr
