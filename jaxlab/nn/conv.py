"""Convolutions as patches and one matrix product, for the cases XLA:CPU runs slowly.

XLA:CPU runs a 2-D convolution and each of its gradients as an Eigen library call. On
ordinary layers that is close to PyTorch, but three cases are far off (measured in
`jaxlab.core.runtime`'s notes and `scripts/profile_conv.py`): depthwise convolutions,
gradients on output maps of a few pixels (XLA's simplifier turns them into batch-minor
layouts), and inputs with a single channel. There:

- an ungrouped convolution is computed as its patch tensor `[B, H', W', kh, kw, C]`
  (strided slices of the padded input) contracted with the kernel `[kh, kw, C, F]`: the
  forward pass and both gradients are single matrix products on the fast dot path, and
  the gathering and its transpose are slices, pads and adds that XLA fuses;
- a depthwise convolution is a sum of `kh * kw` shifted views times per-channel
  weights, elementwise, which XLA fuses into one loop (no patch tensor).

`conv_general_dilated` is a drop-in replacement for `jax.lax.conv_general_dilated` that
takes these paths on the CPU backend where they apply (2-D, `NHWC`/`HWIO`, no input or
kernel dilation, ungrouped or depthwise) and measured faster (`prefers_patches`), and
calls XLA's convolution otherwise (on the CPU with its gradients' operands behind fusion
boundaries, `_xla_bounded`). The choice is made per call at trace time, from
static shapes, so one compiled program mixes both; `JAXLAB_CONV` or `use(...)`
overrides it. `Conv` is `flax.linen.Conv` using it, with the same parameters
(checkpoints and `extract_subnet` functions carry over unchanged).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxlab.core.fusion import materialize as _materialize

__all__ = ["Conv", "conv_general_dilated", "conv_mode", "patches", "prefers_patches", "use"]

#: Largest kernel area (kh * kw) computed as patches; larger kernels go to XLA.
MAX_PATCH_AREA = 25


_MODES = ("auto", "xla", "patches")
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("jaxlab_conv_mode", default=None)


def conv_mode() -> str:
    """The implementation choice in effect: the innermost `use(...)` block, else the
    environment's `JAXLAB_CONV`: `auto` (the default: patches on the CPU backend where
    they measured faster, see `prefers_patches`), `xla` (never) or `patches` (wherever
    they apply, on every backend; for tests and measurements)."""
    mode = _override.get() or os.environ.get("JAXLAB_CONV", "auto")
    if mode not in _MODES:
        raise ValueError(f"JAXLAB_CONV must be 'auto', 'xla' or 'patches', got {mode!r}")
    return mode


@contextlib.contextmanager
def use(mode: str):
    """Traces the convolutions inside the block with `mode` (`auto`, `xla` or `patches`),
    for example `xla` where XLA's own convolution must be analysed (FLOPs counting)."""
    if mode not in _MODES:
        raise ValueError(f"conv mode must be 'auto', 'xla' or 'patches', got {mode!r}")
    token = _override.set(mode)
    try:
        yield
    finally:
        _override.reset(token)


def prefers_patches(in_channels_per_group: int, kernel_hw: Sequence[int], out_hw: Sequence[int],
                    depthwise: bool) -> bool:
    """The `auto` rule: patches for depthwise convolutions, for output maps of at most 4
    pixels, and for inputs of at most 9 values per window (a 3x3 kernel on one
    channel); XLA's convolution otherwise.

    Measured with `scripts/profile_conv.py` (value and gradients, batch 64, 2 cores):
    depthwise 3x3 and 5x5 2-8x faster as patches; 2x2 outputs 4x faster (XLA's
    simplifier rewrites those gradient convolutions into batch-minor layouts that
    Eigen runs at a few percent of peak); one input channel 2x faster; 3 to 64 input
    channels on 4x4 to 32x32 maps within 0.88-1.09x of XLA, so XLA keeps them (the
    patch tensor costs memory traffic).
    """
    kh, kw = kernel_hw
    return depthwise or out_hw[0] * out_hw[1] <= 4 or in_channels_per_group * kh * kw <= 9


def _pairs(padding, in_hw, k_hw, strides):
    if isinstance(padding, str):
        return lax.padtype_to_pads(in_hw, k_hw, strides, padding)
    return [tuple(p) for p in padding]


def _views(x, kernel_hw, strides, padding):
    """`(i, j, x_padded[:, i::s, j::s][:H', :W'])` for every kernel tap `(i, j)`."""
    kh, kw = kernel_hw
    sh, sw = strides
    b, h, w, c = x.shape
    (pt, pb), (pl, pr) = _pairs(padding, (h, w), (kh, kw), (sh, sw))
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    ho = (h + pt + pb - kh) // sh + 1
    wo = (w + pl + pr - kw) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, lax.slice(x, (0, i, j, 0), (b, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c),
                                  (1, sh, sw, 1))


def patches(x: jax.Array, kernel_hw: Sequence[int], strides: Sequence[int] = (1, 1),
            padding: str | Sequence[tuple[int, int]] = "SAME") -> jax.Array:
    """`[B, H, W, C] -> [B, H', W', kh, kw, C]`: the input window of every output pixel.

    `patches(x, ...)[b, i, j].reshape(-1) @ kernel.reshape(-1, F)` (kernel `HWIO`) is
    the convolution's output at `(b, i, j)`.
    """
    kh, kw = kernel_hw
    views = [v for _, _, v in _views(x, kernel_hw, strides, padding)]
    b, ho, wo, c = views[0].shape
    return jnp.stack(views, axis=3).reshape(b, ho, wo, kh, kw, c)


def _applies(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
             feature_group_count, batch_group_count) -> bool:
    mode = conv_mode()
    if mode == "xla" or (mode == "auto" and jax.default_backend() != "cpu"):
        return False
    if lhs.ndim != 4 or batch_group_count != 1:
        return False
    if any(d != 1 for d in (lhs_dilation or (1, 1))) or any(d != 1 for d in (rhs_dilation or (1, 1))):
        return False
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if dn != lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC")):
        return False
    kh, kw, cin_per_group, _ = rhs.shape
    depthwise = feature_group_count > 1 and cin_per_group == 1 and feature_group_count == lhs.shape[-1]
    if kh * kw > MAX_PATCH_AREA or not (feature_group_count == 1 or depthwise):
        return False
    if mode == "patches":
        return True
    (pt, pb), (pl, pr) = _pairs(padding, lhs.shape[1:3], (kh, kw), window_strides)
    out_hw = ((lhs.shape[1] + pt + pb - kh) // window_strides[0] + 1,
              (lhs.shape[2] + pl + pr - kw) // window_strides[1] + 1)
    return prefers_patches(cin_per_group, (kh, kw), out_hw, depthwise)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
    """`jax.lax.conv_general_dilated`, computed as patches times the kernel where that
    applies on the CPU (see the module docstring); the same values up to float rounding."""
    if not _applies(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                    feature_group_count, batch_group_count):
        static = (tuple(window_strides), _hashable(padding), _tuple_or_none(lhs_dilation),
                  _tuple_or_none(rhs_dilation), _hashable_dn(dimension_numbers), feature_group_count,
                  batch_group_count, precision, preferred_element_type)
        if conv_mode() == "auto" and jax.default_backend() == "cpu":
            return _xla_bounded(lhs, rhs, static)
        return _xla_conv(lhs, rhs, static)
    kh, kw, cin_g, f = rhs.shape
    if feature_group_count == 1:
        p = patches(lhs, (kh, kw), tuple(window_strides), padding)  # [B, H', W', kh, kw, C]
        return jnp.einsum("bhwijc,ijcf->bhwf", p, rhs, precision=precision,
                          preferred_element_type=preferred_element_type)
    y = _depthwise(lhs, rhs, tuple(window_strides), _hashable(padding))
    return y if preferred_element_type is None else y.astype(preferred_element_type)


def _hashable(padding):
    return padding if isinstance(padding, str) else tuple(tuple(int(v) for v in p) for p in padding)


def _tuple_or_none(v):
    return None if v is None else tuple(v)


def _hashable_dn(dn):
    return tuple(dn) if isinstance(dn, list) else dn


def _xla_conv(x, w, static):
    strides, padding, lhs_dil, rhs_dil, dn, groups, batch_groups, precision, out_type = static
    return lax.conv_general_dilated(x, w, strides, padding, lhs_dil, rhs_dil, dn, groups, batch_groups,
                                    precision=precision, preferred_element_type=out_type)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _xla_bounded(x, w, static):
    """XLA's convolution, whose gradients read their operands behind fusion boundaries.

    XLA:CPU computes the kernel gradient as a convolution over transposed operands
    (input channels as the batch, the batch as the features) and fuses the elementwise
    producers of the input and of the output cotangent into those transposes. Such a
    fused transposing loop runs at a tenth of the speed of a plain transpose: for a
    `[16, 32, 32, 64]` input modulated per sample (`x * s`), 6.6 ms against 0.6 ms on one
    core. Here the input is materialised once (`_materialize`) and the tangent of the
    output passes an identity conditional that is linear, so that its transpose puts the
    same boundary on the cotangent; the transposes are then plain copies. StyleGAN2
    generator forward + backward at 32 px, batch 16, one core, host allocator tuned:
    121-123 -> 104 ms (median wall time of 20 calls under `jaxlab.core.profiling.op_times`,
    two runs each way, alternating); the transposes went from 26 to 7 ms. About neutral
    where producers are cheap: the classifier's train step 8.17 -> 8.16 ms
    (`scripts/bench_core.py --threads 1`), MH-UI's PGD-20 0.33 -> 0.32 s
    (`scripts/bench_mhui.py --threads 1`).

    A custom JVP (not a custom VJP), so forward mode (`jax.jvp`, `jax.jacfwd`) works too.
    """
    return _xla_conv(x, w, static)


def _linear_boundary(t):
    """`t`, computed once: an identity conditional, linear in `t` (its transpose is the
    same conditional on the cotangent). The predicate is a constant behind an
    optimization barrier, so that XLA does not fold the conditional away, and it is
    never batched, so that `vmap` keeps a conditional rather than a select."""
    pred = lax.optimization_barrier(jnp.array(True))
    return lax.cond(pred, lambda a: a, lambda a: a * 1, t)


def _xla_bounded_jvp(static, primals, tangents):
    x, w = primals
    dx, dw = tangents
    (x,) = _materialize(x)
    y = _xla_conv(x, w, static)
    zero = jax.custom_derivatives.SymbolicZero
    parts = [] if isinstance(dx, zero) else [_xla_conv(dx, w, static)]
    if not isinstance(dw, zero):
        parts.append(_xla_conv(x, dw, static))
    if not parts:
        return y, jnp.zeros_like(y)
    dy = parts[0] if len(parts) == 1 else parts[0] + parts[1]
    return y, _linear_boundary(dy)


_xla_bounded.defjvp(_xla_bounded_jvp, symbolic_zeros=True)


def _depthwise_sum(x, kernel, strides, padding):
    """A depthwise convolution as a sum of `kh * kw` shifted views times per-channel
    weights, elementwise (output channel f reads input channel f // multiplier)."""
    kh, kw, _, f = kernel.shape
    mult = f // x.shape[-1]
    y = None
    for i, j, view in _views(x, (kh, kw), strides, padding):
        if mult > 1:
            view = jnp.repeat(view, mult, axis=-1)
        term = view * kernel[i, j, 0]
        y = term if y is None else y + term
    return y


def _depthwise_once(x, kernel, strides, padding):
    """`(x, y)`: the input and the shifted-sum output, each computed once (`_materialize`)."""
    (x,) = _materialize(x)
    (y,) = _materialize(_depthwise_sum(x, kernel, strides, padding))
    return x, y


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise(x, kernel, strides, padding):
    return _depthwise_once(x, kernel, strides, padding)[1]


def _depthwise_fwd(x, kernel, strides, padding):
    x, y = _depthwise_once(x, kernel, strides, padding)
    return y, (x, kernel)


def _depthwise_bwd(strides, padding, res, g):
    """Both gradients as shifted sums and per-tap reductions. Autodiff of
    `_depthwise_sum` would instead materialise one padded input-sized array per kernel
    tap and add them (25 arrays of the input's size for a 5x5 kernel).

    Where the convolution sits between normalisations inside a large program (the
    masked ScaleNet supernet), XLA:CPU would fuse the producers of `x` and `g` into each
    of the kh * kw reductions and recompute them per tap; `_materialize` stops that
    (masked supernet train step 121 -> 34 ms, `python scripts/bench_scalenet.py`)."""
    x, kernel = res
    x, g = _materialize(x, g)
    kh, kw, _, f = kernel.shape
    b, h, w, c = x.shape
    mult = f // c
    sh, sw = strides
    ho, wo = g.shape[1:3]
    (pt, _), (pl, _) = _pairs(padding, (h, w), (kh, kw), strides)
    # dx = the full correlation of the stride-dilated g with the flipped kernel
    lo_h, lo_w = kh - 1 - pt, kw - 1 - pl
    hi_h = h + kh - 1 - lo_h - (ho - 1) * sh - 1
    hi_w = w + kw - 1 - lo_w - (wo - 1) * sw - 1
    gd = lax.pad(g, jnp.zeros((), g.dtype), ((0, 0, 0), (lo_h, hi_h, sh - 1), (lo_w, hi_w, sw - 1), (0, 0, 0)))
    dx = None
    for i, j, view in _views(gd, (kh, kw), (1, 1), "VALID"):
        term = view * kernel[kh - 1 - i, kw - 1 - j, 0]
        dx = term if dx is None else dx + term
    if mult > 1:
        dx = dx.reshape(b, h, w, c, mult).sum(-1)
    # dkernel[i, j] = sum over batch and pixels of (tap (i, j) of x) * g
    xr = jnp.repeat(x, mult, axis=-1) if mult > 1 else x
    taps = [jnp.sum(view * g, axis=(0, 1, 2)) for _, _, view in _views(xr, (kh, kw), strides, padding)]
    dk = jnp.stack(taps).reshape(kh, kw, 1, f)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


class Conv(nn.Conv):
    """`flax.linen.Conv` whose convolution is `jaxlab.nn.conv.conv_general_dilated`
    (patches and one matrix product on CPU for small kernels; XLA's convolution
    elsewhere). Same attributes and parameters as `flax.linen.Conv`."""

    conv_general_dilated: Any = conv_general_dilated
