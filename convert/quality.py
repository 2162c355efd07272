"""What quantization cost: the quantized model against the unquantized merge, run by llama.cpp.

Chat models (next-token prediction): the same protocol as ``llama-perplexity
--kl-divergence``: the eval text is cut into non-overlapping windows (512 tokens, or the
model's context if shorter, BOS first when the model wants one) and the second half of
every window is scored. Per scored position: KL(P_ref || P_quant) of the next-token
distributions, whether both put the same token first, and the log-probability of the
actual next token; the report gives the mean and 99th percentile KLD, the top-1 agreement
and the perplexity of both models. The reference log-probabilities are kept in a float32
file in the build's scratch directory, so one reference serves many candidates.

Embedding models (BERT...): next-token KLD does not apply. Each paragraph of the eval text
is embedded by both models (pooled as the model says, L2-normalised); the report gives the
mean and minimum cosine to the reference, and how often each paragraph's nearest other
paragraph is the same under both (what retrieval sees).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import RecipeError

log = logging.getLogger(__name__)

DEFAULT_EVAL_TEXT = Path(__file__).resolve().parent / "data" / "eval.txt"
EVAL_CTX = 512
PASSAGE_TOKENS = 256
MIN_SCORED = 32
# Candidates of quant = "auto", smallest first (nominal bits per weight: 4.5, 4.6, 4.8, 5.5, 5.7, 6.6, 8.5, 16, 32).
AUTO_ORDER = ["Q4_0", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16", "F32"]


@dataclass
class Row:
    type: str
    size: int
    # next-token models
    mean_kld: float | None = None
    p99_kld: float | None = None
    top1: float | None = None
    ppl: float | None = None
    ref_ppl: float | None = None
    # embedding models
    mean_cosine: float | None = None
    min_cosine: float | None = None
    neighbours: float | None = None
    within_budget: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Report:
    kind: str  # "next-token" or "embedding"
    reference: str  # type of the unquantized merge, e.g. F32
    eval_text: str
    samples: int  # scored positions, or passages
    windows: int = 0
    window: int = 0
    rows: list[Row] = field(default_factory=list)
    chosen: str | None = None
    budget: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "reference": self.reference,
            "eval_text": self.eval_text,
            "rows": [r.as_dict() for r in self.rows],
            "chosen": self.chosen,
        }
        if self.kind == "next-token":
            d.update(scored_tokens=self.samples, windows=self.windows, window=self.window)
        else:
            d["passages"] = self.samples
        if self.budget:
            d["budget"] = self.budget
        return d

    def row(self, qtype: str) -> Row | None:
        return next((r for r in self.rows if r.type == qtype), None)

    def table(self) -> str:
        if self.kind == "next-token":
            head = (
                f"quality vs the unquantized merge ({self.reference}) on {self.eval_text}: "
                f"{self.samples} tokens scored in {self.windows} window(s) of {self.window}"
            )
            cols = ["type", "size", "mean KLD", "99% KLD", "top-1", "PPL", f"PPL {self.reference}"]
            lines = [
                [
                    r.type,
                    _size(r.size),
                    f"{r.mean_kld:.6f}",
                    f"{r.p99_kld:.6f}",
                    f"{100 * (r.top1 or 0):.1f}%",
                    f"{r.ppl:.3f}",
                    f"{r.ref_ppl:.3f}",
                ]
                for r in self.rows
            ]
        else:
            head = (
                f"quality vs the unquantized merge ({self.reference}) on {self.eval_text}: "
                f"embeddings of {self.samples} passages"
            )
            cols = ["type", "size", "mean cosine", "min cosine", "same nearest"]
            lines = [
                [
                    r.type,
                    _size(r.size),
                    f"{r.mean_cosine:.7f}",
                    f"{r.min_cosine:.7f}",
                    f"{100 * (r.neighbours or 0):.1f}%",
                ]
                for r in self.rows
            ]
        if self.budget:
            cols.append("")
            for r, line in zip(self.rows, lines, strict=True):
                mark = (
                    "chosen" if r.type == self.chosen else ("over budget" if r.within_budget is False else "")
                )
                line.append(mark)
        widths = [max(len(c), *(len(x[i]) for x in lines)) for i, c in enumerate(cols)]
        out = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
        out += ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in lines]
        if self.budget:
            (k, v), *_ = self.budget.items()
            out.append(f"auto: {k} = {v:g}; smallest type within budget: {self.chosen}")
        return "\n".join(out)


def _size(n: int) -> str:
    if n < 1e6:
        return f"{n / 1e3:.0f} kB"
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def log_softmax(x: Any) -> Any:
    import numpy as np

    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class NextTokenEval:
    """Reference log-probabilities once; then any number of candidates compared against them."""

    def __init__(self, text: str, text_name: str, max_tokens: int, threads: int, workdir: Path) -> None:
        self.text, self.text_name = text, text_name
        self.max_tokens, self.threads, self.workdir = max_tokens, threads, workdir
        self.windows: list[list[int]] = []
        self.first: list[int] = []
        self.ref_lp: Any = None
        self.n_vocab = 0
        self.ref_ppl = math.nan
        self.ref_type = ""

    def _open(self, path: Path) -> tuple[Any, Any]:
        from assistant.engine.backend import ContextConfig, LlamaContext, LlamaModel

        model = LlamaModel(path)
        n = max(len(w) for w in self.windows) if self.windows else EVAL_CTX
        ctx = LlamaContext(model, ContextConfig(n_ctx=max(n, 64), n_threads=self.threads, n_batch=max(n, 64)))
        return model, ctx

    def set_reference(self, path: Path, ref_type: str) -> None:
        import numpy as np

        from assistant.engine.backend import LlamaModel

        self.ref_type = ref_type
        model = LlamaModel(path)
        try:
            ids = model.tokenize(self.text, add_special=False, parse_special=False)[: self.max_tokens]
            window = min(EVAL_CTX, model.n_ctx_train or EVAL_CTX)
            bos = [model.bos] if model.add_bos and model.bos >= 0 else []
            step = window - len(bos)
            for i in range(0, len(ids), step):
                w = bos + ids[i : i + step]
                if len(w) - len(bos) < 16:
                    break
                self.windows.append(w)
                self.first.append(len(w) // 2)
            self.n_vocab = model.n_vocab
        finally:
            model.close()
        n_scored = sum(len(w) - 1 - f for w, f in zip(self.windows, self.first, strict=True))
        if n_scored < MIN_SCORED:
            raise RecipeError(
                f"eval_text {self.text_name}: only {len(ids)} tokens for this model ({n_scored} to score); "
                "give a longer text (a few hundred tokens at least)"
            )
        self.ref_lp = np.lib.format.open_memmap(
            self.workdir / "reference-logprobs.npy",
            mode="w+",
            dtype=np.float32,
            shape=(n_scored, self.n_vocab),
        )
        self.targets = np.empty(n_scored, dtype=np.int64)
        model, ctx = self._open(path)
        nll = 0.0
        try:
            row = 0
            for w, first in zip(self.windows, self.first, strict=True):
                lp = log_softmax(ctx.eval_logits(w)[first : len(w) - 1])
                tg = np.asarray(w[first + 1 :], dtype=np.int64)
                self.ref_lp[row : row + len(tg)] = lp
                self.targets[row : row + len(tg)] = tg
                nll -= float(lp[np.arange(len(tg)), tg].sum())
                row += len(tg)
        finally:
            ctx.close()
            model.close()
        self.ref_ppl = math.exp(nll / n_scored)
        self.ref_lp.flush()

    @property
    def n_scored(self) -> int:
        return 0 if self.ref_lp is None else int(self.ref_lp.shape[0])

    def compare(self, path: Path, qtype: str, size: int) -> Row:
        import numpy as np

        model, ctx = self._open(path)
        try:
            if model.n_vocab != self.n_vocab:
                raise RecipeError(
                    f"{path.name}: vocabulary of {model.n_vocab} tokens, reference has {self.n_vocab}"
                )
            klds, agree, nll = [], 0, 0.0
            row = 0
            for w, first in zip(self.windows, self.first, strict=True):
                # rounded like the stored reference, so identical logits give a KLD of exactly 0
                lq = log_softmax(ctx.eval_logits(w)[first : len(w) - 1]).astype(np.float32).astype(np.float64)
                m = lq.shape[0]
                lp = np.asarray(self.ref_lp[row : row + m], dtype=np.float64)
                tg = self.targets[row : row + m]
                kld = (np.exp(lp) * (lp - lq)).sum(axis=1)
                klds.append(np.maximum(kld, 0.0))
                agree += int((lp.argmax(axis=1) == lq.argmax(axis=1)).sum())
                nll -= float(lq[np.arange(m), tg].sum())
                row += m
        finally:
            ctx.close()
            model.close()
        k = np.concatenate(klds)
        return Row(
            qtype,
            size,
            mean_kld=float(k.mean()),
            p99_kld=float(np.percentile(k, 99)),
            top1=agree / len(k),
            ppl=math.exp(nll / len(k)),
            ref_ppl=self.ref_ppl,
        )

    def report(self) -> Report:
        return Report(
            "next-token",
            self.ref_type,
            self.text_name,
            self.n_scored,
            windows=len(self.windows),
            window=max((len(w) for w in self.windows), default=0),
        )


def passages(text: str) -> list[str]:
    """Paragraphs (blank-line separated) of the eval text."""
    out = [" ".join(p.split()) for p in text.replace("\r\n", "\n").split("\n\n")]
    return [p for p in out if len(p) >= 20]


class EmbeddingEval:
    def __init__(self, text: str, text_name: str, max_tokens: int, threads: int) -> None:
        self.text_name, self.max_tokens, self.threads = text_name, max_tokens, threads
        self.passages = passages(text)
        self.ref: Any = None
        self.ref_type = ""
        self.seqs: list[list[int]] = []

    def _embed(self, path: Path, tokenize: bool) -> Any:
        import numpy as np

        from assistant.engine.backend import ContextConfig, LlamaContext, LlamaModel

        model = LlamaModel(path)
        try:
            limit = min(PASSAGE_TOKENS, model.n_ctx_train or PASSAGE_TOKENS)
            if tokenize:
                total = 0
                for p in self.passages:
                    ids = model.tokenize(p, add_special=True, parse_special=False)
                    if len(ids) > limit:
                        ids = [*ids[: limit - 1], ids[-1]]  # keep the closing [SEP]
                    self.seqs.append(ids)
                    total += len(ids)
                    if total >= self.max_tokens:
                        break
                if len(self.seqs) < 2:
                    raise RecipeError(
                        f"eval_text {self.text_name}: {len(self.seqs)} paragraph(s); an embedding model's report "
                        "needs at least 2 (separate them with blank lines)"
                    )
            ctx = LlamaContext(
                model, ContextConfig(n_ctx=limit, n_threads=self.threads, n_batch=limit, embeddings=True)
            )
            try:
                vecs = np.stack([np.frombuffer(ctx.embed([s])[0], dtype=np.float32) for s in self.seqs])
            finally:
                ctx.close()
        finally:
            model.close()
        vecs = vecs.astype(np.float64)
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)

    def set_reference(self, path: Path, ref_type: str) -> None:
        self.ref_type = ref_type
        self.ref = self._embed(path, tokenize=True)

    @staticmethod
    def _nearest(v: Any) -> Any:
        import numpy as np

        s = v @ v.T
        np.fill_diagonal(s, -np.inf)
        return s.argmax(axis=1)

    def compare(self, path: Path, qtype: str, size: int) -> Row:
        q = self._embed(path, tokenize=False)
        cos = (q * self.ref).sum(axis=1)
        same = (self._nearest(q) == self._nearest(self.ref)).mean()
        return Row(
            qtype, size, mean_cosine=float(cos.mean()), min_cosine=float(cos.min()), neighbours=float(same)
        )

    def report(self) -> Report:
        return Report("embedding", self.ref_type, self.text_name, len(self.seqs))
