"""The output types `convert` and build recipes accept, as data (no numpy: the CLI imports this at start-up)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuantType:
    name: str
    ftype: int  # llama_ftype
    is_float: bool


# llama_ftype values (llama.h)
QUANT_TYPES: dict[str, QuantType] = {
    q.name: q
    for q in (
        QuantType("F32", 0, True),
        QuantType("F16", 1, True),
        QuantType("BF16", 32, True),
        QuantType("Q8_0", 7, False),
        QuantType("Q6_K", 18, False),
        QuantType("Q5_K_M", 17, False),
        QuantType("Q5_K_S", 16, False),
        QuantType("Q4_K_M", 15, False),
        QuantType("Q4_K_S", 14, False),
        QuantType("Q4_0", 2, False),
    )
}
DEFAULT_QUANT = "Q4_K_M"
NEEDS_IMATRIX = {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K_S"}
