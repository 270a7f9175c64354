"""Progress bars: tqdm on process 0, quiet elsewhere and under CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

__all__ = ["progress", "enabled"]


def enabled() -> bool:
    import jax

    if os.environ.get("JAXLAB_PROGRESS", "").lower() in ("0", "false", "no"):
        return False
    if os.environ.get("CI") and not os.environ.get("JAXLAB_PROGRESS"):
        return False
    return jax.process_index() == 0 and (sys.stderr.isatty() or bool(os.environ.get("JAXLAB_PROGRESS")))


def progress(iterable: Iterable | int, desc: str = "", *, initial: int = 0, total: int | None = None,
             disable: bool | None = None):
    """A tqdm bar over `iterable` (or `range(iterable)`) showing steps/s and ETA."""
    from tqdm.auto import tqdm

    if isinstance(iterable, int):
        total = iterable if total is None else total
        iterable = range(initial, iterable)
    return tqdm(iterable, desc=desc, initial=initial, total=total,
                disable=(not enabled()) if disable is None else disable,
                unit="step", dynamic_ncols=True, smoothing=0.1)
