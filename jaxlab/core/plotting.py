"""Figures: matplotlib with the Agg backend and constrained layout, saved into a workdir.

    fig, axes = plotting.subplots(1, 2, figsize=(9, 3.2))
    ...
    plotting.save_figure(fig, workdir, "training")   # workdir/figures/training.png
"""

from __future__ import annotations

import pathlib
from typing import Any

__all__ = ["subplots", "save_figure"]


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any):
    """`matplotlib.pyplot.subplots` on the Agg backend with constrained layout (labels,
    ticks and legends never overlap neighbouring axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Any, workdir: str | pathlib.Path, name: str, dpi: int = 120) -> pathlib.Path:
    """Saves a figure as `workdir/figures/<name>.png` (process 0 only) and closes it."""
    import matplotlib.pyplot as plt

    from jaxlab.core import distributed

    path = pathlib.Path(workdir) / "figures" / f"{name}.png"
    if distributed.is_primary():
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
