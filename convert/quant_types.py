"""The output types `convert` and build recipes accept, as data (no numpy: the CLI imports this at start-up)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuantType:
    name: str
    ftype: int  # llama_ftype
    is_float: bool
    bits: int  # bits per weight of its main type (the scales not counted)


# llama_ftype values (llama.h)
QUANT_TYPES: dict[str, QuantType] = {
    q.name: q
    for q in (
        QuantType("F32", 0, True, 32),
        QuantType("F16", 1, True, 16),
        QuantType("BF16", 32, True, 16),
        QuantType("Q8_0", 7, False, 8),
        QuantType("Q6_K", 18, False, 6),
        QuantType("Q5_K_M", 17, False, 5),
        QuantType("Q5_K_S", 16, False, 5),
        QuantType("Q4_K_M", 15, False, 4),
        QuantType("Q4_K_S", 14, False, 4),
        QuantType("Q4_0", 2, False, 4),
    )
}
DEFAULT_QUANT = "Q4_K_M"
# bits per weight of GGUF tensor types a quantized base may hold (ggml type names)
GGML_TYPE_BITS = {"Q2_K": 2, "Q3_K": 3, "Q4_0": 4, "Q4_1": 4, "Q4_K": 4, "Q5_0": 5, "Q5_1": 5, "Q5_K": 5,
                  "Q6_K": 6, "Q8_0": 8, "Q8_1": 8, "Q8_K": 8}  # fmt: skip
NEEDS_IMATRIX = {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K_S"}
