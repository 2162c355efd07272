"""Every bad input: one clear line naming the file or value, exit status 2, nothing at OUT."""

from __future__ import annotations

import errno
import json
import shutil
import struct
from pathlib import Path

import cvt_models
import numpy as np
import pytest

from assistant.errors import ConversionError


@pytest.fixture
def model(tmp_path: Path) -> cvt_models.TinyModel:
    return cvt_models.make_decoder(tmp_path / "model", layers=2, hidden=32, heads=2, kv_heads=1, ffn=64)


def assert_refused(res, out: Path, *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*")), "a temporary file was left behind"


def test_missing_config(tmp_path: Path, model, cli) -> None:
    (model.path / "config.json").unlink()
    out = tmp_path / "o.gguf"
    assert_refused(cli("convert", str(model.path), "-o", str(out)), out, "config.json", str(model.path))


def test_unknown_architecture_before_any_output(tmp_path: Path, model, cli) -> None:
    cfg = json.loads((model.path / "config.json").read_text())
    cfg["architectures"] = ["GPTNeoXForCausalLM"]
    (model.path / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "o.gguf"
    res = cli("convert", str(model.path), "-o", str(out))
    assert_refused(res, out, "unsupported architecture GPTNeoXForCausalLM", "supported: ", "LlamaForCausalLM")


def test_corrupt_safetensors(tmp_path: Path, model, cli) -> None:
    (model.path / "model.safetensors").write_bytes(
        b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"\0" * 64
    )
    out = tmp_path / "o.gguf"
    assert_refused(
        cli("convert", str(model.path), "-o", str(out)), out, "model.safetensors", "not a valid safetensors"
    )


def test_truncated_safetensors(tmp_path: Path, model, cli) -> None:
    p = model.path / "model.safetensors"
    p.write_bytes(p.read_bytes()[:-1000])
    out = tmp_path / "o.gguf"
    assert_refused(cli("convert", str(model.path), "-o", str(out)), out, "model.safetensors", "truncated")


@pytest.mark.parametrize("lie", ["overlap", "size"])
def test_header_lies_about_offsets(tmp_path: Path, model, cli, lie: str) -> None:
    p = model.path / "model.safetensors"
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    names = [k for k in header if k != "__metadata__"]
    if lie == "overlap":
        b0, _e0 = header[names[0]]["data_offsets"]
        b1, e1 = header[names[1]]["data_offsets"]
        header[names[1]]["data_offsets"] = [b0, b0 + (e1 - b1)]
    else:
        b, e = header[names[2]]["data_offsets"]
        header[names[2]]["data_offsets"] = [b, e + 4]
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    p.write_bytes(struct.pack("<Q", len(head)) + head + raw[8 + n :])
    out = tmp_path / "o.gguf"
    assert_refused(cli("convert", str(model.path), "-o", str(out)), out, "model.safetensors")


def test_adapter_for_another_model(tmp_path: Path, model, cli) -> None:
    other = cvt_models.make_decoder(tmp_path / "other", layers=2, hidden=64, heads=4, kv_heads=2, ffn=128)
    ad = cvt_models.make_adapter(tmp_path / "ad", other, targets=["q_proj"])
    out = tmp_path / "o.gguf"
    res = cli("convert", str(model.path), "-o", str(out), "--adapter", str(ad.path))
    assert_refused(res, out, "does not fit", "q_proj", "another model")


def test_adapter_targets_missing_module(tmp_path: Path, model, cli) -> None:
    deep = cvt_models.make_decoder(tmp_path / "deep", layers=4, hidden=32, heads=2, kv_heads=1, ffn=64)
    ad = cvt_models.make_adapter(tmp_path / "ad", deep, targets=["q_proj"], layers=[3])
    out = tmp_path / "o.gguf"
    res = cli("convert", str(model.path), "-o", str(out), "--adapter", str(ad.path))
    assert_refused(res, out, "model.layers.3.self_attn.q_proj", "does not have")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_in_weights(tmp_path: Path, model, cli, bad: float) -> None:
    w = dict(model.weights)
    w["model.layers.1.self_attn.v_proj.weight"] = w["model.layers.1.self_attn.v_proj.weight"].copy()
    w["model.layers.1.self_attn.v_proj.weight"][3, 4] = bad
    cvt_models.write_safetensors(model.path / "model.safetensors", w)
    out = tmp_path / "o.gguf"
    assert_refused(
        cli("convert", str(model.path), "-o", str(out), "--quant", "F16"),
        out,
        "blk.1.attn_v.weight",
        "NaN/Inf",
    )


def test_nan_in_adapter(tmp_path: Path, model, cli) -> None:
    ad = cvt_models.make_adapter(tmp_path / "ad", model, targets=["up_proj"])
    st = ad.path / "adapter_model.safetensors"
    from safetensors.numpy import load_file

    t = load_file(st)
    k = next(k for k in t if k.endswith("lora_B.weight"))
    t[k][0, 0] = np.nan
    cvt_models.write_safetensors(st, t)
    out = tmp_path / "o.gguf"
    res = cli("convert", str(model.path), "-o", str(out), "--adapter", str(ad.path), "--quant", "Q8_0")
    assert_refused(res, out, "up_proj.lora_B.weight", "NaN/Inf", f"adapter {st}")  # the adapter, not the base


def test_out_not_writable(tmp_path: Path, model, cli) -> None:
    out = Path("/proc/self/o.gguf")
    res = cli("convert", str(model.path), "-o", str(out))
    assert res.returncode == 2 and "Error: " in res.stderr and "/proc/self" in res.stderr
    missing = tmp_path / "no-such-dir" / "o.gguf"
    assert_refused(cli("convert", str(model.path), "-o", str(missing)), missing, "does not exist")


def _limit_file_size() -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then write() fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))


@pytest.mark.parametrize("quant", ["F32", "Q8_0"])
def test_disk_full_subprocess(tmp_path: Path, model, cli, quant: str) -> None:
    out = tmp_path / "o.gguf"
    out.write_bytes(b"previous good file")
    res = cli("convert", str(model.path), "-o", str(out), "--quant", quant, preexec=_limit_file_size)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("Error: ") and str(out) in res.stderr
    assert out.read_bytes() == b"previous good file"  # the old OUT is untouched
    assert not list(tmp_path.glob(".o.gguf*"))


def test_disk_full_enospc_in_process(tmp_path: Path, model, monkeypatch) -> None:
    from gguf import GGUFWriter

    from convert.api import convert_model

    real = GGUFWriter.write_tensor_data
    calls = {"n": 0}

    def failing(self, tensor, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, tensor, *a, **kw)

    monkeypatch.setattr(GGUFWriter, "write_tensor_data", failing)
    out = tmp_path / "o.gguf"
    with pytest.raises(ConversionError, match=r"cannot write .*o\.gguf: disk full"):
        convert_model(model.path, out, quant="F16")
    assert not out.exists() and not list(tmp_path.glob(".o.gguf*"))


def test_out_equal_to_an_input(tmp_path: Path, model, cli) -> None:
    target = model.path / "model.safetensors"
    before = target.read_bytes()
    res = cli("convert", str(model.path), "-o", str(target))
    assert res.returncode == 2 and "one of the input files" in res.stderr
    assert target.read_bytes() == before


def test_repo_id_offline_not_cached(tmp_path: Path, cli) -> None:
    out = tmp_path / "o.gguf"
    res = cli("convert", "some-owner/some-model", "-o", str(out), env={"HF_HOME": str(tmp_path / "hf")})
    assert_refused(res, out, "some-owner/some-model", "HF_HUB_OFFLINE", "local Hugging Face cache")


def test_pickled_weights_refused(tmp_path: Path, model, cli) -> None:
    (model.path / "model.safetensors").rename(model.path / "pytorch_model.bin")
    out = tmp_path / "o.gguf"
    assert_refused(
        cli("convert", str(model.path), "-o", str(out)), out, "pytorch_model.bin", "safe_serialization"
    )


def test_adapter_missing_and_not_lora(tmp_path: Path, model, cli) -> None:
    out = tmp_path / "o.gguf"
    assert_refused(
        cli("convert", str(model.path), "-o", str(out), "--adapter", str(tmp_path / "nope")), out, "nope"
    )
    ad = cvt_models.make_adapter(tmp_path / "ia3", model, targets=["q_proj"])
    cfg = json.loads((ad.path / "adapter_config.json").read_text())
    cfg["peft_type"] = "IA3"
    (ad.path / "adapter_config.json").write_text(json.dumps(cfg))
    assert_refused(
        cli("convert", str(model.path), "-o", str(out), "--adapter", str(ad.path)),
        out,
        "IA3",
        "adapter_config.json",
    )


def test_tokenizer_for_another_model(tmp_path: Path, model, cli) -> None:
    big = cvt_models.tokenizer_json("bytelevel-llama3", vocab_size=600)
    (model.path / "tokenizer.json").write_text(big)
    out = tmp_path / "o.gguf"
    assert_refused(cli("convert", str(model.path), "-o", str(out)), out, "tokenizer.json", "embedding has")


def test_gguf_adapter_is_not_a_base(tmp_path: Path, model, cli) -> None:
    from convert.api import convert_adapter

    ad = cvt_models.make_adapter(tmp_path / "ad", model, targets=["q_proj"])
    lora = tmp_path / "lora.gguf"
    convert_adapter(ad.path, model.path, lora)
    out = tmp_path / "o.gguf"
    assert_refused(cli("convert", str(lora), "-o", str(out)), out, "LoRA adapter, not a base model")
    shutil.rmtree(ad.path)


@pytest.mark.parametrize("quant", ["F16", "Q8_0"])
def test_a_really_full_disk(tmp_path: Path, model, cli, quant: str) -> None:
    """#12 item 11: a tmpfs too small for the output (ENOSPC, not a size limit): one line, nothing left."""
    from support.mounts import tmpfs

    with tmpfs(tmp_path / "small", "16k") as small:
        out = small / "o.gguf"
        res = cli("convert", str(model.path), "-o", str(out), "--quant", quant)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and str(out) in lines[0], res.stderr
        assert "disk full" in lines[0] or "wrote nothing" in lines[0], res.stderr
        assert list(small.iterdir()) == []


@pytest.mark.parametrize("threads", ["0", "lots"])
def test_bad_thread_count(tmp_path: Path, model, cli, threads) -> None:
    """#17: --threads auto|N, as in the assistant's commands."""
    out = tmp_path / "o.gguf"
    res = cli("convert", str(model.path), "-o", str(out), "--threads", threads)
    assert_refused(res, out, "--threads expects 'auto' or a whole number >= 1")
