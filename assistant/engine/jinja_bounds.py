"""Bounds on chat template rendering: time, size of every value built, size of the output.

Chat templates come with downloaded models, so they are untrusted code. Jinja's sandbox
stops attribute tricks but not work: ``9**9**9`` (seconds of CPU in one C call),
``'a' * 3000000000`` (a memory error), nested ``range`` loops (minutes). Here:

- every operation that can build a big value in one C call is checked *before* it runs
  (``**``, ``*``, ``+``, ``%``, ``~``, every filter, every method call): nothing a template
  builds may weigh more than the render's limit (characters, counted through lists);
- the output is streamed and counted;
- a watchdog thread interrupts a render that runs too long (an asynchronous exception in
  the rendering thread: no tracing, so a normal render costs the same).
"""

from __future__ import annotations

import ctypes
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.nodes import Concat
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

RENDER_SECONDS = 2.0  # wall clock of one render; a normal one takes about a millisecond
MIN_LIMIT = 1_000_000  # characters any value (and the output) may reach, plus 4x the contents
MAX_INT_BITS = 100_000  # 9**9**9 has 1.2 billion bits


class TemplateRefused(Exception):
    """A template operation over the bounds; the message says which."""


class _Timeout(BaseException):
    """Raised asynchronously in a render past its deadline (BaseException: Jinja and the
    template's own error handling catch Exception, this must get through)."""


_state = threading.local()


def _limit() -> int:
    return getattr(_state, "limit", MIN_LIMIT)


def weight(value: Any, budget: int | None = None) -> int:
    """Characters a value turns into when printed, counted through containers; stops
    counting past ``budget`` (so a huge list costs no more than the budget to judge)."""
    if type(value) is str:  # the hot path: most checks see one string
        return len(value)
    budget = _limit() if budget is None else budget
    memo: dict[int, int] = getattr(_state, "memo", {})
    total, stack = 0, [value]
    while stack and total <= budget:
        v = stack.pop()
        kind = type(v)
        if kind is str or kind is bytes:
            total += len(v)
        elif kind is bool or v is None:
            total += 5
        elif kind is int:
            total += v.bit_length() // 3 + 1
        elif id(v) in memo:
            total += memo[id(v)]
        elif isinstance(v, str | bytes):
            total += len(v)
        elif isinstance(v, dict):
            total += 2 + len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple | set | frozenset):
            total += 2 + len(v)
            stack.extend(v)
        elif isinstance(v, Namespace):
            stack.append(v._Namespace__attrs)
        elif isinstance(v, int):
            total += v.bit_length() // 3 + 1
        else:
            total += 8
    return total


def _refuse_over(what: str, size: int) -> None:
    limit = _limit()
    if size > limit:
        raise TemplateRefused(f"{what} would be {size:,} characters, over the limit of {limit:,}")


def _check_ints(args: Iterable[Any], what: str) -> None:
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > _limit():
            raise TemplateRefused(f"{what} got the number {a:,}, over the limit of {_limit():,}")


_WIDTH = re.compile(r"\d+")


def _check_format_string(fmt: str, what: str) -> None:
    """Widths and precisions in a %- or {}-format string ('%01000000000d')."""
    _check_ints((int(m) for m in _WIDTH.findall(fmt) if len(m) > 6), what)


def _check_binop(op: str, left: Any, right: Any) -> None:
    if type(left) is str and type(right) is str and len(left) + len(right) <= MIN_LIMIT:
        return  # the hot path: templates join short strings with +
    ints = isinstance(left, int) and isinstance(right, int)
    if op == "**" and ints and right > 0 and abs(left) > 1:
        if abs(left).bit_length() * right > MAX_INT_BITS:
            raise TemplateRefused(f"{left}**{right} is too large a number")
    elif op == "*":
        if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateRefused("a product is too large a number")
        seq, n = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(n, int) and isinstance(seq, str | list | tuple) and n > 0:
            _refuse_over("a repeated value", weight(seq) * n)
    elif op == "+" and isinstance(left, str | list | tuple):
        _refuse_over("a concatenation", weight(left) + weight(right))
    elif op == "%" and isinstance(left, str):
        _check_format_string(left, "a %-format")
        _refuse_over("a %-format", weight(left) + weight(right))


def _estimate(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Size of results that are far bigger than the arguments (replace, indent, join)."""
    name = getattr(func, "__name__", "")
    owner = getattr(func, "__self__", None)
    if isinstance(owner, str):  # a bound str method: the string is the first argument
        args = (owner, *args)
    if name in ("replace", "do_replace") and len(args) >= 3 and all(isinstance(a, str) for a in args[:3]):
        s, old, new = (str(a) for a in args[:3])
        return len(s) + (s.count(old) if old else len(s) + 1) * max(0, len(new) - len(old))
    if name == "do_indent" and args and isinstance(args[0], str):
        width = args[1] if len(args) > 1 else kwargs.get("width", 4)
        return len(args[0]) + args[0].count("\n") * (weight(width) if isinstance(width, str) else int(width))
    if name in ("join", "do_join"):
        items, sep = (args[1], args[0]) if owner is not None else (args[0], args[1] if len(args) > 1 else "")
        if isinstance(items, list | tuple):
            return weight(items) + len(items) * weight(sep)
    return 0


def _checked(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> None:
    _check_ints(args, what)
    _check_ints(kwargs.values(), what)
    _refuse_over(what, weight(list(args)) + weight(list(kwargs.values())))
    _refuse_over(what, _estimate(func, args, kwargs))
    name = getattr(func, "__name__", "")
    if name in ("format", "format_map", "do_format"):
        owner = getattr(func, "__self__", None)
        _check_format_string(owner if isinstance(owner, str) else str(args[0] if args else ""), what)


def bounded_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    """A Jinja filter whose arguments and result stay within the bounds."""

    @functools.wraps(func)  # keeps jinja_pass_arg (context/environment filters)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        what = f"the filter {func.__name__.removeprefix('do_')}"
        _checked(func, args, kwargs, what)
        result = func(*args, **kwargs)
        _refuse_over(what, weight(result))
        return result

    return wrapper


class _BoundedCodeGenerator(CodeGenerator):
    @optimizeconst
    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        """``a ~ b`` goes through a checked join (it is no binary operator the sandbox sees)."""
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with every costly operation checked first."""

    intercepted_binops = frozenset(["**", "*", "+", "%"])
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._finalize_output, **options)
        self.filters = {name: bounded_filter(f) for name, f in self.filters.items()}

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``'{:>999999999}'.format(1)``: widths are checked when the method is looked up."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_string(value.__self__, "a {}-format")
        return wrapped

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        what = f"the call {getattr(__obj, '__name__', type(__obj).__name__)}()"
        _checked(__obj, args, kwargs, what)
        result = super().call(__context, __obj, *args, **kwargs)
        _refuse_over(what, weight(result))
        return result

    @staticmethod
    def bounded_concat(items: Iterable[Any]) -> str:
        items = list(items)
        _refuse_over("a ~ concatenation", weight(items))
        return "".join(str(x) for x in items)

    @staticmethod
    def _finalize_output(value: Any) -> Any:
        if type(value) is not str or len(value) > MIN_LIMIT:
            _refuse_over("a printed value", weight(value))
        return value


def render_bounded(chunks: Callable[[], Iterator[str]], limit: int, known: dict[int, int]) -> str:
    """Join a template's output chunks within ``limit`` characters and RENDER_SECONDS.

    ``known`` gives the weight of the inputs by id (the messages, alive during the render):
    filters that see them do not walk them again.
    """
    _state.limit = limit
    _state.memo = known
    job = _WATCHDOG.start(RENDER_SECONDS)
    try:
        try:
            out: list[str] = []
            size = 0
            for chunk in chunks():
                size += len(chunk)
                if size > limit:
                    raise TemplateRefused(f"its output passed the limit of {limit:,} characters")
                out.append(chunk)
            return "".join(out)
        finally:
            _WATCHDOG.end(job)
    except _Timeout:
        _WATCHDOG.end(job)  # in case the timeout landed in the finally above
        raise TemplateRefused(f"it ran for more than {RENDER_SECONDS:g} s") from None
    finally:
        del _state.limit, _state.memo


class _Watchdog:
    """One daemon thread that raises _Timeout in renders past their deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: dict[int, list[Any]] = {}  # id -> [deadline, thread id, fired]
        self._next = 0
        self._thread: threading.Thread | None = None
        self._idle = False  # waiting for no deadline: a new job must wake it

    def start(self, seconds: float) -> int:
        with self._cond:
            self._next += 1
            self._jobs[self._next] = [time.monotonic() + seconds, threading.get_ident(), False]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="template-watchdog", daemon=True)
                self._thread.start()
            elif self._idle:  # otherwise it wakes at an earlier deadline anyway (all are the same length)
                self._cond.notify()
            return self._next

    def end(self, job: int) -> None:
        with self._cond:
            entry = self._jobs.pop(job, None)
            if entry is not None and entry[2]:  # fired: drop the exception if still pending
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(entry[1]), None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                waiting = [e for e in self._jobs.values() if not e[2]]
                for entry in waiting:
                    if entry[0] <= now:
                        entry[2] = True
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(
                            ctypes.c_ulong(entry[1]), ctypes.py_object(_Timeout)
                        )
                deadlines = [e[0] - now for e in waiting if not e[2]]
                self._idle = not deadlines
                self._cond.wait(min(deadlines) if deadlines else None)


_WATCHDOG = _Watchdog()
