"""Ctrl+C that stops long work promptly, even while llama.cpp computes.

Python runs a signal handler on the main thread between two bytecodes. While the main thread
is inside llama.cpp, the only bytecodes it runs are those of ctypes callbacks (the log callback,
the abort callback llama.cpp asks between graph nodes), and an exception raised in a callback
is printed as "Exception ignored on calling ctypes callback function" and dropped: the
KeyboardInterrupt was lost and the work went on. So the handler that ``handling()`` installs
raises KeyboardInterrupt as usual, except inside a callback (``c_callback``), where it only
records the interrupt: the abort callback then ends the computation at its next graph node and
the code that called llama.cpp raises it (``check()``) where it unwinds as usual.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_pending = threading.Event()
_callbacks: set[CodeType] = set()
_signal = [signal.SIGINT]  # the signal the last interrupt came from (its exit status is 128 + it)


def c_callback(fn: F) -> F:
    """Mark a function that C code calls through ctypes: an interrupt inside it is deferred."""
    _callbacks.add(fn.__code__)
    return fn


def pending() -> bool:
    """An interrupt arrived inside a callback and was not raised yet (llama.cpp should stop)."""
    return _pending.is_set()


def check() -> None:
    """Raise a deferred interrupt now, in ordinary code (long loops call this too)."""
    if _pending.is_set():
        _pending.clear()
        raise KeyboardInterrupt


def _in_callback(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code in _callbacks:
            return True
        frame = frame.f_back
    return False


def exit_status() -> int:
    """What the process exits with after an interrupt: 130 for Ctrl+C, 143 for SIGTERM (128 + signal)."""
    return 128 + int(_signal[0])


def _handler(signum: int, frame: FrameType | None) -> None:
    _signal[0] = signal.Signals(signum)
    if _in_callback(frame):
        _pending.set()  # raising here would be printed and dropped by ctypes
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def _route(sig: signal.Signals, expected: tuple[Any, ...]) -> Iterator[bool]:
    """``sig`` through ``_handler`` for the duration, if this is the main thread and the signal's
    handler is one of ``expected`` (anything else was set on purpose and stays); yields whether it
    was routed. The first of ``expected`` is put back."""
    routed = threading.current_thread() is threading.main_thread() and signal.getsignal(sig) in expected
    if routed:
        signal.signal(sig, _handler)
    try:
        yield routed
    finally:
        if routed:
            signal.signal(sig, expected[0])


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """SIGINT through ``_handler`` for the duration (a program's main thread; an ignored SIGINT stays ignored)."""
    with _route(signal.SIGINT, (signal.default_int_handler,)) as routed:
        try:
            yield
        finally:
            if routed:
                _pending.clear()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a process manager stopping the job, ``kill PID``) handled like Ctrl+C for the duration:
    work that checkpoints on Ctrl+C checkpoints on it too. Main thread only; a SIGTERM handler set by
    someone else is left alone."""
    with _route(signal.SIGTERM, (signal.SIG_DFL, None)):
        yield
