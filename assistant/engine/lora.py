"""GGUF LoRA adapters checked against the model's tensor shapes before llama.cpp sees them.

llama.cpp checks most LoRA shapes itself and fails cleanly, but not all: an embedding LoRA
whose factors disagree on the rank, or a LoRA on ``token_embd`` of a model whose output head is
tied to it (llama.cpp applies it to the head as a matrix product too), ends in GGML_ASSERT
and kills the process. Shapes are in GGUF order (ne0 = row length).
"""

from __future__ import annotations

from ..errors import ModelError
from ..models.gguf_info import GGUFInfo, TensorInfo

EMBED = "token_embd.weight"
OUTPUT = "output.weight"


def check_adapter_fits(adapter: GGUFInfo, model: GGUFInfo) -> None:
    """Refuse, in one line, a GGUF LoRA whose tensors llama.cpp would reject or assert on."""
    name = adapter.path.name
    base = {t.name: t for t in model.tensors}
    pairs: dict[str, dict[str, TensorInfo]] = {}
    for t in adapter.tensors:
        stem, _, part = t.name.rpartition(".")
        if part in ("lora_a", "lora_b"):
            pairs.setdefault(stem, {})[part] = t
    for target, ab in sorted(pairs.items()):
        if len(ab) != 2:
            have = next(iter(ab))
            raise ModelError(f"LoRA adapter {name} has {target}.{have} without its pair; re-export it")
        w = base.get(target)
        if w is None:
            raise ModelError(
                f"LoRA adapter {name} changes {target}, which {model.path.name} does not have; "
                "was it exported for another model?"
            )
        a, b = ab["lora_a"].shape, ab["lora_b"].shape
        if target == EMBED and OUTPUT not in base:
            raise ModelError(
                f"LoRA adapter {name} changes {target}, which is tied to the output head in {model.path.name}; "
                "llama.cpp cannot apply it at run time: merge the adapter with `assistant convert` instead"
            )
        if len(a) != 2 or len(b) != 2 or len(w.shape) < 2:
            fits = False
        elif target == EMBED:  # lora_a is looked up by token, then multiplied by lora_b
            fits = w.shape[0] == b[1] and w.shape[1] == a[1] and a[0] == b[0]
        else:
            fits = w.shape[0] == a[0] and w.shape[1] == b[1] and a[1] == b[0]
        if not fits:
            raise ModelError(
                f"LoRA adapter {name} does not fit {model.path.name}: {target} is {list(w.shape)} but its "
                f"lora_a is {list(a)} and lora_b {list(b)}; was it exported for another model?"
            )
