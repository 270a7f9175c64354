"""Evaluation over a whole array dataset in fixed-size batches that compile once.

The last batch is padded to the batch size and masked, so `jax.jit` sees one shape for
every batch of every evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["padded_batches", "batched_sum"]


def padded_batches(arrays: Any, batch_size: int):
    """Yields `(batch, mask)`: `batch` a pytree of `[batch_size, ...]` slices of `arrays`
    (the last padded by repeating row 0), `mask` `[batch_size]` bool, True on real rows."""
    leaves = jax.tree.leaves(arrays)
    n = len(leaves[0])
    if any(len(x) != n for x in leaves):
        raise ValueError(f"arrays of different lengths: {[len(x) for x in leaves]}")
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        mask = idx < n
        idx = np.where(mask, idx, 0)
        yield jax.tree.map(lambda x: np.asarray(x)[idx], arrays), mask


def batched_sum(fn: Callable[..., Mapping[str, jax.Array]], arrays: Any, batch_size: int,
                *args: Any) -> dict[str, float]:
    """Means over the dataset of per-example values.

    Args:
      fn: `(*args, batch) -> {name: [batch_size] values}`, jitted by the caller (it sees
        one shape only).
      arrays: a pytree of arrays with a common leading length N.
      batch_size: rows per call.
      *args: passed first to `fn` (parameters).

    Returns:
      `{name: sum over the N real rows / N}`.
    """
    totals: dict[str, Any] = {}
    n = 0
    for batch, mask in padded_batches(arrays, batch_size):
        out = fn(*args, batch)
        m = jnp.asarray(mask)
        for k, v in out.items():
            totals[k] = totals.get(k, 0.0) + jnp.sum(jnp.where(m, v, 0.0))
        n += int(mask.sum())
    return {k: float(v) / n for k, v in totals.items()}
