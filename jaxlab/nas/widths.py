"""Width index sets of weight-sharing supernets: prefix, bilateral and cyclic.

A layer of a supernet holds `C` channels; a sub-network uses `d <= C` of them. The
*scheme* says which ones (ViTAS spec, sec. 2.2):

  prefix     I(d)        = {0, ..., d-1}                      (OFA, AutoFormer, AutoSlim)
  bilateral  I_L(d)      = {0, ..., d-1},  I_R(d) = {C-d, ..., C-1}            (BCNet)
  cyclic     I(d; s)     = {(s + j) mod C : 0 <= j < d}                  (ViTAS v2)

Each set is available two ways:

* as a static NumPy index array (`index_set`), for slicing weights when a standalone
  sub-network is extracted, and
* as a {0, 1} mask of static length `C` (`width_mask`) whose width `d`, side and offset
  may be traced arrays, so that one compiled function serves every width.

`channel_usage` counts, for a list of candidate widths, how many candidates use each
channel; `usage_stats` summarises the counts (min, max, coefficient of variation).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

__all__ = [
    "SCHEMES",
    "LEFT",
    "RIGHT",
    "index_set",
    "width_mask",
    "channel_usage",
    "usage_stats",
    "default_cyclic_offsets",
]

SCHEMES = ("prefix", "bilateral", "cyclic")
LEFT, RIGHT = 0, 1


def _check(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown width scheme {scheme!r}; expected one of {SCHEMES}")


def index_set(total: int, width: int, scheme: str = "prefix", *, side: int = LEFT,
              offset: int = 0) -> np.ndarray:
    """Static channel indices `I(d)` (int32 `[d]`, increasing for prefix/bilateral).

    Args:
      total: `C`, channels held by the supernet layer.
      width: `d`, channels used by the sub-network, `0 <= d <= C`.
      scheme: "prefix", "bilateral" or "cyclic".
      side: for "bilateral", `LEFT` (0) or `RIGHT` (1); ignored otherwise.
      offset: for "cyclic", the window start `s`; ignored otherwise.
    """
    _check(scheme)
    total, width = int(total), int(width)
    if not 0 <= width <= total:
        raise ValueError(f"width {width} outside [0, {total}]")
    j = np.arange(width, dtype=np.int32)
    if scheme == "prefix" or (scheme == "bilateral" and int(side) == LEFT):
        return j
    if scheme == "bilateral":
        if int(side) != RIGHT:
            raise ValueError(f"side must be LEFT (0) or RIGHT (1), got {side}")
        return (total - width + j).astype(np.int32)
    return ((int(offset) + j) % total).astype(np.int32)


def width_mask(total: int, width, scheme: str = "prefix", *, side=LEFT, offset=0,
               dtype=jnp.float32) -> jnp.ndarray:
    """{0, 1} mask `[C]` of `I(d)`; `width`, `side`, `offset` may be traced scalars.

    `mask[c] = 1` iff `c` is in the index set, so `x * mask` equals scattering the
    sliced activations `x[..., I(d)]` back into `C` channels.
    """
    _check(scheme)
    c = jnp.arange(total)
    width = jnp.asarray(width)
    if scheme == "prefix":
        m = c < width
    elif scheme == "bilateral":
        m = jnp.where(jnp.asarray(side) == RIGHT, c >= total - width, c < width)
    else:
        m = jnp.mod(c - jnp.asarray(offset), total) < width
    return m.astype(dtype)


def default_cyclic_offsets(total: int, widths: Sequence[int]) -> np.ndarray:
    """Offsets `s_k = (sum_{j<k} d_j) mod C`: consecutive windows tile the ring."""
    widths = np.asarray(widths, dtype=np.int64)
    return (np.concatenate([[0], np.cumsum(widths)[:-1]]) % int(total)).astype(np.int32)


def channel_usage(total: int, widths: Sequence[int], scheme: str = "prefix", *,
                  offsets: Sequence[int] | None = None, both_sides: bool = True) -> np.ndarray:
    """Usage `u(c) = #{k : c in I_k}` over candidate widths `d_k` (float `[C]`).

    For "bilateral" with `both_sides`, each candidate runs a left and a right pass and
    counts 1/2 per pass (so the total equals the prefix scheme's, `sum_k d_k`).
    For "cyclic", `offsets` default to `default_cyclic_offsets(C, widths)`.
    """
    _check(scheme)
    u = np.zeros(int(total), dtype=np.float64)
    if scheme == "cyclic" and offsets is None:
        offsets = default_cyclic_offsets(total, widths)
    for k, d in enumerate(widths):
        if scheme == "bilateral" and both_sides:
            u[index_set(total, d, scheme, side=LEFT)] += 0.5
            u[index_set(total, d, scheme, side=RIGHT)] += 0.5
        else:
            off = 0 if offsets is None else int(offsets[k])
            u[index_set(total, d, scheme, side=LEFT, offset=off)] += 1.0
    return u


def usage_stats(usage: np.ndarray) -> dict:
    """Min, max, mean and coefficient of variation (std / mean) of a usage vector."""
    usage = np.asarray(usage, dtype=np.float64)
    mean = float(usage.mean())
    return {
        "min": float(usage.min()),
        "max": float(usage.max()),
        "mean": mean,
        "cv": float(usage.std() / mean) if mean > 0 else float("nan"),
    }
