#!/usr/bin/env python
"""Fine-tuning speed: `assistant finetune` against llama.cpp's own `llama-finetune` example (#15).

    .venv/bin/python scripts/bench_finetune.py [--rounds 2] [--epochs 1] [--chars 24000] [--threads 2]
        [--llama-finetune /tmp/llama-finetune-build/bin/llama-finetune] [--model F32.gguf] [--data TEXT]
    .venv/bin/python scripts/bench_finetune.py --smoke      # one round on a small slice: that it runs

llama-finetune is built from the llama.cpp sources the installed llama-cpp-python wheel was built
from, with the wheel's CPU flags (native, OpenMP), only that target:

    cmake -S /tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp -B /tmp/llama-finetune-build \\
        -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \\
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF
    cmake --build /tmp/llama-finetune-build --target llama-finetune -j2

Both sides run as processes, one at a time, alternated in each round (A/B, then B/A) so machine
noise falls on both. Equal: the F32 GGUF (default: our F32 working copy of the default model, made
by the same working_copy() `assistant finetune` uses, cached in /tmp/bench-finetune), the text file
(the first --chars characters of --data, cut at a paragraph), 256-token windows (n_ctx = n_batch =
n_ubatch = 256), the threads, the epochs, AdamW with llama.cpp's default betas/eps and no weight
decay, lr 1e-5, the validation share (the last windows), F32 K/V cache, flash attention off, no mmap.
What trains: llama-finetune's filter is llama_opt_param_filter_all, i.e. every F32 tensor llama.cpp
allows (not the token embedding, which is also the tied output head here): all 30 layers' attention
and FFN matrices plus their RMS-norm vectors and the output norm. Ours runs `--train all`: the same
210 matrices, norms frozen (61 vectors of 576 floats: about 0.03 % of the trained weights, a
negligible share of the step; it is extra work on llama-finetune's side).
Not equal: llama-finetune cuts windows with a stride of n_ctx/2 (half-overlapping, so about twice the
steps per epoch on the same text) in file order with a constant lr; ours cuts consecutive windows,
shuffles them each epoch, warms the lr up and decays it (no effect on speed). Ours also evaluates
the validation windows and a reference text before and after each epoch, writes a checkpoint each
epoch, and extracts the adapter at the end; llama-finetune evaluates its validation windows after
each epoch and saves the model at the end. None of that is in the train rate below; it is in wall
time and may be in the process's peak RSS.

Train tok/s ("steps"), the same measure on both sides: both print a progress line after every
optimizer step (llama-finetune its progress bar, ours its progress line, which it prints when
stderr is a terminal: both run with stderr on a pseudo-terminal); this script stamps each line as
it arrives, and the rate is 256 tokens times the steps between the first and the last step of each
epoch over the time between them (the first step of an epoch, with its one-off allocations, is not
counted). "own" is each tool's own figure: ours `train_tokens_per_s` of --json (all steps, first
included), llama-finetune's windows over the t= of its bar's last train line (one-second
resolution). RSS: "train" is the process's VmHWM read at its last training step (load and
training), "peak" is ru_maxrss of the whole process (os.wait4), MB of 2**20 bytes.
Prints a table, medians per side, the ratio ours/llama-finetune (target >= 0.9) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_BASE = ROOT / "models" / "sources" / "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_FINETUNE = Path("/tmp/llama-finetune-build/bin/llama-finetune")
DATA = Path("/usr/share/common-licenses/GPL-3")
CACHE = Path(tempfile.gettempdir()) / "bench-finetune"
WINDOW = 256
LR = "1e-5"
OURS, THEIRS = "assistant", "llama-finetune"
# ours: "\r\x1b[2Kepoch 1/2  step 5/38  loss 3.1234  lr 1.00e-05  95 tok/s  ETA 45s" (one write)
OURS_STEP = re.compile(rb"epoch (\d+)/\d+\s+step (\d+)/\d+\s+loss \S+\s+lr \S+\s+\d+ tok/s\s+ETA \d+s")
# llama-finetune (ggml_opt_epoch_callback_progress_bar), train and validation:
# "train: [bar] data=0000005/0000040 loss=3.12345±0.01234 acc=... t=00:00:12 ETA=00:01:40 \r"
THEIRS_STEP = re.compile(
    rb"(train|val):\s*\[[^\]\r\n]*\] data=(\d+)/(\d+) loss=([-0-9.naif]+)[^\r\n]*? "
    rb"t=(\d+):(\d+):(\d+) ETA=\d+:\d+:\d+"
)


def machine() -> dict[str, object]:
    from bench_knowledge import machine as cpu_and_date  # scripts/ is on sys.path when run

    return {**cpu_and_date(), "date": time.strftime("%Y-%m-%d %H:%M")}


@dataclass
class Run:
    side: str
    round: int
    steps_timed: int
    seconds_timed: float
    train_tps: float  # 256 tokens x steps timed / seconds timed
    own_tps: float | None
    train_rss_mb: float
    peak_rss_mb: float
    wall_s: float
    windows: str  # train + validation windows of one epoch
    loss: float | None  # mean train loss of the last epoch, as the tool reports it
    load: float  # 1-minute load average before the run


@dataclass
class Watch:
    """What a process wrote to its terminal: per step line, its arrival time, the process's VmHWM
    (kB) then, and the line's match groups."""

    steps: list[tuple[float, int, tuple[bytes, ...]]]
    peak_kb: int
    wall_s: float
    tail: str


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def watch(cmd: list[str], pattern: re.Pattern[bytes], stdout: Path) -> Watch:
    """Run cmd with stderr on a pseudo-terminal; stamp every step line when it arrives, read the
    process's VmHWM at each, and its ru_maxrss at the end (os.wait4: this process only)."""
    master, slave = pty.openpty()
    started = time.monotonic()
    with open(stdout, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=slave)
    os.close(slave)
    buf, pos, seen = b"", 0, b""
    steps: list[tuple[float, int, tuple[bytes, ...]]] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        now = time.monotonic()
        buf += chunk
        seen = (seen + chunk)[-6000:]
        for m in pattern.finditer(buf, pos):
            steps.append((now, _hwm_kb(proc.pid), m.groups()))
            pos = m.end()
        buf, pos = buf[pos:], 0
    os.close(master)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    tail = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", seen.decode(errors="replace"))
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{tail[-3000:]}")
    return Watch(steps, usage.ru_maxrss, wall, tail)


def step_rate(epochs: list[list[tuple[float, int]]]) -> tuple[int, float]:
    """(steps, seconds) between the first and the last step line of each epoch, summed."""
    n, dt = 0, 0.0
    for ev in epochs:
        if len(ev) >= 2:
            n += ev[-1][1] - ev[0][1]
            dt += ev[-1][0] - ev[0][0]
    return n, dt


def run_theirs(args: argparse.Namespace, model: Path, data: Path, tmp: Path, rnd: int) -> Run:
    cmd = [str(args.llama_finetune), "-m", str(model), "-f", str(data),
           "-c", str(WINDOW), "-b", str(WINDOW), "-ub", str(WINDOW), "-fa", "off",
           "-t", str(args.threads), "-tb", str(args.threads), "-epochs", str(args.epochs),
           "-lr", LR, "-val-split", str(args.val_split), "-o", str(tmp / "theirs.gguf")]  # fmt: skip
    load = os.getloadavg()[0]
    w = watch(cmd, THEIRS_STEP, tmp / "theirs.out")
    (tmp / "theirs.gguf").unlink(missing_ok=True)
    epochs: list[list[tuple[float, int]]] = []
    last: list[tuple[int, int, float, int]] = []  # per epoch: windows, of, loss, t= seconds
    n_val, hwm = "0", 0
    for t, kb, (kind, d, of, loss, hh, mm, ss) in w.steps:
        if kind == b"val":
            n_val = of.decode().lstrip("0") or "0"
            continue
        d_i, hwm = int(d), kb
        if not epochs or d_i <= epochs[-1][-1][1]:  # the count starts again: a new epoch
            epochs.append([])
            last.append((0, 0, 0.0, 0))
        epochs[-1].append((t, d_i))
        last[-1] = (d_i, int(of), float(loss), int(hh) * 3600 + int(mm) * 60 + int(ss))
    if not epochs:
        sys.exit(f"no training progress from {THEIRS}:\n{w.tail[-3000:]}")
    n, dt = step_rate(epochs)
    own_s = sum(e[3] for e in last)
    return Run(THEIRS, rnd, n, dt, WINDOW * n / dt if dt else 0.0,
               WINDOW * sum(e[0] for e in last) / own_s if own_s else None,
               hwm / 1024, w.peak_kb / 1024, w.wall_s, f"{last[-1][1]}+{n_val}", last[-1][2], load)  # fmt: skip


def run_ours(args: argparse.Namespace, model: Path, data: Path, tmp: Path, rnd: int) -> Run:
    out_dir = tmp / f"ours-{rnd}"
    cmd = [sys.executable, "-m", "assistant", "finetune", str(model), "--data", str(data),
           "--train", "all", "--epochs", str(args.epochs), "--lr", LR, "--val-split", str(args.val_split),
           "--patience", "0", "--window", str(WINDOW), "--threads", str(args.threads),
           "-o", str(out_dir), "--json"]  # fmt: skip
    load = os.getloadavg()[0]
    w = watch(cmd, OURS_STEP, tmp / "ours.out")
    summary = json.loads((tmp / "ours.out").read_text().strip().splitlines()[-1])
    shutil.rmtree(out_dir, ignore_errors=True)
    epochs: dict[int, list[tuple[float, int]]] = {}
    for t, _, (ep, step) in w.steps:
        epochs.setdefault(int(ep), []).append((t, int(step)))
    n, dt = step_rate(list(epochs.values()))
    hwm = w.steps[-1][1] if w.steps else 0
    losses = summary.get("train_losses") or [None]
    return Run(OURS, rnd, n, dt, WINDOW * n / dt if dt else 0.0, summary.get("train_tokens_per_s"),
               hwm / 1024, w.peak_kb / 1024, w.wall_s,
               f"{summary['train_windows']}+{summary['val_windows']}", losses[-1], load)  # fmt: skip


def slice_text(src: Path, chars: int, out: Path) -> Path:
    """The first ``chars`` characters of src, ended at a paragraph break (a plain-text file both read)."""
    text = src.read_text(encoding="utf-8", errors="replace")[:chars]
    cut = text.rfind("\n\n")
    out.write_text((text[:cut] if cut > chars // 2 else text).rstrip() + "\n", encoding="utf-8")
    return out


def f32_model(spec: Path | None) -> Path:
    """The F32 GGUF both sides train: the one given, else our working copy of the default model
    (dequantized from its Q4_1: the values differ from the HF weights, the shapes and work do not)."""
    from assistant.finetune.train import working_copy
    from assistant.models.gguf_info import read_gguf_info

    if spec is None:
        return working_copy(DEFAULT_BASE, CACHE)
    if not spec.is_file() or read_gguf_info(spec).get("general.file_type") != 0:
        sys.exit(f"--model {spec}: expected an F32 GGUF (llama-finetune trains F32 weights only)")
    return spec.absolute()


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-finetune", type=Path, default=LLAMA_FINETUNE, help="the llama-finetune binary")
    ap.add_argument("--model", type=Path, help="an F32 GGUF (default: F32 working copy of the default model)")
    ap.add_argument("--data", type=Path, default=DATA, help="plain text to train on")
    ap.add_argument("--chars", type=int, default=24000, help="characters of --data used (~4 per token)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--val-split", type=float, default=0.1, help="share of windows held out (both sides)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="one round on 6000 characters")
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.chars = 1, 6000
    if not os.access(args.llama_finetune, os.X_OK):
        sys.exit(
            f"{args.llama_finetune} is not an executable; build it (see --help) or give --llama-finetune"
        )
    model = f32_model(args.model)
    info = machine()
    tmp = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    runs: list[Run] = []
    try:
        data = slice_text(args.data, args.chars, tmp / "data.txt")
        for r in range(1, args.rounds + 1):
            order = [run_theirs, run_ours] if r % 2 else [run_ours, run_theirs]
            for fn in order:
                runs.append(fn(args, model, data, tmp, r))
                x = runs[-1]
                print(f"# round {r} {x.side}: {x.train_tps:.1f} tok/s over {x.steps_timed} steps, "
                      f"peak RSS {x.peak_rss_mb:.0f} MB, {x.wall_s:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{info['cpu']}, {info['cores']} CPUs, {info['date']}; {model.name} ({model.stat().st_size >> 20} MB); "
          f"{args.data.name} first {args.chars} chars; window {WINDOW}, {args.threads} threads, "
          f"{args.epochs} epoch(s), {args.rounds} round(s)")  # fmt: skip
    print(f"{'side':15}{'round':>6}{'windows':>9}{'steps':>7}{'train tok/s':>13}{'own tok/s':>11}"
          f"{'loss':>8}{'RSS train':>11}{'RSS peak':>10}{'wall s':>8}{'load':>6}")  # fmt: skip
    for x in runs:
        print(f"{x.side:15}{x.round:>6}{x.windows:>9}{x.steps_timed:>7}{x.train_tps:>13.1f}"
              f"{_fmt(x.own_tps, '.1f'):>11}{_fmt(x.loss, '.3f'):>8}{x.train_rss_mb:>11.0f}"
              f"{x.peak_rss_mb:>10.0f}{x.wall_s:>8.0f}{x.load:>6.2f}")  # fmt: skip
    med: dict[str, dict[str, float]] = {}
    own: dict[str, float | None] = {}
    for side in (THEIRS, OURS):
        mine = [x for x in runs if x.side == side]
        figures = [x.own_tps for x in mine if x.own_tps is not None]
        own[side] = statistics.median(figures) if figures else None
        med[side] = {k: statistics.median(getattr(x, k) for x in mine)
                     for k in ("train_tps", "train_rss_mb", "peak_rss_mb")}  # fmt: skip
    o, t = med[OURS], med[THEIRS]
    ratio = o["train_tps"] / t["train_tps"] if t["train_tps"] else 0.0
    o_own, t_own = own[OURS], own[THEIRS]
    own_ratio = o_own / t_own if o_own and t_own else None
    print(f"medians: {THEIRS} {t['train_tps']:.1f} tok/s, {OURS} {o['train_tps']:.1f} tok/s: "
          f"ours/{THEIRS} {ratio:.2f}x (target >= 0.9); own figures {_fmt(own_ratio, '.2f')}x; "
          f"RSS train {o['train_rss_mb']:.0f} vs {t['train_rss_mb']:.0f} MB, "
          f"peak {o['peak_rss_mb']:.0f} vs {t['peak_rss_mb']:.0f} MB (ours vs {THEIRS})")  # fmt: skip
    print(json.dumps({"bench": "finetune", **info, "model": str(model), "data": str(args.data),
                      "chars": args.chars, "window": WINDOW, "threads": args.threads, "epochs": args.epochs,
                      "val_split": args.val_split, "rounds": args.rounds, "runs": [asdict(x) for x in runs],
                      "medians": med, "own_tps": own, "ratio": round(ratio, 3),
                      "own_ratio": None if own_ratio is None else round(own_ratio, 3)}))  # fmt: skip


if __name__ == "__main__":
    main()
