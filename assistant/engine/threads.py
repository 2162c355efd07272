"""How many threads to give llama.cpp: the physical cores we may run on.

Hyper-threads share one core's vector units; llama.cpp decodes fastest with
one thread per physical core.
"""

from __future__ import annotations

import os
from functools import cache


@cache
def physical_cores() -> int:
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        allowed = set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            proc = phys = core = None
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    proc = int(value)
                elif key == "physical id":
                    phys = value
                elif key == "core id":
                    core = value
                elif not key and proc is not None:
                    if proc in allowed and core is not None:
                        cores.add((phys or "0", core))
                    proc = phys = core = None
            if proc is not None and proc in allowed and core is not None:
                cores.add((phys or "0", core))
    except OSError:
        pass
    return max(1, len(cores) if cores else len(allowed))
