#!/usr/bin/env python3
"""The BF16 working copy made through `python -m convert` (what knowledge/bf16.py runs) against the
same conversion in-process (convert.api.convert_model, what it called before), in the same run.

The knowledge base does not import the converter, so the first use of an F16 embedding model on a
CPU with AVX512-BF16 pays for a process start; this measures how much, on the real MiniLM:

  .venv/bin/python scripts/bench_bf16_copy.py [--model models/all-MiniLM-L6-v2.gguf] [--runs 5]

Runs alternate (in-process, subprocess) so load changes hit both; medians are printed with the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "all-MiniLM-L6-v2.gguf")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from assistant.knowledge.bf16 import _derive
    from convert.api import convert_model

    times: dict[str, list[float]] = {"in-process": [], "python -m convert": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for label in times:
                out = Path(tmp) / f"{label[0]}{i}.BF16.gguf"
                t0 = time.perf_counter()
                if label == "in-process":
                    convert_model(args.model, out, quant="BF16")
                else:
                    _derive(args.model, out)
                times[label].append(time.perf_counter() - t0)
                out.unlink()
    anchor = statistics.median(times["in-process"])
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"{label:18s} median {med:6.2f} s  (min {min(ts):.2f}, max {max(ts):.2f})  {med / anchor:.2f}x")
    print(f"process start costs {statistics.median(times['python -m convert']) - anchor:+.2f} s")


if __name__ == "__main__":
    main()
