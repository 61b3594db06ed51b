"""Progress reporting that works on a terminal and in a log file.

:func:`progress` returns a tqdm bar when stderr is a terminal. When stderr is
not a terminal (piped to a file, a batch job's log, CI), a redrawn bar is
useless: carriage returns pile up on one line, and tqdm shows nothing between
its first and last refresh. There it returns a :class:`PlainProgress`, which
prints one ordinary line (in tqdm's format) each time another 10% is done and,
from a background timer, at least every 30 seconds while the job runs, even
when a single step takes longer than that.

Example:
    >>> from shapnet.progress import progress
    >>> total = 0
    >>> for i in progress(range(3), desc="demo", disable=True):
    ...     total += i
    >>> total
    3
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from typing import IO, Any

__all__ = ["PlainProgress", "progress"]

#: Plain mode: print a line each time this fraction of ``total`` is done.
STEP_FRACTION = 0.1
#: Plain mode: print a line at least this often (seconds) while a job runs.
INTERVAL = 30.0


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    **kwargs: Any,
) -> Any:
    """A progress bar: tqdm on a terminal, plain lines otherwise.

    Args:
        iterable: What to iterate over (optional: without it, call
            ``update(n)`` yourself, as with tqdm).
        total: Number of expected steps; taken from ``len(iterable)`` when
            possible. Without a total, plain mode prints by time only.
        desc: Prefix of every line, e.g. ``"roar cells"``.
        unit: Name of one step, e.g. ``"cell"``, ``"batch"``.
        **kwargs: Passed to tqdm on a terminal (``initial``, ``disable``,
            ``leave``, ...). Plain mode honours ``initial``, ``disable`` and
            ``file`` (default ``sys.stderr``), plus its own ``interval``
            (seconds between time-based lines, default 30) and
            ``step_fraction`` (default 0.1); tqdm-only options are ignored.

    Returns:
        A ``tqdm.tqdm`` or a :class:`PlainProgress`; both support iteration,
        ``update(n)``, ``set_postfix(...)``, ``set_description(...)``,
        ``write(s)``, ``close()`` and use as a context manager.
    """
    file = kwargs.get("file", sys.stderr)
    if _is_terminal(file):
        from tqdm.auto import tqdm

        for own in ("interval", "step_fraction"):
            kwargs.pop(own, None)
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, total=total, desc=desc, unit=unit, **kwargs)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, **kwargs)


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # closed or file-like objects without isatty
        return False


class PlainProgress:
    """tqdm-compatible progress that prints whole lines (for logs and pipes).

    A line is printed when the bar opens, each time another ``step_fraction``
    of ``total`` is done, at least every ``interval`` seconds while it is open
    (a daemon timer thread, so a single long step still shows signs of life),
    and once when it closes. Lines use tqdm's format, e.g.
    ``roar cells:  40%|####      | 4/10 [00:12<00:18, 3.00s/cell]`` (ASCII bar, safe in any log)..
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        initial: float = 0,
        disable: bool = False,
        file: IO[str] | None = None,
        interval: float = INTERVAL,
        step_fraction: float = STEP_FRACTION,
        **_tqdm_only: Any,
    ) -> None:
        if total is None and isinstance(iterable, Sized):
            try:
                total = len(iterable)
            except TypeError:
                total = None
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if not 0 < step_fraction <= 1:
            raise ValueError(f"step_fraction must be in (0, 1], got {step_fraction!r}")
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.disable = bool(disable)
        self.postfix = ""
        self._file = file if file is not None else sys.stderr
        self._interval = float(interval)
        self._step = float(step_fraction)
        self._start = time.monotonic()
        self._initial = initial
        self._lock = threading.Lock()
        self._closed = False
        self._last_print = self._start
        self._last_n: float | None = None
        self._last_postfix = ""
        self._next_mark = self._mark_after(self.n)
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if self.disable:
            return
        self._print()
        self._timer = threading.Thread(target=self._tick, name="shapnet-progress", daemon=True)
        self._timer.start()

    # -- tqdm interface ---------------------------------------------------- #
    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress bar has no iterable; call update(n) instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("progress bar without a total has no len()")
        return int(self.total)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """Advance by ``n`` steps; prints a line when another 10% is done."""
        with self._lock:
            self.n += n
            if self.disable or self._closed:
                return
            if self._next_mark is not None and self.n >= self._next_mark:
                self._next_mark = self._mark_after(self.n)
                self._print_locked()

    def set_postfix(
        self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any
    ) -> None:
        """Text after the counts, ``key=value`` pairs, as in tqdm."""
        items = dict(ordered_dict or {}, **kwargs)
        self.set_postfix_str(", ".join(f"{k}={_fmt(v)}" for k, v in items.items()))

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def write(self, s: str) -> None:
        """Print a message line (tqdm's ``write``; no bar to protect here)."""
        with self._lock:
            print(s, file=self._file, flush=True)

    def refresh(self) -> None:
        """Print the current state now."""
        with self._lock:
            if not (self.disable or self._closed):
                self._print_locked()

    def close(self) -> None:
        """Stop the timer and print the final line (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            if not self.disable and (self.n != self._last_n or self.postfix != self._last_postfix):
                self._print_locked()

    # -- internals --------------------------------------------------------- #
    def _mark_after(self, n: float) -> float | None:
        """The next count at which a whole ``step_fraction`` of ``total`` is crossed."""
        if not self.total:
            return None
        step = self._step * self.total
        return (int(n / step + 1e-9) + 1) * step

    def _tick(self) -> None:
        while not self._stop.wait(self._interval / 4):
            with self._lock:
                if self._closed:
                    return
                if time.monotonic() - self._last_print >= self._interval:
                    self._print_locked()

    def _print(self) -> None:
        with self._lock:
            self._print_locked()

    def _print_locked(self) -> None:
        from tqdm import tqdm

        now = time.monotonic()
        line = tqdm.format_meter(
            self.n,
            self.total,
            now - self._start,
            ncols=80,
            prefix=self.desc,
            ascii=True,
            unit=self.unit,
            postfix=self.postfix or None,
            initial=self._initial,
        )
        self._last_print, self._last_n, self._last_postfix = now, self.n, self.postfix
        try:
            print(line, file=self._file, flush=True)
        except ValueError:  # the stream was closed under us (interpreter exit); nothing to report to
            self._stop.set()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
