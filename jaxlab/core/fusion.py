"""Fusion boundaries that XLA keeps.

XLA fuses the elementwise producers of an array into each of its consumers. Where one
array feeds many consumers (the kh * kw shifted views of a depthwise convolution) or a
consumer that reads it element by element through an index (a gather of rows), the
producers are recomputed per consumer or per element: a chain of pads and adds, a
masked normalisation, a concatenation of a dozen matrix products. `materialize(*xs)`
returns `xs` unchanged but computed once, as whole arrays in memory.

How: a conditional whose predicate XLA cannot fold (both branches return the values).
Fusion does not cross computations, and XLA:CPU removes `optimization_barrier` before
fusion, so a barrier would not do. Under `vmap` the conditional is kept on the whole
batched arrays (`custom_vmap`) with a predicate that is not batched; derivatives
(forward and reverse, any order) see the identity, so a boundary on a cotangent has to
be placed in a `custom_vjp` backward pass (as `jaxlab.nn.conv` and `jaxlab.coral.models`
do). Measured uses: `jaxlab.core.runtime`'s notes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["materialize"]


def materialize(*xs):
    """`xs` (a tuple) unchanged, each computed once before any of its consumers runs."""
    return _differentiable_boundary(xs)


@jax.custom_jvp
def _differentiable_boundary(xs):
    return _fusion_boundary(xs)


@_differentiable_boundary.defjvp
def _boundary_jvp(primals, tangents):
    return _fusion_boundary(primals[0]), tangents[0]


def _cond_identity(xs):
    # both branches return the values; the predicate only has to be one XLA cannot fold (an
    # integer or boolean array's `isfinite` is a constant, its comparison with 7 is not)
    nonempty = [v for v in xs if v.size]
    if not nonempty:  # nothing to compute
        return tuple(xs)
    first = nonempty[0].reshape(-1)[0]
    pred = jnp.isfinite(first) if jnp.issubdtype(first.dtype, jnp.inexact) else first.astype(jnp.int32) != 7
    return lax.cond(pred, lambda a: a, lambda a: tuple(v * jnp.ones((), v.dtype) for v in a), tuple(xs))


@jax.custom_batching.custom_vmap
def _fusion_boundary(xs):
    return _cond_identity(xs)


@_fusion_boundary.def_vmap
def _fusion_boundary_vmap(axis_size, in_batched, xs):
    del axis_size
    return _cond_identity(xs), in_batched[0]
