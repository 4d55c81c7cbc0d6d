"""A minimal progress bar for training and sweeps (stderr, can be silenced).

No third-party dependency: ``progress(iterable, total=..., desc=..., quiet=...)``
yields the items and redraws one line on stderr at most every 0.2 s.
"""
from __future__ import annotations

import sys
import time

__all__ = ["progress"]


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
        Where to draw (default ``sys.stderr``).
    """
    if quiet:
        yield from iterable
        return
    stream = sys.stderr if stream is None else stream
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    t0 = last = time.perf_counter()
    i = 0

    def draw(i, final=False):
        el = time.perf_counter() - t0
        if total:
            frac = i / total
            bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
            eta = el / i * (total - i) if i else 0.0
            msg = f"\r{desc} [{bar}] {i}/{total} {el:6.1f}s eta {eta:6.1f}s"
        else:
            msg = f"\r{desc} {i} {el:6.1f}s"
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
