"""Fine-tuning a tiny generated model with llama.cpp's optimizer: loss, frozen tensors, the adapter, the recipe."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.finetune import logits

from assistant.finetune import train
from assistant.finetune.adapter import read_f32

ALL_TENSORS = [
    "token_embd.weight",
    "output.weight",
    "output_norm.weight",
    *(f"blk.{i}.{n}.weight" for i in range(2) for n in ("attn_norm", "ffn_norm", *train.ATTN, *train.FFN)),
]


@dataclass
class Trained:
    summary: dict[str, Any]
    out: Path
    work: Path
    tuned: Path
    home: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_hf: Path, doc: Path) -> Trained:
    """Three epochs of the last layer at lr 1e-3, adapter at full rank (64: the widest the tiny matrices allow)."""
    tmp = tmp_path_factory.mktemp("ft-run")
    out = tmp / "tuned"
    settings = train.Settings(train="last:1", epochs=3, lr=1e-3, rank=64, quant="F32", patience=0)
    summary = train.run(
        tiny_hf, tiny_hf, [doc], out, settings, cache_dir=tmp / "home" / "finetune", threads=1
    )
    return Trained(
        summary,
        out,
        Path(summary["paths"]["working_copy"]),
        Path(summary["paths"]["checkpoint"]),
        tmp / "home",
    )


def test_loss_goes_down(trained: Trained) -> None:
    s = trained.summary
    assert s["epochs_done"] == 3 and len(s["train_losses"]) == 3 and len(s["val_losses"]) == 4
    assert s["train_loss_last"] < s["train_loss_first"] - 0.5, s["train_losses"]
    assert s["val_loss_last"] < s["val_loss_first"] - 0.5, s["val_losses"]
    assert s["train_windows"] >= 10 and s["val_windows"] >= 1
    assert s["train_tokens"] == 3 * s["train_windows"] * 256
    assert s["train_tokens_per_s"] > 0 and s["seconds"] > 0
    for key in ("adapter_config", "adapter_model", "gguf_lora", "recipe", "checkpoint", "record"):
        assert Path(s["paths"][key]).is_file(), key
    ck = Path(s["paths"]["checkpoint"])  # the last epoch's weights, the earlier ones removed
    assert ck.name == f"model-{s['steps']}.gguf" and list(ck.parent.glob("model-*.gguf")) == [ck]
    record = json.loads((trained.out / "training.json").read_text())
    assert record["data"][0]["sha256"] and record["settings"]["lr"] == 1e-3 and record["versions"]["gguf"]


def test_frozen_tensors_are_bit_identical(trained: Trained) -> None:
    """--train last:1 trains the 7 matrices of block 1; everything else (block 0, norms, embeddings, head) is untouched."""
    before, after = read_f32(trained.work, ALL_TENSORS), read_f32(trained.tuned, ALL_TENSORS)
    trainable = {f"blk.1.{n}.weight" for n in (*train.ATTN, *train.FFN)}
    for name in ALL_TENSORS:
        same = np.array_equal(before[name].view(np.uint32), after[name].view(np.uint32))
        assert same == (name not in trainable), name
    assert trained.summary["trained_tensors"] == 7


def test_full_rank_adapter_merged_by_convert_reproduces_the_fine_tune(
    trained: Trained, tmp_path: Path
) -> None:
    """The PEFT adapter at full rank, merged into the base by our convert, gives the fine-tuned model's logits.

    Tolerance: 1e-5 of the logits' range (F32 SVD reconstruction and the merge's own rounding); the
    change itself moves the logits by far more (checked), so this cannot pass by accident."""
    from convert.api import convert_model

    a = trained.summary["adapter"]
    assert a["rank"] == 64 and a["share_kept"] == pytest.approx(1.0, abs=1e-9)
    assert a["kld"]["mean_kld"] < 1e-6 and a["kld"]["top1"] == 1.0 and a["kld"]["scored_tokens"] >= 32
    assert a["share_by_rank"]["1"] < a["share_by_rank"]["8"] < a["share_by_rank"]["64"] == pytest.approx(1.0)
    merged = tmp_path / "merged.gguf"
    convert_model(trained.work, merged, adapters=[(str(trained.out), 1.0)], quant="F32")
    ids = list(range(3, 120))
    ref, got, base = logits(trained.tuned, ids), logits(merged, ids), logits(trained.work, ids)
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() < 1e-5 * scale
    assert np.abs(base - ref).max() > 100 * np.abs(got - ref).max()  # the fine-tune did change the logits
    lora = logits(
        trained.work, ids, lora=Path(trained.summary["paths"]["gguf_lora"])
    )  # the GGUF LoRA at run time
    assert np.abs(lora - ref).max() < 1e-5 * scale


def test_low_rank_keeps_less_of_the_change(trained: Trained, tmp_path: Path) -> None:
    from assistant.finetune.adapter import extract_lora

    names = [f"blk.1.{n}.weight" for n in (*train.ATTN, *train.FFN)]
    ex = extract_lora(trained.work, trained.tuned, names, tmp_path / "r2", rank=2, base_name="tiny")
    assert 0 < ex.share_kept < 0.9 and ex.share_kept == pytest.approx(ex.share_by_rank[2])
    cfg = json.loads((tmp_path / "r2" / "adapter_config.json").read_text())
    assert cfg["r"] == 2 and cfg["lora_alpha"] == 2 and cfg["rank_pattern"] == {}
    assert set(cfg["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }


def test_recipe_rebuilds_base_plus_adapter(trained: Trained, run_cli: Any) -> None:
    """`assistant build` on the written recipe merges base + adapter: the fine-tune's logits again."""
    recipe = trained.out / "tuned.toml"
    r = run_cli("build", str(recipe), "--json", home=trained.home, timeout=300)
    assert r.returncode == 0, r.stderr
    built = Path(json.loads(r.stdout.strip().splitlines()[-1])["output"])
    ids = list(range(3, 60))
    ref, got = logits(trained.tuned, ids), logits(built, ids)
    assert np.abs(got - ref).max() < 1e-5 * np.abs(ref).max()
    # the lock carries the adapter's training record: what the update cost and how it was made
    lock = json.loads(Path(f"{built}.lock.json").read_text())
    record = json.loads((trained.out / "training.json").read_text())
    (adapter,) = lock["inputs"]["adapters"]
    assert (
        adapter["training"]["settings"] == record["settings"]
        and adapter["training"]["settings"]["lr"] == 1e-3
    )
    assert adapter["training"]["seconds"] == record["seconds"] > 0
    assert adapter["training"]["data"][0]["sha256"] == record["data"][0]["sha256"]
    assert (
        adapter["training"]["train_losses"] == trained.summary["train_losses"]
        and "paths" not in adapter["training"]
    )


def test_train_selection() -> None:
    assert train.parse_train("last:2", 30) == (list(range(28, 30)), ("attn", "ffn"))
    assert train.parse_train("3-5,attn", 30) == ([3, 4, 5], ("attn",))
    assert train.parse_train("attn,ffn", 4) == ([0, 1, 2, 3], ("attn", "ffn"))
    names = [f"blk.{i}.{n}.weight" for i in range(2) for n in ("attn_norm", *train.ATTN, *train.FFN)]
    assert train.trainable([*names, "token_embd.weight", "output.weight"], "last:1,ffn", 2) == [
        "blk.1.ffn_gate.weight",
        "blk.1.ffn_up.weight",
        "blk.1.ffn_down.weight",
    ]
    for bad, msg in (
        ("last:0", "expected 1 to 2"),
        ("last:3", "expected 1 to 2"),
        ("1-4", "within 0-1"),
        ("mlp", "expected last:N"),
    ):
        with pytest.raises(train.UsageError, match=msg):
            train.parse_train(bad, 2)


def test_lr_schedule_warms_up_then_decays() -> None:
    s = train.Settings(lr=1e-3, warmup=0.1, lr_min=0.1)
    lrs = [train.lr_at(i, 100, s) for i in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a <= b for a, b in itertools.pairwise(lrs[:10]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)


def test_early_stopping() -> None:
    assert train._no_better([5.0, 4.0, 4.5], patience=1)
    assert not train._no_better([5.0, 4.0, 3.9], patience=1)
    assert not train._no_better([5.0, 4.0, 4.5], patience=2)
    assert not train._no_better([5.0, 4.0, 4.5], patience=0)


def test_documents_go_through_the_knowledge_base_extractors(tmp_path: Path) -> None:
    from assistant.finetune.data import read_document

    page = tmp_path / "page.html"
    page.write_text("<html><head><style>p{}</style><title>T</title></head><body><h1>Pumps</h1>"
                    "<p>Prime the pump <b>before</b> use.</p><script>x()</script></body></html>")  # fmt: skip
    text = read_document(page)
    assert "Prime the pump before use." in text and "Pumps" in text
    assert "<p>" not in text and "x()" not in text and "p{}" not in text


def test_chat_examples_are_packed_whole_into_windows() -> None:
    from assistant.finetune.data import Example, pack_examples

    # example i is [100*i, 100*i + 1, ...]: each token says which example it belongs to and where;
    # its odd tokens are the targets (the mask travels with the tokens)
    sizes = [5, 9, 3, 7, 4, 12]
    examples = [[100 * i + j for j in range(n)] for i, n in enumerate(sizes)]
    rows, masks = pack_examples([Example(e, [t % 2 == 1 for t in e]) for e in examples], window=9)
    assert rows.shape[1] == 10 and rows.dtype == np.int32 and masks.shape == rows.shape
    assert (masks == (rows % 2 == 1)).all()
    starts = {100 * i for i in range(len(sizes))}
    whole = []
    for row in rows.tolist():
        assert row[0] in starts  # every window starts at an example's first token
        pos = 0
        while pos < 10:  # whole examples, then at most the head of one more
            i, n = row[pos] // 100, sizes[row[pos] // 100]
            piece = row[pos : pos + n]
            assert piece == examples[i][: len(piece)]
            if len(piece) == n:
                whole.append(i)
            pos += n
    # every example that fits a window is in some window whole; the 12-token one is cut into its own windows
    assert sorted(set(whole)) == [0, 1, 2, 3, 4]
    assert [r[:10] for r in rows.tolist() if r[0] == 500] == [examples[5][:10]]
    assert len(rows) == 4  # 9+... first-fit decreasing: [9], [7+3], [5+4], and the long one's window


def test_answers_are_the_only_targets_of_a_chat() -> None:
    """loss="answers": the assistant turns (text and end of turn) are targets; system, sources,
    question and the template's markup are context. Checked on the real ChatML template."""
    from assistant.engine.template import ChatTemplate
    from assistant.finetune.data import chat_example

    src = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    template = ChatTemplate(src, "gguf", "", "", "t")
    render = lambda msgs, gen: template.render(msgs, add_generation_prompt=gen)  # noqa: E731
    tokenize = lambda text: list(text.encode())  # one token a byte: spans are easy to read  # noqa: E731
    msgs = [
        {"role": "system", "content": "Cite."},
        {"role": "user", "content": "Q1?"},
        {"role": "assistant", "content": "A1 [1]"},
        {"role": "user", "content": "Q2?"},
        {"role": "assistant", "content": "A2"},
    ]
    ex = chat_example(msgs, render, tokenize, "answers")
    text = bytes(ex.tokens).decode()
    learned = "".join(ch for ch, t in zip(text, ex.targets, strict=True) if t)
    assert learned == "A1 [1]<|im_end|>\nA2<|im_end|>\n"
    assert all(chat_example(msgs, render, tokenize, "all").targets)


def test_a_draw_follows_the_distribution_of_its_row() -> None:
    from assistant.finetune.llama_opt import sample_rows

    rng = np.random.default_rng(0)
    logits = np.full((4000, 5), -30.0, dtype=np.float32)
    logits[:2000, 3] = 10.0  # rows 0..1999: token 3 is certain
    logits[2000:, 1] = logits[2000:, 4] = 2.0  # rows 2000..: tokens 1 and 4 alike
    drawn = sample_rows(logits, rng)
    assert (drawn[:2000] == 3).all()
    assert set(drawn[2000:].tolist()) == {1, 4} and 0.45 < (drawn[2000:] == 1).mean() < 0.55


def test_context_positions_are_labelled_with_draws_from_the_base_model(
    tmp_path: Path, default_model_path: Path
) -> None:
    """base_labels draws from what llama.cpp predicts after each token (same seed, same draws);
    _labels keeps targets as they are and caches the labels for a resume."""
    from support.gguf_factory import write_tiny_llama

    from assistant.engine.backend import ContextConfig, LlamaContext, LlamaModel
    from assistant.finetune import train
    from assistant.finetune.data import Dataset
    from assistant.finetune.llama_opt import base_labels, sample_rows

    model = write_tiny_llama(tmp_path / "tiny.gguf", default_model_path)
    rng = np.random.default_rng(1)
    windows = rng.integers(0, 300, size=(3, 257), dtype=np.int32)
    drawn = base_labels(model, windows, threads=1, seed=5)
    assert (base_labels(model, windows, threads=1, seed=5) == drawn).all()
    m = LlamaModel(model)
    ctx = LlamaContext(m, ContextConfig(n_ctx=256, n_threads=1, n_batch=256))
    try:
        by_hand = np.random.default_rng(5)
        expect = [sample_rows(ctx.eval_logits(w[:-1].tolist()), by_hand) for w in windows]
    finally:
        ctx.close()
        m.close()
    assert (np.stack(expect) == drawn).all()
    mask = rng.random(windows.shape) < 0.2
    ds = Dataset(windows[:2], windows[2:], 771, 3, [], mask[:2], mask[2:], int(mask.sum()))
    train_labels, val_labels = train._labels(model, ds, tmp_path / "ck", "k" * 64, 1, 5)
    both, whole_mask = np.concatenate([train_labels, val_labels]), mask[:, 1:]
    assert (both[whole_mask] == windows[:, 1:][whole_mask]).all()
    assert (both[~whole_mask] == drawn[~whole_mask]).all()
    assert len(list((tmp_path / "ck").glob("labels-*.npz"))) == 1
    again = train._labels(tmp_path / "no-such-model.gguf", ds, tmp_path / "ck", "k" * 64, 1, 5)  # the cache
    assert (again[0] == train_labels).all() and (again[1] == val_labels).all()


def test_the_adapter_comes_from_the_epoch_that_validated_best(tmp_path: Path) -> None:
    """best_epoch reads the validation losses (index 0 is before training); _save keeps that epoch's
    weights beside the latest until a better epoch replaces them."""
    from assistant.finetune import train

    assert train.best_epoch([3.0, 2.0, 2.5, 2.6]) == 1
    assert train.best_epoch([3.0, 2.9, 2.5]) == 2
    assert train.best_epoch([2.0, 2.5]) == 1  # worse than before training, still the only epoch
    assert train.best_epoch([float("nan"), float("nan")]) == 0  # no validation split: none
    # --max-forgetting: epoch 2 validates best but its reference perplexity grew 22% (> 10%): epoch 1
    ref = [3.0, 3.05, 3.2, 3.4]
    assert train.best_epoch([3.0, 2.5, 2.0, 1.9], ref, 0.10) == 1
    assert train.best_epoch([3.0, 2.5, 2.0, 1.9], ref, 0.50) == 3  # all within: validation decides
    assert train.best_epoch([3.0, 2.5, 2.0], [3.0, 3.3, 3.2], 0.10) == 2  # none within: the least forgetting

    class Saver:
        def save(self, path: Path) -> None:
            path.write_bytes(b"weights")

    state = train.State("key")
    files = lambda: sorted(p.name for p in (tmp_path / "checkpoint").glob("model-*.gguf"))  # noqa: E731
    for epoch, val in enumerate([3.0, 2.0, 2.5, 2.6], start=0):
        if epoch == 0:
            continue
        state.val_losses.append(val)
        state.step, state.epoch, state.best_epoch = (
            10 * epoch,
            epoch,
            train.best_epoch([3.0, *state.val_losses]),
        )
        train._save(Saver(), tmp_path, state)
    assert state.best_epoch == 1 and state.best_model == "model-10.gguf"
    assert files() == ["model-10.gguf", "model-30.gguf"]  # the best and the latest, nothing between
    state.step, state.next_window = 33, 3  # Ctrl+C mid-epoch: the best stays
    train._save(Saver(), tmp_path, state)
    assert files() == ["model-10.gguf", "model-33.gguf"] and state.best_model == "model-10.gguf"
