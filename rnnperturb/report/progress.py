"""Progress bars for training and sweeps: tqdm, quiet unless someone is watching.

``progress(iterable, total=..., desc=..., quiet=...)`` yields the items of
``iterable`` and draws a `tqdm <https://tqdm.github.io>`_ bar on stderr.

When a bar is drawn
    Only when the stream is a terminal, or a Jupyter (ipykernel) stream, where
    the carriage-return updates redraw one line in place. In a log file or a
    pipe nothing is written by default, so logs get no carriage-return spam.
    ``quiet=True`` (the command line's ``--quiet``) always silences it;
    ``force=True`` or the environment variable ``RNNPERTURB_PROGRESS=1`` draws
    it anyway (``RNNPERTURB_PROGRESS=0`` silences every bar). A forced bar on a
    stream that is not a terminal writes whole lines (newline-terminated, at
    most one every 10 s) instead of carriage returns.

Progress output never stops the work
    When the stream is missing (a closed stderr makes ``sys.stderr`` None),
    closed, full (``2>/dev/full``), a broken pipe, or raises anything else on
    write or flush -- or tqdm itself fails -- the bar silently turns itself off
    and the items keep coming. Exceptions raised by ``iterable`` itself are not
    touched.

Plain ``tqdm.tqdm`` is used, not ``tqdm.auto``: no ipywidgets import, no
widget warnings in plain runs.
"""
from __future__ import annotations

import os
import sys

__all__ = ["progress", "end_line"]

ENV = "RNNPERTURB_PROGRESS"
_LOG_INTERVAL = 10.0          # seconds between lines of a forced bar on a non-terminal stream
_TTY_INTERVAL = 0.2           # seconds between redraws on a terminal

_open_lines: set = set()      # ids of streams whose last progress line has no newline yet


def end_line(stream=None) -> None:
    """End a half-drawn progress line on ``stream`` (default stderr) so that the next
    message starts on its own line; never raises."""
    stream = sys.stderr if stream is None else stream
    if id(stream) in _open_lines:
        _open_lines.discard(id(stream))
        try:
            stream.write("\n")
        except Exception:
            pass


def _env_choice():
    """``True``/``False`` from ``RNNPERTURB_PROGRESS`` (1/on/true/yes, 0/off/false/no), else None."""
    v = os.environ.get(ENV, "").strip().lower()
    if v in ("1", "on", "true", "yes"):
        return True
    if v in ("0", "off", "false", "no"):
        return False
    return None


def _interactive(stream) -> bool:
    """Whether ``stream`` redraws a carriage-return line in place: a terminal or a Jupyter
    kernel's output stream. Never raises."""
    try:
        if type(stream).__module__.split(".")[0] == "ipykernel":
            return True
        return bool(stream.isatty())
    except Exception:
        return False


class _SafeStream:
    """File-like proxy handed to tqdm: swallows every write/flush error (then stays silent),
    keeps :func:`end_line`'s record of half-drawn lines, and in ``lines`` mode turns the
    carriage-return redraws into newline-terminated lines for logs."""

    def __init__(self, stream, lines: bool):
        self.stream = stream
        self.lines = lines
        self.broken = False
        self.muted = False
        self._open = False
        try:
            self.encoding = getattr(stream, "encoding", None) or "utf-8"
        except Exception:
            self.encoding = "utf-8"

    def _mark(self, text: str) -> None:
        if text:
            self._open = not text.endswith("\n")
            (_open_lines.add if self._open else _open_lines.discard)(id(self.stream))

    def write(self, s):
        if self.broken or self.muted or not s:
            return
        try:
            if self.lines:
                if s.startswith("\r"):
                    body = s.lstrip("\r").rstrip(" ")   # no redraw padding in a log
                    if not body.strip():          # a bare "clear the line": nothing in a log
                        return
                    s = ("\n" if self._open else "") + body
                s = s.replace("\r", "")
            self.stream.write(s)
            self._mark(s)
        except Exception:   # closed/full stream, broken pipe, anything else: drop the bar
            self.broken = True

    def flush(self):
        if self.broken or self.muted:
            return
        try:
            flush = getattr(self.stream, "flush", None)
            if flush is not None:
                flush()
        except Exception:
            self.broken = True

    def isatty(self):
        return not self.lines

    def fileno(self):                  # tqdm measures the terminal width through this
        return self.stream.fileno()


_BAR_CLASS = None


def _bar_class():
    """tqdm's bar without its monitor thread (set on a subclass, so the user's own tqdm
    bars are untouched); imported on first use."""
    global _BAR_CLASS
    if _BAR_CLASS is None:
        from tqdm import tqdm

        class _Bar(tqdm):
            monitor_interval = 0

        _BAR_CLASS = _Bar
    return _BAR_CLASS


def _width(stream) -> int:
    """Terminal width of ``stream``, 0 when unknown (a Jupyter stream, a pty of size 0x0);
    tqdm then draws its fixed-width bar instead of following the terminal."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except Exception:
        return 0


def _make_bar(total, desc, stream, lines):
    """A tqdm bar on a safe proxy of ``stream``, or ``(None, None)`` if tqdm cannot start."""
    try:
        safe = _SafeStream(stream, lines)
        bar = _bar_class()(total=total, desc=desc or None, file=safe, disable=False,
                           leave=True, mininterval=_LOG_INTERVAL if lines else _TTY_INTERVAL,
                           dynamic_ncols=not lines and _width(stream) > 0)
        return bar, safe
    except Exception:
        return None, None


def progress(iterable, *, total: int | None = None, desc: str = "", quiet: bool = False,
             stream=None, force: bool = False):
    """Iterate over ``iterable`` while drawing a tqdm progress bar.

    Parameters
    ----------
    iterable : iterable
        Its items are yielded unchanged, all of them, whatever happens to the bar.
    total : int, optional
        Number of items (tqdm takes ``len(iterable)`` when this is None and it has one).
    desc : str
        Label shown before the bar.
    quiet : bool
        If True, draw nothing (wins over everything else).
    stream : file-like, optional
        Where to draw (default ``sys.stderr`` at the time of the call). Write errors
        turn the bar off; they are never raised.
    force : bool
        Draw even when ``stream`` is not a terminal (whole lines, at most one every
        10 s). ``RNNPERTURB_PROGRESS=1`` does the same for every bar,
        ``RNNPERTURB_PROGRESS=0`` silences every bar.

    Yields
    ------
    The items of ``iterable``.
    """
    stream = sys.stderr if stream is None else stream
    env = _env_choice()
    if quiet or stream is None or env is False:
        yield from iterable
        return
    tty = _interactive(stream)
    if not (tty or force or env):
        yield from iterable
        return
    if total is None:
        try:
            total = len(iterable)
        except Exception:
            total = None
    bar, safe = _make_bar(total, desc, stream, lines=not tty)
    if bar is None:
        yield from iterable
        return
    finished = False
    try:
        for item in iterable:          # exceptions of the iterable itself propagate
            yield item
            if not safe.broken:
                try:
                    bar.update(1)
                except Exception:      # tqdm failed: no more bar, the items keep coming
                    safe.broken = True
        finished = True
    finally:
        if not finished:               # interrupted: leave the half-drawn line to end_line,
            safe.muted = True          # so that no stale bar follows an error message
        try:
            bar.close()
        except Exception:
            pass
