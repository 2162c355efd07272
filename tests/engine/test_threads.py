"""The thread count decision (#17): facts from fake /proc and /sys trees and fake affinity
masks, the pure choice, and the adaptation rule fed with made-up per-token times."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from assistant.engine.threads import (
    BatchThreads,
    CpuFacts,
    Probes,
    ThreadTuner,
    auto_threads,
    busy_others,
    busy_ticks,
    cgroup_quota,
    choose_threads,
    count_cores,
    max_threads,
    parse_threads,
    runnable_others,
    tuner_for_answer,
)
from assistant.errors import UsageError

# -- fake trees ---------------------------------------------------------------


def cpuinfo(cores_of: list[int]) -> str:
    """A /proc/cpuinfo with one block per processor; cores_of[i] is processor i's core id."""
    return "".join(
        f"processor\t: {i}\nvendor_id\t: AuthenticAMD\nphysical id\t: 0\ncore id\t\t: {c}\n\n"
        for i, c in enumerate(cores_of)
    )


def fake_proc(root: Path, *, running: int = 1, own: str = "R", cores_of: list[int] | None = None) -> Path:
    """/proc with loadavg's running count, our tasks' states (one letter each) and cpuinfo."""
    proc = root / "proc"
    (proc / "self" / "task").mkdir(parents=True)
    set_running(proc, running)
    for tid, state in enumerate(own, start=100):
        d = proc / "self" / "task" / str(tid)
        d.mkdir()
        (d / "stat").write_text(f"{tid} (py (x) R) {state} 1 1 1 0 -1\n")  # a comm with ") R" inside
    (proc / "cpuinfo").write_text(cpuinfo(cores_of or [0, 1]))
    (proc / "self" / "cgroup").write_text("0::/\n")
    return proc


def set_running(proc: Path, running: int) -> None:
    (proc / "loadavg").write_text(f"2.87 1.47 1.59 {running}/97 15197\n")


def mask(*cpus: int) -> Callable[[int], set[int]]:
    return lambda pid: set(cpus)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- the choice ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (CpuFacts(cpus=2, cores=2), 2),  # idle: all physical cores (today's default)
        (CpuFacts(cpus=2, cores=2, others=1), 1),  # one busy-loop on the other core
        (CpuFacts(cpus=2, cores=2, others=3), 1),  # three busy jobs: never fewer than one
        (CpuFacts(cpus=4, cores=2), 2),  # hyper-threads: one thread per physical core
        (CpuFacts(cpus=4, cores=2, others=1), 2),  # 3 logical CPUs free: both cores still run ours
        (CpuFacts(cpus=4, cores=2, others=3), 1),
        (CpuFacts(cpus=8, cores=8, quota=2.5), 2),  # cgroup quota: its whole CPUs
        (CpuFacts(cpus=8, cores=8, quota=0.5), 1),
        (CpuFacts(cpus=8, cores=8, quota=4.0, others=6), 2),
        (CpuFacts(cpus=2, cores=2, others=0.5), 1),  # half a CPU taken (scaled count): not free
    ],
)
def test_choose_threads(facts, expected):
    assert choose_threads(facts) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("auto", None), (" AUTO ", None), ("3", 3), (1, 1)]
)
def test_parse_threads(value, expected):
    assert parse_threads(value) == expected


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", ""])
def test_parse_threads_refuses_bad_values(value):
    with pytest.raises(UsageError, match="--threads expects 'auto' or a whole number >= 1"):
        parse_threads(value)


# -- probes -------------------------------------------------------------------


def test_count_cores_smt_and_affinity():
    smt = cpuinfo([0, 0, 1, 1]).splitlines()  # 4 logical CPUs on 2 cores
    assert count_cores(smt, frozenset({0, 1, 2, 3})) == 2
    assert count_cores(smt, frozenset({0, 1})) == 1  # both siblings of core 0
    assert count_cores(smt, frozenset({1, 2})) == 2
    assert count_cores(["model name : no core ids here", ""], frozenset({0, 1, 2})) == 3


def test_cgroup_v2_quota_tightest_on_the_path(tmp_path):
    proc = fake_proc(tmp_path)
    (proc / "self" / "cgroup").write_text("0::/user.slice/app.scope\n")
    cg = tmp_path / "cgroup"
    write(cg / "cpu.max", "max 100000\n")
    write(cg / "user.slice" / "cpu.max", "300000 100000\n")
    write(cg / "user.slice" / "app.scope" / "cpu.max", "150000 100000\n")
    assert cgroup_quota(proc, cg) == 1.5
    write(cg / "user.slice" / "cpu.max", "50000 100000\n")  # a parent's limit applies too
    assert cgroup_quota(proc, cg) == 0.5
    for d in (cg, cg / "user.slice", cg / "user.slice" / "app.scope"):
        write(d / "cpu.max", "max 100000\n")
    assert cgroup_quota(proc, cg) is None


def test_cgroup_v2_in_a_container_reads_its_root(tmp_path):
    proc = fake_proc(tmp_path)
    (proc / "self" / "cgroup").write_text("0::/system.slice/docker-abc.scope\n")  # a host path
    cg = tmp_path / "cgroup"
    write(cg / "cpu.max", "200000 100000\n")  # the container's own cgroup is the mount's root
    assert cgroup_quota(proc, cg) == 2.0


def test_cgroup_v1_cfs_quota(tmp_path):
    proc = fake_proc(tmp_path)
    (proc / "self" / "cgroup").write_text("5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    cg = tmp_path / "cgroup"
    write(cg / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "50000\n")
    write(cg / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    write(cg / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    write(cg / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_quota(proc, cg) == 0.5
    write(cg / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_quota(proc, cg) is None


def test_cgroup_hybrid_host_without_limits(tmp_path):
    """This dev VM's layout: v1 controllers, an empty unified/ tree, no quota anywhere."""
    proc = fake_proc(tmp_path)
    (proc / "self" / "cgroup").write_text("1:cpu:/\n0::/\n")
    cg = tmp_path / "cgroup"
    write(cg / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(cg / "cpu" / "cpu.cfs_period_us", "100000\n")
    (cg / "unified").mkdir()
    assert cgroup_quota(proc, cg) is None


@pytest.mark.parametrize("text", ["", "garbage", "max", "abc 100000", "0 100000"])
def test_cgroup_unreadable_limits_are_no_limit(tmp_path, text):
    proc = fake_proc(tmp_path)
    write(tmp_path / "cgroup" / "cpu.max", text)
    assert cgroup_quota(proc, tmp_path / "cgroup") is None
    assert cgroup_quota(tmp_path / "no-proc", tmp_path / "cgroup") is None


def test_runnable_others_subtracts_our_running_threads(tmp_path):
    # 4 running on the machine; ours: the probing thread and a spinning llama.cpp worker
    proc = fake_proc(tmp_path, running=4, own="RSRS")
    assert runnable_others(proc) == 2
    set_running(proc, 2)
    assert runnable_others(proc) == 0
    set_running(proc, 1)  # a count taken a moment earlier than our tasks': never negative
    assert runnable_others(proc) == 0
    (proc / "loadavg").write_text("nonsense\n")
    assert runnable_others(proc) is None


def test_busy_others_median_of_samples_and_affinity_share(tmp_path):
    proc = fake_proc(tmp_path, running=3, own="R")
    counts = iter([9, 3])  # a burst in one sample does not decide

    def sleep(_s: float) -> None:
        set_running(proc, next(counts))

    assert busy_others(2, proc=proc, online=2, sleep=sleep) == 2
    # 2 of the machine's 8 CPUs are ours: a quarter of the machine's other runnable threads
    set_running(proc, 9)
    assert busy_others(2, proc=proc, online=8, sleep=lambda s: None) == 2
    assert busy_others(2, proc=tmp_path / "nothing", online=2, sleep=lambda s: None) == 0


def test_auto_threads_from_fake_machine(tmp_path):
    proc = fake_proc(tmp_path, running=1, own="R")
    probes = Probes(proc=proc, cgroup=tmp_path / "cgroup", affinity=mask(0, 1), online=2)
    assert auto_threads(probes) == 2  # idle
    set_running(proc, 2)  # one busy-loop process
    assert auto_threads(probes) == 1
    assert max_threads(probes) == 2  # the ceiling does not follow the load
    tuner = tuner_for_answer(probes)
    assert (tuner.current, tuner.hi, tuner.busy_start) == (1, 2, True)
    set_running(proc, 1)
    assert tuner_for_answer(probes).busy_start is False  # idle: the first trial waits 128 tokens
    set_running(proc, 1)
    assert auto_threads(Probes(proc=proc, cgroup=tmp_path / "cgroup", affinity=mask(1), online=2)) == 1


def test_auto_threads_follows_the_cgroup_quota(tmp_path):
    proc = fake_proc(tmp_path, running=1, cores_of=[0, 1, 2, 3])
    write(tmp_path / "cgroup" / "cpu.max", "100000 100000\n")
    probes = Probes(proc=proc, cgroup=tmp_path / "cgroup", affinity=mask(0, 1, 2, 3), online=4)
    assert auto_threads(probes) == 1


def test_batch_threads_asks_again_only_after_its_interval(tmp_path):
    proc = fake_proc(tmp_path, running=1)
    now = [0.0]
    pick = BatchThreads(
        interval_s=0.25,
        probes=Probes(proc=proc, cgroup=tmp_path / "cgroup", affinity=mask(0, 1), online=2),
        clock=lambda: now[0],
    )
    assert pick() == 2
    set_running(proc, 2)
    now[0] = 0.2
    assert pick() == 2  # not asked again yet
    now[0] = 0.26
    assert pick() == 1


# -- adaptation during generation ----------------------------------------------


def run_tuner(tuner: ThreadTuner, seconds_at: Callable[[int, int], float], tokens: int) -> list[int]:
    """Feed the tuner the time each token takes at the count it chose; the counts that ran."""
    ran, n = [], tuner.current
    for i in range(tokens):
        ran.append(n)
        n = tuner.observe(seconds_at(n, i))
    return ran


def test_tuner_drops_a_thread_that_lost_its_core():
    # the machine with a busy-loop: 2 threads 36-48 tok/s, 1 thread 84 tok/s
    times = {2: 1 / 40, 1: 1 / 84}
    ran = run_tuner(ThreadTuner(current=2, hi=2, busy_start=True), lambda n, i: times[n], 200)
    first_one = ran.index(1)
    assert first_one == 8  # after first_trial tokens at 2
    assert ran[first_one : first_one + 120] == [1] * 120  # kept: no going back before the next check
    assert ran.count(2) < 8 + 2 * 6  # the later check up costs a few tokens only


def test_tuner_keeps_all_cores_on_an_idle_machine():
    times = {2: 1 / 130, 1: 1 / 84}
    tuner = ThreadTuner(current=2, hi=2)
    ran = run_tuner(tuner, lambda n, i: times[n], 3 * 134)
    assert ran[:128] == [2] * 128  # an idle start makes no trial in a short answer
    # a trial every 128 tokens at the old count (+1 transition token back): 1 transition + 4 measured
    assert [i for i in range(1, len(ran)) if ran[i] == 1 != ran[i - 1]] == [128, 262, 396]
    assert ran.count(1) == 3 * 5
    assert tuner.current == 2


def test_tuner_ignores_the_transition_token():
    times = {2: 0.020, 1: 0.010}

    def seconds_at(n: int, i: int) -> float:
        return 0.055 if i == 8 else times[n]  # the first token at the new count: an outlier

    ran = run_tuner(ThreadTuner(current=2, hi=2, busy_start=True), seconds_at, 40)
    assert ran[8:40] == [1] * 32


def test_tuner_rejected_trial_goes_back_and_turns_around():
    # 3 cores; 2 is best; starting at 3 on a busy machine
    times = {3: 0.030, 2: 0.012, 1: 0.020}
    tuner = ThreadTuner(current=3, hi=3, busy_start=True)
    ran = run_tuner(tuner, lambda n, i: times[n], 300)
    assert ran[8] == 2  # 3 -> 2 kept
    assert 1 in ran[8:40]  # another step down soon after a kept one ...
    assert tuner.current == 2  # ... rejected: back at the best count
    after = ran.index(1) + 6
    assert ran[after : after + 100] == [2] * 100  # next check waits `every` tokens


def test_tuner_tie_keeps_the_current_count():
    tuner = ThreadTuner(current=1, hi=2, busy_start=True)
    ran = run_tuner(tuner, lambda n, i: 0.010, 60)
    assert ran[8:13] == [2] * 5  # tried one more
    assert ran[13:] == [1] * 47 and tuner.current == 1  # not 5% faster: back


def test_tuner_with_one_core_never_changes():
    tuner = ThreadTuner(current=1, hi=1, busy_start=True)
    assert set(run_tuner(tuner, lambda n, i: 0.01 * (1 + i % 3), 500)) == {1}


def test_tuner_ends_a_trial_at_its_first_very_slow_token():
    # one more thread than free CPUs: tokens 30x slower (the busy 2-core VM)
    times = {1: 0.012, 2: 0.400}
    ran = run_tuner(ThreadTuner(current=1, hi=2, busy_start=True), lambda n, i: times[n], 60)
    assert ran.count(2) == 1  # the transition token alone
    assert ran[9:] == [1] * 51


def test_tuner_tries_more_threads_only_when_a_cpu_is_free():
    free = [1]
    times = {1: 0.012, 2: 0.008}
    tuner = ThreadTuner(current=1, hi=2, busy_start=True, free=lambda: free[0])
    assert set(run_tuner(tuner, lambda n, i: times[n], 200)) == {1}  # never tried: no CPU free
    free[0] = 2
    ran = run_tuner(tuner, lambda n, i: times[n], 200)
    assert ran.count(2) > 120 and tuner.current == 2  # tried at its next check, and kept


def test_busy_ticks_sums_the_allowed_cpus():
    stat = [
        "cpu  300 0 30 500 5 0 3 9 0 0",
        "cpu0 100 1 10 200 2 0 1 4 0 0",
        "cpu1 200 2 20 300 3 0 2 5 0 0",
        "intr 12345",
    ]
    assert busy_ticks(stat, frozenset({0})) == 100 + 1 + 10 + 0 + 1 + 4
    assert busy_ticks(stat, frozenset({0, 1})) == 116 + 229
    assert busy_ticks(stat, frozenset({5})) is None


def test_recent_use_by_others_over_the_last_window(tmp_path):
    """A job that sleeps at the instant of the sample still counts by its recent CPU use."""
    proc = fake_proc(tmp_path, running=1)  # the instant sample: nobody else runnable
    now, own = [0.0], [0.0]

    def stat(busy0: int, busy1: int) -> None:
        (proc / "stat").write_text(
            f"cpu  0 0 0 0 0 0 0 0\ncpu0 {busy0} 0 0 9 0 0 0 0\ncpu1 {busy1} 0 0 9 0 0 0 0\n"
        )

    probes = Probes(
        proc=proc,
        cgroup=tmp_path / "cg",
        affinity=mask(0, 1),
        online=2,
        clock=lambda: now[0],
        own_cpu=lambda: own[0],
    )
    stat(0, 0)
    assert max_threads(probes) == 2  # starts the window
    now[0], own[0] = 1.0, 0.2  # 1 s later; we used 0.2 s of CPU, the machine 1.1 s
    stat(60, 50)
    assert probes.recent_others(frozenset({0, 1})) == pytest.approx(0.9)
    now[0], own[0] = 2.0, 0.3
    stat(70, 60)  # the next second: 0.2 s busy, 0.1 of it ours
    facts = probes.facts()
    assert facts.others == pytest.approx(0.1)
    assert choose_threads(facts) == 2
    now[0] = 2.01  # too short a window to count: the instant sample decides, the window grows
    assert probes.recent_others(frozenset({0, 1})) is None
    now[0], own[0] = 3.0, 0.3
    stat(170, 60)  # a sleeping indexer used a whole CPU over the last second
    assert auto_threads(probes) == 1
