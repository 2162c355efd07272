"""What a bundle costs: its size (with and without the optional parts), the time to make it and to
install it offline, and a portable llama.cpp build against the native one (decode and prefill).

    .venv/bin/python scripts/bench_bundle.py [--llama-wheel dist/portable/llama_cpp_python-*.whl]
        [--kb default] [--rounds 5] [--work /tmp/bench-bundle]

The install runs as a site would (unshare -n, empty HOME, pip's configuration hidden). Speed is
`assistant ask --json` on the default model, the same 500-token prompt, greedy, 128 tokens, 2
threads pinned, native and portable installs alternating (ratio of medians, and per round).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Summarise the following notes in two sentences. " + " ".join(
    f"Note {i}: the maintenance window for rack {i} moves to Thursday and the backup job runs after it."
    for i in range(1, 26)
)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])}... failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return r


def make(out: Path, *extra: str) -> tuple[float, dict]:
    t0 = time.monotonic()
    r = run([sys.executable, "-m", "assistant", "bundle", "-o", str(out), "--json", *extra], cwd=ROOT)
    return time.monotonic() - t0, json.loads(r.stdout)


def install_offline(bundle: Path, prefix: Path, work: Path) -> float:
    home = work / "empty-home"
    home.mkdir(exist_ok=True)
    t0 = time.monotonic()
    run(
        [
            "unshare",
            "-n",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            f"HOME={home}",
            "PIP_CONFIG_FILE=/dev/null",
            f"PYTHON={Path(sys.base_prefix) / 'bin' / 'python3'}",
            str(bundle / "install.sh"),
            str(prefix),
        ]
    )
    return time.monotonic() - t0


def speed(prefix: Path) -> tuple[float, float]:
    r = run(
        [
            str(prefix / "bin" / "assistant"),
            "ask",
            "--json",
            "--no-rag",
            "-t",
            "0",
            "-n",
            "128",
            "--threads",
            "2",
            PROMPT,
        ],
        env={**os.environ, "ASSISTANT_HOME": str(prefix / "models")},
    )
    t = json.loads(r.stdout)["timings"]
    return t["prefill_tps"], t["decode_tps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-wheel", type=Path)
    ap.add_argument("--kb", default=None, help="a knowledge base to measure the optional part with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-bundle"))
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    secs, res = make(a.work / "default")
    print(
        f"bundle, default models only: {res['bytes'] / 1e6:.0f} MB, {res['files']} files, made in {secs:.1f} s"
    )
    if a.kb:
        secs, res = make(a.work / "with-kb", "--kb", a.kb)
        print(f"bundle with --kb {a.kb}: {res['bytes'] / 1e6:.0f} MB, made in {secs:.1f} s")
    secs, res = make(a.work / "tarred", "--tar")
    size = Path(res["path"]).stat().st_size
    print(f"bundle --tar: {size / 1e6:.0f} MB .tar.gz, made in {secs:.1f} s")
    secs = install_offline(a.work / "default", a.work / "native", a.work)
    print(f"install offline (unshare -n, venv, pip --no-index, verify, one answer): {secs:.1f} s")
    if not a.llama_wheel:
        return
    make(a.work / "portable", "--llama-wheel", str(a.llama_wheel))
    install_offline(a.work / "portable", a.work / "portable-site", a.work)
    rows: dict[str, list[tuple[float, float]]] = {"native": [], "portable": []}
    for i in range(a.rounds):
        for name, prefix in (("native", a.work / "native"), ("portable", a.work / "portable-site"))[
            :: 1 if i % 2 == 0 else -1
        ]:
            rows[name].append(speed(prefix))
    for k, label in ((0, "prefill"), (1, "decode")):
        n = statistics.median(r[k] for r in rows["native"])
        p = statistics.median(r[k] for r in rows["portable"])
        per = [pr[k] / nr[k] for pr, nr in zip(rows["portable"], rows["native"], strict=True)]
        print(
            f"{label}: native {n:.1f} tok/s, portable {p:.1f} tok/s: {p / n:.2f}x "
            f"(rounds {min(per):.2f}-{max(per):.2f})"
        )
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
