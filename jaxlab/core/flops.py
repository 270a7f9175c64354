"""FLOPs of compiled functions (XLA cost analysis) and analytic MAC counters.

XLA counts about two FLOPs per multiply-add plus element-wise work; the analytic counters
of jaxlab (and the papers' budgets) count multiply-adds (MACs). Compare `2 * macs` with
`xla_flops` over convolution and dense layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["xla_flops", "cost_analysis", "conv_macs", "dense_macs"]


def cost_analysis(fn: Callable, *args: Any, **kwargs: Any) -> dict:
    """XLA's cost analysis of `jax.jit(fn)(*args, **kwargs)` as a dict.

    jaxlab's convolutions are traced as XLA convolutions here (`jaxlab.nn.conv.use("xla")`),
    whatever the backend: the CPU's patches path computes the padding taps as well, so
    its FLOPs would not be the convolution's.
    """
    from jaxlab.nn import conv  # the engine reads the layer library's switch only here

    with conv.use("xla"):
        compiled = jax.jit(fn).lower(*args, **kwargs).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returned one dict per computation
        cost = cost[0] if cost else {}
    return dict(cost or {})


def xla_flops(fn: Callable, *args: Any, **kwargs: Any) -> float:
    """FLOPs XLA attributes to one call of `fn` on these arguments."""
    return float(cost_analysis(fn, *args, **kwargs).get("flops", 0.0))


def conv_macs(h_out: int, w_out: int, c_in: int, c_out: int, kh: int, kw: int, groups: int = 1) -> int:
    """Multiply-adds of a 2-D convolution producing an `[h_out, w_out, c_out]` map."""
    return h_out * w_out * c_out * (c_in // groups) * kh * kw


def dense_macs(d_in: int, d_out: int, tokens: int = 1) -> int:
    """Multiply-adds of a dense layer applied to `tokens` vectors."""
    return tokens * d_in * d_out
