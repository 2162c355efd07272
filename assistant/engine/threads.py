"""How many threads to give llama.cpp: the CPU actually free to us, not all of it.

llama.cpp's CPU threads meet at a barrier after every graph node: when one of them
loses its core to another process, every token waits for the scheduler. Measured on
the 2-core dev VM (issue #17): 2 threads next to one busy-loop process decode at
36-48 tok/s where 1 thread does 84; idle, 2 threads do 130. So the count is decided
from facts about this moment (``CpuFacts``: affinity, physical cores, cgroup quota, the
other processes' runnable threads and recent CPU use) by a pure function
(``choose_threads``), before each answer and each embedding batch; ``ThreadTuner`` then
corrects it during generation from measured per-token times. The probes read files
under a root so tests give them fake /proc and /sys trees.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from ..errors import UsageError

log = logging.getLogger(__name__)

PROC = Path("/proc")
CGROUP = Path("/sys/fs/cgroup")
_V1_CPU_DIRS = ("cpu,cpuacct", "cpu", "cpuacct,cpu")


@dataclass(frozen=True)
class CpuFacts:
    """What the machine lets us use right now."""

    cpus: int  # logical CPUs in our affinity mask
    cores: int  # physical cores among them (hyper-threads share one core's vector units)
    quota: float | None = None  # cgroup CPU limit in CPUs; None = no limit
    others: float = 0.0  # CPUs other processes take from ours: runnable now, or used lately


FREE_SLACK = 0.4  # a CPU counts as free while others use less than 0.6 of it (the tuner checks)
BUSY_START = 0.2  # others' CPUs from which an answer's first trial comes early (daemons use less)


def choose_threads(facts: CpuFacts) -> int:
    """One thread per physical core we may use, but no more than the CPUs nobody else is
    running on (and the cgroup quota's whole CPUs); at least one."""
    cap = facts.cores
    if facts.quota is not None:
        cap = min(cap, int(facts.quota + 1e-9))
    free = int(facts.cpus - facts.others + FREE_SLACK + 1e-9)
    return max(1, min(cap, free))


def parse_threads(value: str | int | None) -> int | None:
    """``--threads``: "auto" (or None) is None, the adaptive choice; else a count >= 1 pins it."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"--threads expects 'auto' or a whole number >= 1, got {value!r}") from None
    if n < 1:
        raise UsageError(f"--threads expects 'auto' or a whole number >= 1, got {n}")
    return n


# -- probes -------------------------------------------------------------------


def allowed_cpus(affinity: Callable[[int], Iterable[int]] | None = None) -> frozenset[int]:
    """The CPUs the scheduler may run us on (sched_getaffinity; all of them off Linux)."""
    getter = affinity or getattr(os, "sched_getaffinity", None)
    if getter is None:
        return frozenset(range(os.cpu_count() or 1))
    return frozenset(getter(0)) or frozenset({0})


def count_cores(cpuinfo: Iterable[str], allowed: frozenset[int]) -> int:
    """Distinct (physical id, core id) pairs among the allowed processors of /proc/cpuinfo;
    the number of allowed CPUs when it says nothing about cores."""
    cores: set[tuple[str, str]] = set()
    proc: int | None = None
    phys = core = None
    for line in [*cpuinfo, ""]:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            proc = int(value)
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif not key:
            if proc in allowed and core is not None:
                cores.add((phys or "0", core))
            proc = phys = core = None
    return max(1, len(cores) or len(allowed))


@cache
def _cores_of(allowed: frozenset[int], proc: Path) -> int:
    try:
        with open(proc / "cpuinfo", encoding="ascii", errors="replace") as fh:
            return count_cores(fh, allowed)
    except OSError:
        return max(1, len(allowed))


def physical_cores(proc: Path = PROC) -> int:
    """Physical cores we may run on (cpuinfo is read once per affinity mask)."""
    return _cores_of(allowed_cpus(), proc)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _walk_up(root: Path, rel: str) -> list[Path]:
    """The cgroup directory of ``rel`` under ``root`` and its parents up to ``root``: a
    limit anywhere on the path applies. In a container the path may not exist under its
    own mount (the cgroup namespace shows it as the root): then only the root."""
    parts = [p for p in rel.split("/") if p]
    dirs = [root.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]
    return [d for d in dirs if d.is_dir()] or [root]


def _v2_quota(text: str | None) -> float | None:
    """cpu.max: "max 100000" or "QUOTA PERIOD" (microseconds)."""
    if not text:
        return None
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(quota_text: str | None, period_text: str | None) -> float | None:
    """cpu.cfs_quota_us (-1 = none) over cpu.cfs_period_us."""
    try:
        quota, period = int(quota_text or "-1"), int(period_text or "0")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_quota(proc: Path = PROC, cgroup: Path = CGROUP) -> float | None:
    """The tightest CPU limit of our cgroup and its parents (v2 cpu.max, v1 CFS quota), in
    CPUs; None when there is none or it cannot be read."""
    membership = _read(proc / "self" / "cgroup")
    if not membership:
        return None
    limits: list[float] = []
    for line in membership.splitlines():
        _, controllers, rel = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        if controllers == "" and rel:  # v2 (unified); on a hybrid host it lives under unified/
            root = cgroup / "unified" if (cgroup / "unified").is_dir() else cgroup
            limits += [q for d in _walk_up(root, rel) if (q := _v2_quota(_read(d / "cpu.max")))]
        elif "cpu" in controllers.split(","):
            for name in _V1_CPU_DIRS:
                if (cgroup / name).is_dir():
                    limits += [
                        q
                        for d in _walk_up(cgroup / name, rel)
                        if (q := _v1_quota(_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")))
                    ]
                    break
    return min(limits) if limits else None


def _task_state(stat: str) -> str:
    """The state letter of a /proc/.../stat line ("pid (comm) S ..."; comm may hold ') ')."""
    rest = stat.rpartition(")")[2].split()
    return rest[0] if rest else ""


def own_runnable(proc: Path = PROC) -> int:
    """Our own threads that are running or want to run (the probing one among them)."""
    n = 0
    try:
        tasks = list((proc / "self" / "task").iterdir())
    except OSError:
        return 1
    for task in tasks:
        stat = _read(task / "stat")
        if stat and _task_state(stat) == "R":
            n += 1
    return max(n, 1)


def runnable_others(proc: Path = PROC) -> float | None:
    """Threads of other processes that are running or runnable now: /proc/loadavg's
    running count minus our own running threads (llama.cpp's workers may still spin from
    the last batch). None when /proc/loadavg cannot be read."""
    text = _read(proc / "loadavg")
    try:
        running = int(text.split()[3].split("/")[0]) if text else -1
    except (IndexError, ValueError):
        running = -1
    if running < 0:
        return None
    return float(max(0, running - own_runnable(proc)))


def busy_others(
    cpus: int,
    *,
    proc: Path = PROC,
    samples: int = 3,
    gap_s: float = 0.0002,
    online: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Other processes' runnable threads on our CPUs: the median of a few instant samples
    (about a millisecond, cheap enough before every answer). /proc/loadavg counts the whole
    machine, so with an affinity mask smaller than it the count is scaled to our share."""
    seen: list[float] = []
    for i in range(samples):
        if i:
            sleep(gap_s)
        value = runnable_others(proc)
        if value is not None:
            seen.append(value)
    if not seen:
        return 0.0
    total = online or os.cpu_count() or cpus
    share = min(1.0, cpus / total) if total > 0 else 1.0
    return statistics.median(seen) * share


def busy_ticks(stat: Iterable[str], allowed: frozenset[int]) -> int | None:
    """Busy clock ticks of the allowed CPUs in /proc/stat (user, nice, system, irq, softirq
    and steal: a hypervisor's steal is CPU we did not get either); None without per-CPU lines."""
    total, seen = 0, False
    for line in stat:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in allowed:
            continue
        f = [int(x) for x in rest.split()[:8]]
        if len(f) < 8:
            continue
        total += f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
        seen = True
    return total if seen else None


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Probes:
    """Where the facts come from; tests pass fake roots, an affinity function and clocks.

    Besides the instant sample (``busy_others``), it keeps the CPU others used since its
    last look (/proc/stat's busy ticks minus our own CPU time over the wall time): a job
    that sleeps now and then (an indexer between batches) is missed by an instant sample,
    and a wrong "free" costs far more (5-50x slower tokens) than a wrong "busy" (0.65x).
    """

    proc: Path = PROC
    cgroup: Path = CGROUP
    affinity: Callable[[int], Iterable[int]] | None = None
    online: int | None = None  # CPUs of the machine (default os.cpu_count())
    quota_ttl_s: float = 30.0  # the cgroup walk costs ~0.3 ms and its limit rarely changes
    clock: Callable[[], float] = time.monotonic
    own_cpu: Callable[[], float] = _own_cpu_s  # this process's CPU seconds, all threads
    tick_s: float = 1 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)
    min_window_s: float = 0.05  # shorter windows are a few ticks: too coarse to count
    _quota: tuple[float, float | None] | None = field(default=None, init=False, repr=False)
    _mark: tuple[float, int, float] | None = field(default=None, init=False, repr=False)

    def recent_others(self, allowed: frozenset[int]) -> float | None:
        """CPUs' worth of work by other processes on our CPUs since the last call (None the
        first time, or when the window was too short to count); starts the next window."""
        stat = _read(self.proc / "stat")
        ticks = busy_ticks(stat.splitlines(), allowed) if stat else None
        if ticks is None:
            return None
        now, own = self.clock(), self.own_cpu()
        last, self._mark = self._mark, (now, ticks, own)
        if last is None or now - last[0] < self.min_window_s:
            if last is not None:
                self._mark = last  # keep the window growing
            return None
        busy = (ticks - last[1]) * self.tick_s - (own - last[2])
        return max(0.0, busy / (now - last[0]))

    def quota(self) -> float | None:
        now = time.monotonic()
        if self._quota is None or now - self._quota[0] > self.quota_ttl_s:
            self._quota = (now, cgroup_quota(self.proc, self.cgroup))
        return self._quota[1]

    def facts(self) -> CpuFacts:
        """The machine now: the busier of the instant sample and the recent average."""
        allowed = allowed_cpus(self.affinity)
        cpus = len(allowed)
        others = busy_others(cpus, proc=self.proc, online=self.online)
        recent = self.recent_others(allowed)
        return CpuFacts(
            cpus=cpus,
            cores=_cores_of(allowed, self.proc),
            quota=self.quota(),
            others=max(others, recent or 0.0),
        )


SYSTEM = Probes()


def auto_threads(probes: Probes = SYSTEM) -> int:
    """The thread count for the next answer or batch, from the machine as it is now."""
    return choose_threads(probes.facts())


@dataclass
class BatchThreads:
    """auto_threads() for a stream of batches (embeddings during ``index add``), asked again
    at most every ``interval_s``: a probe costs about a millisecond and a one-chunk batch
    a few tens, so asking before every batch would cost a few percent."""

    interval_s: float = 0.25
    probes: Probes = field(default_factory=lambda: SYSTEM)
    clock: Callable[[], float] = time.monotonic
    _last: tuple[float, int] | None = field(default=None, init=False, repr=False)

    def __call__(self) -> int:
        now = self.clock()
        if self._last is None or now - self._last[0] >= self.interval_s:
            self._last = (now, auto_threads(self.probes))
        return self._last[1]


def max_threads(probes: Probes = SYSTEM) -> int:
    """The most threads ever worth using here: physical cores within the cgroup quota.
    Called when a model loads, it also starts the window of the first recent-use measure."""
    allowed = allowed_cpus(probes.affinity)
    probes.recent_others(allowed)
    return choose_threads(CpuFacts(len(allowed), _cores_of(allowed, probes.proc), probes.quota()))


# -- adaptation during generation ----------------------------------------------


def tuner_for_answer(probes: Probes = SYSTEM) -> ThreadTuner:
    """The count to start an answer with (its prompt is read with it too) and the tuner
    that adapts it while tokens are generated."""
    facts = probes.facts()
    log.debug("threads: %s -> %d", facts, choose_threads(facts))
    return ThreadTuner(
        current=choose_threads(facts),
        hi=choose_threads(replace(facts, others=0.0)),
        busy_start=facts.others >= BUSY_START,
        free=lambda: auto_threads(probes),
    )


@dataclass
class ThreadTuner:
    """Per-token times in, the thread count for the next token out (no clock of its own).

    Every so often it tries one thread more or less for ``window`` tokens (after one
    transition token, not counted) and keeps the trial when its median token time beats
    the last ``window`` tokens at the current count by ``margin``; otherwise it goes back.
    A kept move is followed soon by another in the same direction while there is room; a
    rejected one turns the next trial around. The first trial comes early (``first_trial``
    tokens) when the answer started on a busy machine, else after ``every`` tokens: on an
    idle machine a trial at fewer threads costs its tokens' speed, so short answers make none.

    A thread without a core makes a token 5-50x slower (busy 2-core VM, 2026-11-30), so a
    trial with more threads is only made when ``free()`` (the probe) says a CPU is free,
    and any trial token slower than ``abort_factor`` x the current median ends it at once.
    """

    current: int
    hi: int
    lo: int = 1
    window: int = 4
    first_trial: int = 8
    every: int = 128
    margin: float = 0.05
    abort_factor: float = 3.0
    busy_start: bool = False
    free: Callable[[], int] | None = None

    def __post_init__(self) -> None:
        self.current = max(self.lo, min(self.hi, self.current))
        self._recent: list[float] = []  # token times at the current count since it started
        self._since = 0  # tokens since the last trial ended
        self._next = self.first_trial if self.busy_start else self.every
        self._down = True
        self._trial: int | None = None  # the count on trial
        self._trial_times: list[float] = []
        self._base = 0.0  # median token time at the current count when the trial began
        self._skip = False  # the next time is a transition token

    def observe(self, seconds: float) -> int:
        """Record the time of the token just decoded; return the count for the next one."""
        if self._trial is not None:
            if seconds > self.abort_factor * self._base:
                self._end_trial(kept=False)
            elif self._skip:
                self._skip = False
            else:
                self._trial_times.append(seconds)
                if len(self._trial_times) >= self.window:
                    self._end_trial(
                        kept=statistics.median(self._trial_times) < self._base * (1 - self.margin)
                    )
        elif self._skip:
            self._skip = False
        else:
            self._recent = [*self._recent[-(self.window - 1) :], seconds] if self.window > 1 else [seconds]
            self._since += 1
            if self._since >= self._next and len(self._recent) >= self.window:
                self._start_trial()
        return self._trial if self._trial is not None else self.current

    def _candidate(self) -> int | None:
        down = self.current - 1 if self.current > self.lo else None
        up = self.current + 1 if self.current < self.hi else None
        cand = (down if down is not None else up) if self._down else (up if up is not None else down)
        if cand is not None and cand > self.current and self.free is not None and self.free() < cand:
            return down  # no CPU free for one more thread: try one fewer, or nothing
        return cand

    def _start_trial(self) -> None:
        cand = self._candidate()
        if cand is None:
            self._since, self._next = 0, self.every
            return
        self._trial, self._trial_times, self._skip = cand, [], True
        self._base = statistics.median(self._recent)

    def _end_trial(self, *, kept: bool) -> None:
        assert self._trial is not None
        went_down = self._trial < self.current
        if kept:
            self.current, self._recent = self._trial, list(self._trial_times)
            further = self.current > self.lo if went_down else self.current < self.hi
            self._down = went_down == further  # the same way again soon, if there is room
            self._next = self.first_trial if further else self.every
        else:
            self._down = not went_down
            self._next = self.every
            self._skip = True  # the first token back at the old count is a transition too
            self._recent = []
        self._trial, self._trial_times, self._since = None, [], 0
