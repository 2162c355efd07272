"""Benchmark the terminal UI: the real `assistant` command in a pseudo-terminal, on the default model.

Three figures, each next to an anchor measured in the same run:

1. Key press to screen update while an answer streams: a character is written to the terminal
   and the time until the UI's output contains it is taken (then a backspace removes it).
   Anchor: the same with the UI idle. Target: median <= 50 ms while streaming.
2. Decode tokens/s inside the UI vs `assistant ask` on the same model, prompt, seed and
   sampling, in rotating order each round (the UI's figure is the engine's timing stored with
   each answer in conversations.db; a fresh chat each round, so the tokens are identical).
   Target: ratio >= 0.95. `ask` is a fresh process each time; a second anchor, the engine
   alone in a warm long-lived process, isolates what the UI itself costs.
   And in one process with one loaded model, the engine's loop alone vs the same model behind
   the (headless) UI, alternating: the cleanest view of what the UI costs (threads: the
   physical cores, as the UI uses; --threads 1 takes the other core's noise out).
3. Peak memory (VmHWM) of the UI process with the default model after opening a
   200-message chat and answering once in it. Anchor: peak RSS of `assistant ask`.
   Target: <= 400 MB.

    .venv/bin/python scripts/bench_tui.py [--rounds 3] [--samples 40] [--threads N] [--json]

Nothing here uses the network. The machine is shared: run it last, and quote ratios.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.db import connect  # noqa: E402

ASSISTANT = Path(sys.executable).parent / "assistant"
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q8_0.gguf"
PROMPT = "Write a short story about a robot who learns to paint."
# 400 tokens (~3.5 s of decoding a side): with 160 a background blip on the shared 2-core machine
# moved single rounds by +-10%
SAMPLING = ["-n", "400", "--seed", "11", "-t", "0.7"]
LONG = "Write a very long story about a dragon who learns to cook, in many chapters."
KEY = "§"  # not something the model writes


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "HF_"))}
    env.update(ASSISTANT_HOME=str(home), HF_HUB_OFFLINE="1", TERM="xterm-256color", COLORTERM="truecolor")
    return env


class PtyApp:
    """`assistant ...` in a pseudo-terminal of a fixed size; output read by a thread, timestamped."""

    def __init__(self, args: list[str], home: Path, size: tuple[int, int] = (100, 30)) -> None:
        self.master, slave = pty.openpty()
        cols, rows = size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            [str(ASSISTANT), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env_for(home),
            cwd=home,
            start_new_session=True,
        )
        os.close(slave)
        self.chunks: list[tuple[float, bytes]] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.5)
                if not ready:
                    if self.proc.poll() is not None:
                        return
                    continue
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            t = time.perf_counter()
            with self.lock:
                self.chunks.append((t, data))

    def mark(self) -> int:
        with self.lock:
            return len(self.chunks)

    def since(self, index: int) -> list[tuple[float, bytes]]:
        with self.lock:
            return self.chunks[index:]

    def text_since(self, index: int) -> str:
        return b"".join(c for _, c in self.since(index)).decode("utf-8", "replace")

    def write(self, data: str) -> float:
        t = time.perf_counter()
        os.write(self.master, data.encode())
        return t

    def wait_text(self, needle: str, start: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text_since(start):
                return time.perf_counter()
            time.sleep(0.02)
        raise RuntimeError(f"timed out waiting for {needle!r} on the screen")

    def key_latency(self, char: str = KEY, timeout: float = 5.0) -> float:
        """ms from writing a character to the first output bytes that draw it."""
        start = self.mark()
        t0 = self.write(char)
        raw = char.encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, chunk in self.since(start):
                if raw in chunk:
                    self.write("\x7f")  # backspace: leave the input as it was
                    return (t - t0) * 1000
            time.sleep(0.0005)
        raise RuntimeError("the typed character never appeared")

    def rss(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MB."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return fields["VmRSS"], fields["VmHWM"]

    def quit(self) -> int:
        self.write("\x11")  # Ctrl+Q
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return -9


class Answers:
    """The answers the UI stored in the home's conversations.db."""

    def __init__(self, home: Path) -> None:
        self.path = home / "conversations.db"

    def count(self) -> int:
        if not self.path.exists():
            return 0
        conn = connect(self.path, vec=False, readonly=True)
        try:
            return conn.execute("SELECT count(*) FROM messages WHERE role = 'assistant'").fetchone()[0]
        except Exception:
            return 0
        finally:
            conn.close()

    def last_meta(self) -> dict:
        conn = connect(self.path, vec=False, readonly=True)
        try:
            row = conn.execute(
                "SELECT meta FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1"
            ).fetchone()
            return json.loads(row[0])
        finally:
            conn.close()

    def wait_for(self, n: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() >= n:
                return self.last_meta()
            time.sleep(0.05)
        raise RuntimeError("timed out waiting for an answer")


def make_home(base: Path, name: str) -> Path:
    home = base / name
    home.mkdir()
    (home / MODEL.name).symlink_to(MODEL)
    return home


def ask_round(home: Path) -> tuple[float, int]:
    out = subprocess.run(
        [str(ASSISTANT), "ask", "--json", *SAMPLING, PROMPT],
        capture_output=True,
        text=True,
        env=env_for(home),
        stdin=subprocess.DEVNULL,
        timeout=600,
        check=True,
    )
    d = json.loads(out.stdout)
    return d["timings"]["decode_tps"], d["usage"]["completion_tokens"]


def ask_peak_rss(home: Path) -> float:
    proc = subprocess.Popen(
        [str(ASSISTANT), "ask", *SAMPLING, PROMPT],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env_for(home),
    )
    _, _, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss / 1024


WARM_ENGINE = """
import json, sys
from assistant.engine import ChatModel, Message
from assistant.engine.sampling import SamplingParams
model = ChatModel(sys.argv[1])
params = SamplingParams(max_tokens=int(sys.argv[2]), seed=int(sys.argv[3]), temperature=float(sys.argv[4]))
print("ready", flush=True)
for line in sys.stdin:
    stream = model.chat([Message("user", line.strip())], params)
    stream.text()
    r = stream.result
    print(json.dumps({"decode_tps": r.timings.decode_tps, "tokens": r.completion_tokens}), flush=True)
"""


class WarmEngine:
    """The engine alone in a long-lived process (no UI): what the UI's overhead is measured against."""

    def __init__(self, home: Path) -> None:
        n, seed, temp = SAMPLING[1], SAMPLING[3], SAMPLING[5]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WARM_ENGINE, str(MODEL), n, seed, temp],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env_for(home),
            cwd=ROOT,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def run(self, prompt: str) -> tuple[float, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(prompt + "\n")
        self.proc.stdin.flush()
        d = json.loads(self.proc.stdout.readline())
        return d["decode_tps"], d["tokens"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


def type_line(app: PtyApp, text: str) -> None:
    app.write(text)
    time.sleep(0.2)
    app.write("\r")


def bench_decode(base: Path, rounds: int, log) -> dict:
    home = make_home(base, "decode")
    app = PtyApp(["chat", *SAMPLING], home)
    answers = Answers(home)
    warm = WarmEngine(home)
    try:
        app.wait_text("Ready:", 0, 180)
        warm.run(PROMPT)  # warm-up, like the UI's model after its first answer
        ours: list[float] = []
        ref: list[float] = []
        engine: list[float] = []
        tokens = []
        sides = ["ask", "engine", "tui"]
        for r in range(rounds):
            # rotate the order, so a load change on the shared machine hits every side
            order = sides[r % 3 :] + sides[: r % 3]
            got = {}
            for side in order:
                if side == "ask":
                    got["ask"] = ask_round(home)
                    ref.append(got["ask"][0])
                elif side == "engine":
                    got["engine"] = warm.run(PROMPT)
                    engine.append(got["engine"][0])
                else:
                    n_before = answers.count()
                    app.write("\x0e")  # Ctrl+N: a fresh chat, so the prompt (and the tokens) are the same
                    time.sleep(0.3)
                    type_line(app, PROMPT)
                    meta = answers.wait_for(n_before + 1, 600)
                    got["tui"] = (meta["decode_tps"], meta["completion_tokens"])
                    ours.append(meta["decode_tps"])
            tokens.append({k: v[1] for k, v in got.items()})
            log(
                f"  round {r + 1}: ask {got['ask'][0]:.1f}, engine (warm, no UI) {got['engine'][0]:.1f}, "
                f"TUI {got['tui'][0]:.1f} tok/s; tokens {tokens[-1]}; load {os.getloadavg()[0]:.1f}"
            )
    finally:
        app.quit()
        warm.close()
    return {
        "ask_tps": ref,
        "engine_tps": engine,
        "tui_tps": ours,
        "tokens": tokens,
        "ask_median": statistics.median(ref),
        "engine_median": statistics.median(engine),
        "tui_median": statistics.median(ours),
        "ratio": statistics.median(ours) / statistics.median(ref),
        # each round's TUI/ask pair ran back to back: the median of those ratios cancels slow drift
        "ratio_paired": statistics.median(t / a for t, a in zip(ours, ref, strict=True)),
        "ratio_vs_engine": statistics.median(ours) / statistics.median(engine),
    }


def bench_keys(base: Path, samples: int, log) -> dict:
    home = make_home(base, "keys")
    app = PtyApp(["chat", "-n", "3000", "-t", "0.9", "--seed", "5"], home)
    answers = Answers(home)
    try:
        app.wait_text("Ready:", 0, 180)
        time.sleep(0.5)
        idle = []
        for _ in range(max(10, samples // 3)):
            idle.append(app.key_latency())
            time.sleep(0.08)
        streaming: list[float] = []
        asked = 0
        while len(streaming) < samples:
            asked += 1
            n_before = answers.count()
            start = app.mark()
            type_line(app, LONG)
            app.wait_text("esc", start, 120)  # the footer offers Stop: the answer is under way
            time.sleep(1.0)  # let the first tokens arrive
            while len(streaming) < samples and answers.count() == n_before:
                ms = app.key_latency()
                if answers.count() == n_before:  # still streaming when the key was drawn
                    streaming.append(ms)
                time.sleep(0.1)
            if answers.count() == n_before:
                app.write("\x1b")  # enough samples: stop the answer
                answers.wait_for(n_before + 1, 60)
            if asked > 20:
                break
        log(f"  {len(streaming)} key presses while streaming over {asked} answers, {len(idle)} idle")
    finally:
        app.quit()
    return {
        "streaming_ms": streaming,
        "idle_ms": idle,
        "streaming_median": statistics.median(streaming),
        "streaming_p90": sorted(streaming)[int(0.9 * (len(streaming) - 1))],
        "idle_median": statistics.median(idle),
    }


def bench_memory(base: Path, log) -> dict:
    home = make_home(base, "memory")
    sys.path.insert(0, str(ROOT))
    from assistant.conversations import ConversationStore

    paragraph = (
        "A GGUF file holds the weights and the metadata of a model in one file; llama.cpp maps it "
        "into memory and runs it on the CPU. Quantization trades a little quality for size and speed. "
    )
    code = "\n\n```python\nfor i in range(3):\n    print(i)\n```\n"
    with ConversationStore(home / "conversations.db") as store:
        conv = store.create(title="Two hundred messages", model=MODEL.name)
        items = []
        for i in range(100):
            items.append(("user", f"Question {i}: tell me more about GGUF and quantization, part {i}.", None))
            items.append(("assistant", f"Part {i}. " + paragraph * 3 + (code if i % 5 == 0 else ""), {}))
        store.add_messages(conv.id, items)
        conv_id = conv.id
    app = PtyApp(["chat", "-r", str(conv_id), "-n", "64", "--seed", "3"], home)
    answers = Answers(home)
    try:
        app.wait_text("Part 99.", 0, 180)
        time.sleep(1.0)
        rss_open, _ = app.rss()
        type_line(app, "Summarise what we said in one sentence.")
        answers.wait_for(101, 600)
        time.sleep(0.5)
        rss, hwm = app.rss()
    finally:
        app.quit()
    ask_rss = ask_peak_rss(home)
    log(
        f"  TUI: {rss_open:.0f} MB after opening the chat, {rss:.0f} MB after an answer, peak {hwm:.0f} MB; "
        f"`assistant ask` peak {ask_rss:.0f} MB"
    )
    return {"tui_rss_open_mb": rss_open, "tui_rss_mb": rss, "tui_peak_mb": hwm, "ask_peak_mb": ask_rss}


def ab_worker(rounds: int, threads: int) -> None:
    """In one process, one loaded model: the engine's loop alone vs the same model behind the UI
    (headless Textual, the same app), alternating; prints JSON. Isolates what the UI costs."""
    import asyncio

    from assistant.conversations import ConversationStore
    from assistant.engine import ChatModel, Message
    from assistant.engine.sampling import SamplingParams
    from assistant.home import Home
    from assistant.knowledge.retriever import NoRetriever
    from assistant.tui.app import AssistantApp
    from assistant.tui.options import TuiOptions

    params = SamplingParams(
        max_tokens=int(SAMPLING[1]), seed=int(SAMPLING[3]), temperature=float(SAMPLING[5])
    )
    model = ChatModel(MODEL, n_threads=threads)
    model.chat([Message("user", PROMPT)], params).text()  # warm-up

    class Shared:
        def __init__(self, m: ChatModel) -> None:
            self.m = m

        def __getattr__(self, name: str) -> object:
            return getattr(self.m, name)

        def close(self) -> None:
            pass

    def plain() -> float:
        stream = model.chat([Message("user", PROMPT)], params)
        stream.text()
        assert stream.result is not None
        return stream.result.timings.decode_tps

    async def rounds_in_one_app() -> tuple[list[float], list[float]]:
        """One app (a second Textual app in the same process does not start): a fresh chat each
        round, and the engine alone between answers while the UI sits idle."""
        home = Home(Path(tempfile.mkdtemp(prefix="bench-tui-ab-")))
        app = AssistantApp(
            TuiOptions(home=home, model=MODEL),
            engine_factory=lambda path, options: Shared(model),  # type: ignore[arg-type,return-value]
            retriever_factory=lambda home, verbose: NoRetriever(),
            store=ConversationStore(":memory:"),
        )
        engine, ui = [], []
        async with app.run_test(size=(100, 30)):
            while app.model_state != "ready":
                await asyncio.sleep(0.05)
            app.sampling = params
            for r in range(rounds):
                if r % 2 == 0:
                    engine.append(plain())
                await app.submit(PROMPT)
                while app.turn is not None:
                    await asyncio.sleep(0.1)
                ui.append(float(app.chat_log.messages[-1].meta["decode_tps"]))
                await app._new_chat()
                if r % 2:
                    engine.append(plain())
        return engine, ui

    engine, ui = asyncio.run(rounds_in_one_app())
    print(json.dumps({"engine": engine, "ui": ui}))


def bench_inprocess(rounds: int, threads: int, log) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--ab-worker", "--rounds", str(rounds), "--threads", str(threads)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
        env=env_for(Path(tempfile.gettempdir())),
    )
    d = json.loads(out.stdout.strip().splitlines()[-1])
    e, u = statistics.median(d["engine"]), statistics.median(d["ui"])
    log(f"  {threads} thread(s): engine alone {e:.1f} tok/s, behind the UI {u:.1f} tok/s, ratio {u / e:.2f}")
    return {
        "threads": threads,
        "engine_tps": d["engine"],
        "ui_tps": d["ui"],
        "engine_median": e,
        "ui_median": u,
        "ratio": u / e,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating decode rounds (default 3)")
    parser.add_argument("--samples", type=int, default=40, help="key presses while streaming (default 40)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="llama.cpp threads for the in-process A/B (default: physical cores)",
    )
    parser.add_argument("--ab-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.threads:
        from assistant.engine.threads import physical_cores

        args.threads = physical_cores()
    if args.ab_worker:
        ab_worker(args.rounds, args.threads)
        return
    if not MODEL.is_file():
        sys.exit(f"{MODEL} is missing: run ./setup.sh first")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    load = os.getloadavg()
    results: dict = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_before": [round(x, 2) for x in load],
    }
    with tempfile.TemporaryDirectory(prefix="bench-tui-") as tmp:
        base = Path(tmp)
        log("decode tokens/s: TUI vs `assistant ask`")
        results["decode"] = bench_decode(base, args.rounds, log)
        log("decode tokens/s in one process: the engine alone vs behind the UI")
        results["inprocess"] = bench_inprocess(max(args.rounds, 6), args.threads, log)
        log("key press to screen update")
        results["keys"] = bench_keys(base, args.samples, log)
        log("memory with a 200-message chat")
        results["memory"] = bench_memory(base, log)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    d, k, m, ab = results["decode"], results["keys"], results["memory"], results["inprocess"]
    print(
        f"{results['date']}, {results['machine']}, load {results['load_before']} -> {results['load_after']}"
    )
    print(
        f"key press -> screen: streaming median {k['streaming_median']:.1f} ms (p90 {k['streaming_p90']:.1f}), "
        f"idle median {k['idle_median']:.1f} ms, n={len(k['streaming_ms'])}"
    )
    print(
        f"decode: TUI {d['tui_median']:.1f} tok/s, ask {d['ask_median']:.1f} tok/s, ratio {d['ratio']:.2f}x "
        f"(median of the rounds' own ratios {d['ratio_paired']:.2f}x)"
    )
    print(
        f"decode in one process ({ab['threads']} thread): UI {ab['ui_median']:.1f} vs engine alone "
        f"{ab['engine_median']:.1f} tok/s, ratio {ab['ratio']:.2f}x"
    )
    print(f"memory: TUI peak {m['tui_peak_mb']:.0f} MB (ask peak {m['ask_peak_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
