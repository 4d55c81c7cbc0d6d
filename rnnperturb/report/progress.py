"""A minimal progress bar for training and sweeps (stderr, can be silenced).

No third-party dependency: ``progress(iterable, total=..., desc=..., quiet=...)``
yields the items and redraws one line on stderr at most every 0.2 s.

Progress output never stops the work: when the stream is missing (a closed
stderr makes ``sys.stderr`` None), closed, full (``2>/dev/full``) or raises
anything else on write or flush, the bar silently turns itself off and the
items keep coming.
"""
from __future__ import annotations

import sys
import time

__all__ = ["progress", "end_line"]

_open_lines: set = set()   # ids of streams whose last progress line has no newline yet


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


def progress(iterable, *, total: int | None = None, desc: str = "", quiet: bool = False,
             stream=None):
    """Iterate over ``iterable`` while drawing a progress bar.

    Parameters
    ----------
    iterable : iterable
    total : int, optional
        Number of items (taken from ``len(iterable)`` when possible).
    desc : str
        Label shown before the bar.
    quiet : bool
        If True, draw nothing.
    stream : file-like, optional
        Where to draw (default ``sys.stderr``). Write errors disable the bar;
        they are never raised.
    """
    stream = sys.stderr if stream is None else stream
    if quiet or stream is None:
        yield from iterable
        return
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    t0 = last = time.perf_counter()
    i = 0
    broken = False
    drawn = -1

    def draw(i, final=False):
        nonlocal broken, drawn
        if broken:
            return
        try:
            if final and i == drawn:      # already on screen: just end the line
                _open_lines.discard(id(stream))
                stream.write("\n")
                stream.flush()
                return
            _draw(i, final)
            drawn = i
        except Exception:   # closed/full stream, or anything else: drop the bar, keep going
            broken = True

    def _draw(i, final=False):
        el = time.perf_counter() - t0
        if total:
            frac = i / total
            bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
            eta = el / i * (total - i) if i else 0.0
            msg = f"\r{desc} [{bar}] {i}/{total} {el:6.1f}s eta {eta:6.1f}s"
        else:
            msg = f"\r{desc} {i} {el:6.1f}s"
        if final:
            _open_lines.discard(id(stream))
        else:
            _open_lines.add(id(stream))
        stream.write(msg + ("\n" if final else ""))
        stream.flush()

    for item in iterable:
        yield item
        i += 1
        now = time.perf_counter()
        if now - last > 0.2:
            draw(i)
            last = now
    draw(i, final=True)
