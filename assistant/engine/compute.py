"""One OS thread runs every llama.cpp graph in the process (no llama_cpp import here).

llama.cpp's CPU backend is built with OpenMP, and libgomp keeps a team of worker
threads for each thread that calls in. Once a second calling thread appears (a
TUI worker after the main thread, the question embedder next to the chat), the
first team stays alive, libgomp sees more threads than cores and throttles its
spin-waiting, and decode slows down for the rest of the process: measured on the
2-core dev VM with SmolLM2-135M, 2 threads, 160 tokens (2026-11-25): 127 tok/s
from one thread, 87-98 tok/s from a second one (0.70x), 35 tok/s with
OMP_WAIT_POLICY=active, 48 tok/s with passive. Sending every decode to one
long-lived thread keeps a single team whatever thread the caller is on; the hop
costs ~75 microseconds, about 3% of decode speed at 120 tokens/s (measured
against llama-bench), so a command that computes from its own thread only
(`assistant ask`, the plain chat, `bench`) claims that thread instead.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_ident: int | None = None
_claimed = False  # the compute thread is a program's own thread (it cannot take work from others)
_abandoned = threading.Event()  # the caller of the running work was interrupted (see run)


def _remember_ident() -> None:
    global _ident
    _ident = threading.get_ident()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="llama-compute", initializer=_remember_ident
            )
        return _pool


def claim_current_thread() -> bool:
    """Make the calling thread the compute thread, so its calls run inline (no hop).

    For commands that do all their compute on one thread. False (and nothing
    changes) when another thread already computes.
    """
    global _ident, _claimed
    with _lock:
        if _ident is not None and _ident != threading.get_ident():
            return False
        _ident, _claimed = threading.get_ident(), True
        return True


def submit(fn: Callable[..., T], *args: object) -> concurrent.futures.Future[T] | None:
    """Start ``fn(*args)`` on the compute thread so the caller can do other work meanwhile.

    None when that cannot overlap (the caller is the compute thread, or the compute
    thread is a claimed program thread): the caller then simply calls ``fn`` itself.
    """
    if threading.get_ident() == _ident or _claimed:
        return None
    return _executor().submit(fn, *args)


def run(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on the compute thread; inline when already there.

    If the caller is interrupted while waiting (Ctrl+C), the call still finishes
    before the exception goes on, so llama.cpp's state and the caller's agree on
    what was computed; ``abandoned()`` tells llama.cpp's abort callback to end it
    at its next graph node instead of running a long batch to its end.
    """
    future = submit(fn, *args)
    if future is None:  # here already, or a claimed thread that cannot take work (correct, only slower)
        return fn(*args)
    try:
        return future.result()
    except BaseException:
        if not future.cancel():  # already running: stop it soon, then wait for it
            _abandoned.set()
            try:
                concurrent.futures.wait([future])
            finally:
                _abandoned.clear()
        raise


def abandoned() -> bool:
    """The caller of the running work stopped waiting for it (llama.cpp should stop)."""
    return _abandoned.is_set()
