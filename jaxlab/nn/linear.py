"""Dense layers whose kernel gradient XLA:CPU computes with its fast matrix product.

The kernel gradient of `y = x @ w` is `x^T g`, a contraction over the rows of `x` and of
the output gradient `g`. XLA:CPU hands that form (both operands contracted along their
major axis) to a generic Eigen contraction: on the 2-core machine of jaxlab's benchmarks
1.5-2.2x slower than PyTorch's on one core and 1.3-2.1x on two (20 products of `[2048, 64]^T
[2048, 64]` in one program: 266 us each, PyTorch 130 us, on one core; 174 against 82 us on
two). When `x^T` is copied first (one pass over `x`), the product is an ordinary
`[in, rows] x [rows, out]` matrix product, 1.3-1.6x faster (172 and 108-120 us there).

`matmul` and `dot_general` do that: the forward value is the plain product; the JVP
multiplies the kernel's tangent by a materialised `x^T` (`lax.optimization_barrier` keeps
XLA from folding the transpose back into the product), so that reverse mode, which
transposes the JVP, computes the kernel gradient as `copy(x^T) @ g`. It is a custom JVP,
not a custom VJP, so forward mode (`jax.jvp`, `jax.jacfwd`, Hessian-vector products) and
higher derivatives work too. Values and gradients equal the plain product's up to the
order of floating-point sums.

It applies on the CPU backend (the backend `jax.default_backend()` names when the function
is traced) to inputs of at most `TRANSPOSE_COPY_MAX_ROWS` rows; elsewhere, and for larger
inputs, it is `lax.dot_general`: GPU and TPU matrix units take transposed operands
directly (so the copy would only add work there; not measured), and on full graphs of ~10k
nodes the copy cost more than it saved (1.1 ms for a `[11840, 64]` GAT layer; a `[1728, 128]^T
[1728, 64]` gradient of a sampled graph took 0.43 -> 0.34 ms copied). On VectorNet's subgraph
(15,360 rows) copying made the one-core training step 56.5 -> 73.8 ms.

`Dense` is `flax.linen.Dense` with this `dot_general`: same parameters, names and
initialisers, so checkpoints are interchangeable. The CoditT5 training step at the shape of
its experiments' batches (tiny T5, 32 x 64 tokens, 32 kernel gradients a step) went from 82.7
to 72.0 ms on one core and from 57.7 to 46.7 ms on two (`python scripts/bench_coditt5.py
--shape tiny --vocab 2000 --batch 32 --src 48 --tgt 64`, experiments/coditt5/README.md).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
from jax import lax
from jax.custom_derivatives import SymbolicZero

__all__ = ["TRANSPOSE_COPY_MAX_ROWS", "Dense", "dot_general", "kernel_gradient", "matmul"]

# Up to this many rows (the product of the input's leading dimensions) the kernel gradient
# copies x^T first; larger inputs keep XLA's own form (see the module docstring).
TRANSPOSE_COPY_MAX_ROWS = 4096


def _product(x, w, precision=None):
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)


def _copies(x) -> bool:
    """Whether the kernel gradient over `x [..., in]`'s rows copies `x^T` first."""
    rows = x.size // x.shape[-1] if x.ndim and x.shape[-1] else 0
    return x.ndim >= 2 and 0 < rows <= TRANSPOSE_COPY_MAX_ROWS and jax.default_backend() == "cpu"


def _rows_transposed(x):
    """`x [..., in]` as a materialised `[in, rows]` (the barrier keeps XLA from folding the
    transpose into the product that reads it)."""
    return lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)


def kernel_gradient(x: jax.Array, g: jax.Array, precision: Any = None) -> jax.Array:
    """`sum over rows of x^T g` for `x [..., in]` and `g [..., out]` with the same leading
    dimensions: the kernel gradient of `x @ w` for the output gradient `g`, `[in, out]`,
    with `x^T` copied first where `matmul` copies it (for hand-written backward passes)."""
    if x.shape[:-1] != g.shape[:-1]:
        raise ValueError(f"kernel_gradient: x {x.shape} and g {g.shape} must share their leading dimensions")
    x_t = _rows_transposed(x) if _copies(x) else x.reshape(-1, x.shape[-1]).T
    return lax.dot_general(x_t, g.reshape(-1, g.shape[-1]), (((1,), (0,)), ((), ())), precision=precision)


def matmul(x: jax.Array, w: jax.Array, precision: Any = None) -> jax.Array:
    """`x @ w` for `x [..., in]` and `w [in, out]`, with the kernel gradient computed as
    `copy(x^T) @ g` on the CPU backend for at most `TRANSPOSE_COPY_MAX_ROWS` rows (see the
    module docstring); the plain product elsewhere."""
    if x.shape[-1:] != w.shape[:1] or w.ndim != 2:
        raise ValueError(f"matmul: expected x [..., in] and w [in, out], got {x.shape} and {w.shape}")
    if not _copies(x):
        return _product(x, w, precision)
    return _copy_transpose_matmul(x, w, precision)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _copy_transpose_matmul(x, w, precision):
    return _product(x, w, precision)


def _copy_transpose_jvp(precision, primals, tangents):
    x, w = primals
    x_dot, w_dot = tangents
    y = _product(x, w, precision)
    y_dot = None
    if not isinstance(x_dot, SymbolicZero):  # e.g. a first layer's input: no work for it
        y_dot = _product(x_dot, w, precision)
    if not isinstance(w_dot, SymbolicZero):
        w_part = lax.dot_general(_rows_transposed(x), w_dot, (((0,), (0,)), ((), ())), precision=precision)
        w_part = w_part.reshape(y.shape)
        y_dot = w_part if y_dot is None else y_dot + w_part
    return y, (SymbolicZero(jax.typeof(y).to_tangent_aval()) if y_dot is None else y_dot)


_copy_transpose_matmul.defjvp(_copy_transpose_jvp, symbolic_zeros=True)


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """`lax.dot_general`, taking `matmul`'s path for the products a Dense layer makes
    (`lhs [..., in]` contracted with `rhs [in, out]`, no batch dimensions); a drop-in for
    the `dot_general` argument of Flax's `Dense`."""
    (lc, rc), (lb, rb) = dimension_numbers
    if (tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb and rhs.ndim == 2
            and preferred_element_type is None and not kwargs and _copies(lhs)):
        return _copy_transpose_matmul(lhs, rhs, precision)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type, **kwargs)


class Dense(nn.Dense):
    """`flax.linen.Dense` with `jaxlab.nn.linear.dot_general`: the same layer (parameters,
    names, initialisers, values), whose kernel gradient is faster on the CPU backend."""

    dot_general: Any = dot_general
