"""Progress of a long command (``veilset build``, ``veilset audit``): one live bar on a terminal, a periodic
one-line log otherwise.

The front door makes a ``Factory`` from ``--progress`` and hands it down as data (the rooms never import this
module): ``factory(total, unit, stream)`` returns a reporter with ``update(done, note="")`` (``done`` absolute,
never more than ``total``) and ``close()``. Modes: ``bar`` (tqdm: done/total, rate, ETA), ``log`` (a line
``progress: 120/500 images (24%), 3.1 images/s, ETA 2 min`` every ``LOG_EVERY`` seconds and one at the end),
``none``, and ``auto`` (the default): ``bar`` when ``stream`` is a terminal, else ``log``.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable, TextIO

MODES = ("auto", "bar", "log", "none")
LOG_EVERY = 10.0  # seconds between two progress lines in log mode
LOG = logging.getLogger("veilset.progress")

Factory = Callable[..., Any]  # (total: int, unit: str, stream: TextIO | None = None) -> reporter


def format_eta(seconds: float) -> str:
    """``"8 s"``, ``"2 min"``, ``"1 h 05 min"`` (rounded up to the unit shown)."""
    seconds = max(0, int(seconds + 0.999))
    if seconds < 60:
        return f"{seconds} s"
    minutes = (seconds + 59) // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def describe(done: int, total: int, seconds: float, unit: str = "images", note: str = "") -> str:
    """``120/500 images (24%), 3.1 images/s, ETA 2 min`` (no rate or ETA before the first one is done)."""
    percent = 100 * done // total if total else 100
    text = f"{done}/{total} {unit} ({percent}%)"
    if done and seconds > 0:
        rate = done / seconds
        text += f", {rate:.2f} {unit}/s" if rate < 10 else f", {rate:.0f} {unit}/s"
        if done < total:
            text += f", ETA {format_eta((total - done) / rate)}"
    return f"{text} [{note}]" if note else text


class LogProgress:
    """A ``progress: ...`` line through ``emit`` (``LOG.info``) at most every ``every`` seconds, and at close."""

    def __init__(self, total: int, unit: str = "images", *, every: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic, emit: Callable[[str], None] | None = None) -> None:
        self.total, self.unit, self.every, self._clock = total, unit, every, clock
        self._emit = emit or (lambda line: LOG.info("%s", line))
        self._t0 = self._last = clock()
        self.done, self.note, self._shown = 0, "", -1

    def update(self, done: int, note: str = "") -> None:
        self.done, self.note = min(max(done, self.done), self.total), note or self.note
        now = self._clock()
        if now - self._last >= self.every:
            self._last = now
            self._show(now)

    def close(self) -> None:
        if self._shown != self.done:
            self._show(self._clock())

    def _show(self, now: float) -> None:
        self._shown = self.done
        self._emit("progress: " + describe(self.done, self.total, now - self._t0, self.unit, self.note))


class BarProgress:
    """A tqdm bar on ``stream``; log lines are written above it while it is shown (no torn bar)."""

    def __init__(self, total: int, unit: str = "images", stream: TextIO | None = None) -> None:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        stream = stream or sys.stderr
        sized = _columns(stream) > 0  # a terminal that reports no size (0 columns) would get an empty bar
        self._bar = tqdm(total=total, unit=unit.removesuffix("s"), file=stream, dynamic_ncols=sized, ncols=None if sized else 100,
                         smoothing=0.1, mininterval=0.5)
        self._redirect = logging_redirect_tqdm(tqdm_class=_bound_tqdm(tqdm, self._bar.fp))
        self._redirect.__enter__()

    @property
    def done(self) -> int:
        return int(self._bar.n)

    def update(self, done: int, note: str = "") -> None:
        done = min(done, int(self._bar.total))
        if note and note != self._bar.desc:
            self._bar.set_description_str(note, refresh=False)
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()
        self._redirect.__exit__(None, None, None)


def _columns(stream: Any) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def _bound_tqdm(tqdm: Any, fp: Any) -> Any:
    """tqdm whose ``write`` goes to the bar's stream (logging_redirect_tqdm calls ``tqdm_class.write(msg)``)."""

    class Bound(tqdm):  # type: ignore[misc, valid-type]
        @classmethod
        def write(cls, s: str, file: Any = None, end: str = "\n", nolock: bool = False) -> None:
            tqdm.write(s, file=fp, end=end, nolock=nolock)

    return Bound


class NoProgress:
    done = 0

    def update(self, done: int, note: str = "") -> None:
        self.done = done

    def close(self) -> None:
        pass


def resolve(mode: str, stream: TextIO | None = None) -> str:
    """``auto`` -> ``bar`` on a terminal, else ``log``; the other modes as they are (validated)."""
    if mode not in MODES:
        raise ValueError(f"--progress must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    try:
        return "bar" if stream.isatty() else "log"
    except (AttributeError, ValueError):
        return "log"


def factory(mode: str = "auto") -> Factory:
    """What the front door hands down: ``factory(mode)(total, unit, stream)`` -> a reporter."""
    resolve(mode)  # validated now, before the command starts

    def make(total: int, unit: str = "images", stream: TextIO | None = None) -> Any:
        chosen = resolve(mode, stream)
        if chosen == "bar":
            return BarProgress(total, unit, stream)
        if chosen == "log":
            return LogProgress(total, unit)
        return NoProgress()

    return make
