"""Analytic multiply-add (MAC) counting and its cross-check against XLA.

Budgets of NAS papers count multiply-adds. `MacCounter` accumulates the MACs of the
convolutions and dense layers of a network analytically. `xla_conv_dense_flops` measures
the same quantity from XLA: it runs a Linen model once under
`flax.linen.intercept_methods`, records every `nn.Conv` / `nn.Dense` call with its input
shape, compiles each distinct layer alone and sums XLA's cost-analysis FLOPs. For a
bias-free layer XLA counts 2 FLOPs per MAC, so `2 * macs ~= xla_conv_dense_flops`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core.flops import conv_macs, dense_macs, xla_flops

__all__ = ["conv_macs", "dense_macs", "same_out", "same_taps", "xla_conv_dense_flops", "layer_calls"]


def same_out(size: int, stride: int) -> int:
    """Spatial size after a 'SAME'-padded strided conv: `ceil(size / stride)`."""
    return -(-int(size) // int(stride))


@functools.cache
def _same_taps(size: int, kernel: int, stride: int) -> int:
    out = same_out(size, stride)
    pad_lo = max((out - 1) * stride + kernel - size, 0) // 2
    pos = np.arange(out)[:, None] * stride - pad_lo + np.arange(kernel)[None, :]
    return int(((pos >= 0) & (pos < size)).sum())


def same_taps(size, kernel, stride) -> np.ndarray:
    """Kernel taps inside the input, summed over the outputs of one spatial axis of a
    'SAME' conv (`out * kernel` when padding is counted). XLA's cost analysis counts
    only these, so `sum = taps_h * taps_w * c_in/groups * c_out` matches it exactly.
    Vectorised over array arguments."""
    f = np.vectorize(lambda n, k, s: _same_taps(int(n), int(k), int(s)), otypes=[np.int64])
    return f(size, kernel, stride)


def layer_calls(model: nn.Module, variables: Any, *args, method: str | None = None,
                **kwargs) -> list[tuple[nn.Module, tuple]]:
    """Every `nn.Conv` and `nn.Dense` call of `model.apply`: (module clone, input shape)."""
    calls = []

    def interceptor(next_fun, args_, kwargs_, context):
        mod = context.module
        if context.method_name == "__call__" and isinstance(mod, (nn.Conv, nn.Dense)):
            x = args_[0]
            calls.append((mod.clone(parent=None), tuple(x.shape), x.dtype))
        return next_fun(*args_, **kwargs_)

    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda v, *a: model.apply(v, *a, mutable=True, **kwargs), variables, *args)
    return calls


def xla_conv_dense_flops(model: nn.Module, variables: Any, *args, **kwargs) -> float:
    """Sum of XLA cost-analysis FLOPs over the conv and dense layers of one forward.

    Each distinct (layer config, input shape) is compiled alone once and counted as often
    as it is called.
    """
    cache: dict = {}
    total = 0.0
    for mod, shape, dtype in layer_calls(model, variables, *args, **kwargs):
        key = (repr(mod), shape)
        if key not in cache:
            x = jnp.zeros(shape, dtype)
            shapes = jax.eval_shape(mod.init, jax.random.key(0), x)
            v = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
            cache[key] = xla_flops(lambda v_, x_: mod.apply(v_, x_), v, x)
        total += cache[key]
    return total
