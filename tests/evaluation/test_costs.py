"""Cost to update: a built model's build time (its lock) plus the training time of the adapters it
merged (`assistant finetune`'s training.json); a runtime adapter's own training time; '-' otherwise."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.evaluation.runner import make_variants
from assistant.home import Home

LOCK = {"lock_version": 1, "recipe": {}, "output": {"sha256": "0" * 64}, "provenance": {}, "versions": {},
        "quality": {}}  # fmt: skip


def test_costs_from_locks_and_training_records(tiny_home: Path, tmp_path: Path):
    home = Home.resolve(str(tiny_home))
    tuned = tmp_path / "tuned"  # an `assistant finetune` folder: the PEFT adapter, its GGUF, its record
    tuned.mkdir()
    (tuned / "training.json").write_text(json.dumps({"seconds": 600.0, "steps": 10}))
    (tuned / "adapter.gguf").write_bytes(b"GGUF")  # only its folder is read here
    merged = tiny_home / "tiny-chat.gguf.lock.json"
    merged.write_text(
        json.dumps({**LOCK, "seconds": 30.5, "inputs": {"base": {}, "adapters": [{"path": str(tuned)}]}})
    )
    plain, adapted = make_variants(home, [], [f"{tuned / 'adapter.gguf'}@0.5"])
    assert (plain.name, plain.cost_s) == ("tiny-chat", 630.5)  # rebuild + retrain
    assert (adapted.name, adapted.cost_s) == ("tiny-chat+adapter@0.5", 600.0)  # retrain only
    merged.write_text(json.dumps({**LOCK, "seconds": 30.5, "inputs": {"base": {}, "adapters": []}}))
    assert make_variants(home, [], [])[0].cost_s == 30.5
    merged.write_text("{broken")  # a lock that cannot be read is no figure, not an error
    assert make_variants(home, [], [])[0].cost_s is None
    merged.unlink()
    (tuned / "training.json").unlink()
    assert [v.cost_s for v in make_variants(home, [], [str(tuned / "adapter.gguf")])] == [None, None]
