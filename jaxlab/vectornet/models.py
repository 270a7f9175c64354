"""VectorNet's Linen modules (paper §3.2-3.3): polyline subgraph, global graph, decoders.

Inputs are the padded layout of `polylines.vectorize`, batched: vectors `[B, P, V, F]`,
vector mask `[B, P, V]`, polyline kinds `[B, P]` (row 0 the target).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.core.fusion import materialize
from jaxlab.nn.attention import dot_product_attention, padding_mask
from jaxlab.nn.linear import Dense, kernel_gradient
from jaxlab.vectornet.polylines import AGENT, LANE, PAD, TARGET

__all__ = ["SubgraphLayer", "PolylineSubgraph", "dense_ln_relu_pool", "GlobalGraph", "VectorNet", "context_mask",
           "masked_max"]


def masked_max(h: jax.Array, mask: jax.Array, axis: int) -> jax.Array:
    """Max of `h` over `axis` where `mask` (broadcast on the last axis) is True; 0 where
    no entry is valid (the analogue of jraph's `segment_max_or_constant`: no -inf, finite
    gradients on padding)."""
    m = mask[..., None]
    big = jnp.finfo(h.dtype).min
    out = jnp.max(jnp.where(m, h, big), axis=axis)
    return jnp.where(jnp.any(m, axis=axis), out, jnp.zeros((), h.dtype))


class SubgraphLayer(nn.Module):
    """Eq. 2: v' = concat(g_enc(v), maxpool_j g_enc(v_j)) over the vectors of a polyline.

    g_enc is Dense -> LayerNorm -> ReLU. `[..., V, D] -> [..., V, 2 * width]`.
    With `pool_includes_self=False` the pool of vector i leaves i out (reconstruction switch).
    """

    width: int
    pool_includes_self: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        h = nn.relu(nn.LayerNorm(dtype=self.dtype)(Dense(self.width, dtype=self.dtype)(x)))
        if self.pool_includes_self:
            pooled = jnp.broadcast_to(masked_max(h, mask, axis=-2)[..., None, :], h.shape)
        else:
            v = h.shape[-2]
            others = mask[..., None, :] & ~jnp.eye(v, dtype=bool)  # [..., V(i), V(j)]
            hh = jnp.broadcast_to(h[..., None, :, :], h.shape[:-2] + (v, v, h.shape[-1]))
            pooled = masked_max(hh, others, axis=-2)
        return jnp.concatenate([h, pooled], axis=-1)


class _SplitDense(nn.Module):
    """`nn.Dense` (same parameters, names and initialisation) applied to the concatenation of
    `parts` along the last axis without forming it: sum_k part_k @ kernel[rows of part k] + bias,
    each part broadcast against the others (a part of shape `[..., 1, D]` is multiplied once,
    not once per row)."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, parts):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (sum(p.shape[-1] for p in parts), self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        out, start = 0, 0
        for part in parts:
            d = part.shape[-1]
            out = out + part.astype(self.dtype) @ kernel[start:start + d].astype(self.dtype)
            start += d
        return out + bias.astype(self.dtype)


_LN_EPS = 1e-6  # flax.linen.LayerNorm's default


_ROW_CHUNK = 32


def _feature_mean(x, chunked: bool = True):
    """Mean over the last axis (keepdims); `chunked`: as a sum of per-chunk sums of at most
    32 entries. Without YNNPACK's reductions, XLA:CPU rewrites a reduction over more than 32
    entries into a reduce-window and a reduce, which it runs element by element; sums over
    32 entries stay row reductions fused with their producers. The training step uses the
    chunks (see `training.compiler_options`); forward-only programs keep `jnp.mean`, which
    YNNPACK's reductions run faster."""
    if not chunked:
        return jnp.mean(x, axis=-1, keepdims=True)
    n = x.shape[-1]
    total = 0.0
    for start in range(0, n, _ROW_CHUNK):
        total = total + jnp.sum(x[..., start:start + _ROW_CHUNK], axis=-1, keepdims=True)
    return total * (1.0 / n)


def _dense_ln_relu_pool_fwd_values(parts, kernels, bias, scale, ln_bias, mask, dtype, chunked=True):
    """Forward of one pooled subgraph layer; also returns xhat and 1/std (float32) for the VJP.
    `chunked`: the LayerNorm means of `_feature_mean` (the same values up to rounding)."""
    z = bias.astype(dtype)
    for part, kernel in zip(parts, kernels, strict=True):
        z = z + part.astype(dtype) @ kernel.astype(dtype)
    z = z.astype(jnp.float32)
    mean = _feature_mean(z, chunked)
    centred = z - mean
    rstd = jax.lax.rsqrt(_feature_mean(centred * centred, chunked) + _LN_EPS)
    xhat = centred * rstd
    h = jnp.maximum(xhat * scale + ln_bias, 0.0).astype(dtype)
    return h, masked_max(h, mask, axis=-2)[..., None, :], xhat, rstd


_MAX_UNROLLED_VECTORS = 32


def _vector_sum(x):
    """Sum over the vectors of each polyline (axis -2, keepdims) in float32, as one addition
    per vector slot, computed once (`jaxlab.core.fusion.materialize`): XLA:CPU's loop over a
    middle axis is slower than adding the slices, which are vectorised along the features.
    Polylines of more than 32 vectors keep `jnp.sum` (the unrolled sum would grow the program)."""
    if x.shape[-2] > _MAX_UNROLLED_VECTORS:
        return jnp.sum(x.astype(jnp.float32), axis=-2, keepdims=True).astype(x.dtype)
    xf = x.astype(jnp.float32)
    out = xf[..., :1, :]
    for v in range(1, x.shape[-2]):
        out = out + xf[..., v:v + 1, :]
    (out,) = materialize(out.astype(x.dtype))
    return out


def _sum_rows(x):
    """Sum over every axis but the last, as the matrix product `ones [1, N] x [N, w]`: XLA:CPU
    runs it as a dot, where its own reduction loops took 12-18 ms on `[32, 24, 20, 64]` (see
    `training.compiler_options`)."""
    x2 = x.reshape(-1, x.shape[-1])
    return (jnp.ones((1, x2.shape[0]), x2.dtype) @ x2)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def dense_ln_relu_pool(parts, kernels, bias, scale, ln_bias, mask, dtype=jnp.float32):
    """One pooled subgraph layer, `relu(LayerNorm(sum_k parts[k] @ kernels[k] + bias))` and its
    masked max over vectors, with a hand-written VJP.

    `parts`: arrays `[..., V, d_k]` or `[..., 1, d_k]` (the previous layer's per-polyline pool,
    multiplied once per polyline); `mask [..., V]`. Returns `(h [..., V, w], pool [..., 1, w])`,
    the values of `nn.Dense` + `nn.LayerNorm` (epsilon 1e-6, statistics in float32) + ReLU +
    `masked_max`. The backward pass is the textbook LayerNorm gradient with every sum over
    vectors written once, `dx = rstd (g - mean(g) - xhat mean(g xhat))`, and the max's
    gradient split among tied maxima as JAX's `max` does. On XLA:CPU this takes fewer passes
    over the `[B, P, V, w]` activations than differentiating the Flax modules (see
    `PolylineSubgraph`). Reverse mode only: `jax.jvp`/`jacfwd` through it raise, for those use
    `PolylineSubgraph(hand_vjp=False)` (`model.subgraph_vjp=autodiff`).
    """
    h, pool, _, _ = _dense_ln_relu_pool_fwd_values(parts, kernels, bias, scale, ln_bias, mask, dtype, chunked=False)
    return h, pool


def _dlrp_fwd(parts, kernels, bias, scale, ln_bias, mask, dtype):
    h, pool, xhat, rstd = _dense_ln_relu_pool_fwd_values(parts, kernels, bias, scale, ln_bias, mask, dtype)
    return (h, pool), (parts, kernels, bias, scale, ln_bias, mask, xhat, rstd, pool)


def _dlrp_bwd(dtype, res, cotangents):
    parts, kernels, bias, scale, ln_bias, mask, xhat, rstd, pool = res
    g_h, g_pool = cotangents
    pre = xhat * scale + ln_bias
    h = jnp.maximum(pre, 0.0).astype(dtype)
    # the max's gradient goes to every valid vector equal to the pool, split evenly (as jnp.max)
    at_max = mask[..., None] & (h == pool)
    ties = jnp.maximum(_vector_sum(at_max.astype(jnp.float32)), 1.0)
    g = g_h.astype(jnp.float32) + jnp.where(at_max, g_pool.astype(jnp.float32) / ties, 0.0)
    g = jnp.where(pre > 0, g, 0.0)  # ReLU
    d_scale, d_ln_bias = _sum_rows(g * xhat), _sum_rows(g)
    g = g * scale
    dz = rstd * (g - _feature_mean(g) - xhat * _feature_mean(g * xhat))
    dz = dz.astype(dtype)
    # a part given once per polyline (`[..., 1, d]`) takes dz summed over the polyline's vectors
    per_polyline = [part.shape[-2] == 1 < dz.shape[-2] for part in parts]
    dz_polyline = _vector_sum(dz) if any(per_polyline) else None
    d_parts, d_kernels = [], []
    for part, kernel, once in zip(parts, kernels, per_polyline, strict=True):
        dzk = dz_polyline if once else dz
        d_parts.append((dzk @ kernel.astype(dtype).T).astype(part.dtype))
        d_kernels.append(kernel_gradient(part.astype(dtype), dzk).astype(kernel.dtype))
    d_bias = _sum_rows(dz if dz_polyline is None else dz_polyline)  # the same sum, fewer rows
    return (tuple(d_parts), tuple(d_kernels), d_bias.astype(bias.dtype), d_scale.astype(scale.dtype),
            d_ln_bias.astype(ln_bias.dtype), None)


dense_ln_relu_pool.defvjp(_dlrp_fwd, _dlrp_bwd)


class _DenseParams(nn.Module):
    """`nn.Dense`'s parameters (same names and initialisers), for the hand-differentiated layer."""

    features: int

    @nn.compact
    def __call__(self, in_features: int):
        return (self.param("kernel", nn.initializers.lecun_normal(), (in_features, self.features)),
                self.param("bias", nn.initializers.zeros, (self.features,)))


class _LayerNormParams(nn.Module):
    """`nn.LayerNorm`'s parameters (same names and initialisers)."""

    @nn.compact
    def __call__(self, features: int):
        return (self.param("scale", nn.initializers.ones, (features,)),
                self.param("bias", nn.initializers.zeros, (features,)))


class _PooledLayer(nn.Module):
    """`SubgraphLayer` with `pool_includes_self=True` (same parameters), returning its output as
    the pair `(h [..., V, width], pool [..., 1, width])` instead of their concatenation: the pool
    is the same for every vector of a polyline, so the next layer multiplies it once per
    polyline, not once per vector (half the subgraph's multiply-adds after the first layer).
    `hand_vjp`: differentiate through `dense_ln_relu_pool`'s hand-written VJP (same values and
    parameters) instead of the Flax modules."""

    width: int
    dtype: Any = jnp.float32
    hand_vjp: bool = True

    @nn.compact
    def __call__(self, parts, mask):
        if not self.hand_vjp:
            h = nn.relu(nn.LayerNorm(dtype=self.dtype, name="LayerNorm_0")(
                _SplitDense(self.width, self.dtype, name="Dense_0")(parts)))
            return h, masked_max(h, mask, axis=-2)[..., None, :]
        kernel, bias = _DenseParams(self.width, name="Dense_0")(sum(p.shape[-1] for p in parts))
        scale, ln_bias = _LayerNormParams(name="LayerNorm_0")(self.width)
        kernels, start = [], 0
        for part in parts:
            kernels.append(kernel[start:start + part.shape[-1]])
            start += part.shape[-1]
        return dense_ln_relu_pool(tuple(parts), tuple(kernels), bias, scale, ln_bias, mask, jnp.dtype(self.dtype))


class PolylineSubgraph(nn.Module):
    """Stack of `SubgraphLayer`s then max-pool over vectors: `[..., P, V, F] -> [..., P, 2 * width]`.

    With `pool_includes_self` (the default) the layers keep each output as the pair
    (per-vector features, per-polyline pool) and never broadcast the pool to the vectors
    (`_PooledLayer`; same parameters and values as `SubgraphLayer`'s concatenation, tested).

    `slot_vectors` (length P, non-increasing; `polylines.slot_budget` derives it from a
    dataset) runs the layers on polyline length classes instead of the padded `V`: each
    scene's polylines are sorted by length (the last valid vector's index + 1), the slots
    of one budget form a class `[..., slots, budget, F]`, and the outputs go back to the
    polylines' own rows. Every polyline's own vectors are all computed, so the output is
    the padded layout's (tested); only the padding vectors beyond each class's budget are
    skipped. A batch in which a polyline is longer than its slot's budget gets NaN
    features (never silently truncated ones), which the training loop's NaN guard stops on.

    `hand_vjp` (with `pool_includes_self`): the layers' gradient is `dense_ln_relu_pool`'s
    hand-written VJP rather than JAX's differentiation of the Flax modules: same values,
    parameters and gradients (tested against autodiff), fewer passes over the activations.
    The VectorNet training step at batch 32 takes 1.30-1.35x less time on one CPU core,
    1.24-1.28x on two, each with its own `training.compiler_options`
    (`python scripts/bench_vectornet.py`, its autodiff peer; figures in
    experiments/vectornet/README.md).
    Forward-mode differentiation (`jax.jvp`, `jax.jacfwd`, forward-over-reverse
    Hessian-vector products) needs `hand_vjp=False`.
    """

    depth: int = 3
    width: int = 64
    pool_includes_self: bool = True
    dtype: Any = jnp.float32
    slot_vectors: tuple[int, ...] = ()
    hand_vjp: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        if self.pool_includes_self:
            layers = [_PooledLayer(self.width, self.dtype, self.hand_vjp, name=f"layer_{i}") for i in range(self.depth)]
        else:
            layers = [SubgraphLayer(self.width, False, self.dtype, name=f"layer_{i}") for i in range(self.depth)]

        def encode(x, mask):
            if not self.pool_includes_self:
                for layer in layers:
                    x = layer(x, mask)
                return masked_max(x, mask, axis=-2)
            parts = (x,)
            for layer in layers:
                parts = layer(parts, mask)
            h, pool = parts
            # the max over vectors of concat(h, pool) is concat(max of h, pool): 0 for empty polylines
            return jnp.concatenate([masked_max(h, mask, axis=-2), pool[..., 0, :]], axis=-1)

        if not self.slot_vectors:
            return encode(x, mask)
        return _by_length_class(encode, x, mask, self.slot_vectors, 2 * self.width)


def _by_length_class(encode, x, mask, slot_vectors, features):
    """`encode(x [..., P, V, F], mask [..., P, V]) -> [..., P, D]` run on length classes
    (`PolylineSubgraph.slot_vectors`); NaN where a polyline exceeds its slot's budget."""
    p, v = mask.shape[-2:]
    budget = tuple(int(b) for b in slot_vectors)
    if len(budget) != p or any(b > v or b < 0 for b in budget) or any(a < b for a, b in zip(budget, budget[1:])):
        raise ValueError(f"slot_vectors must hold {p} non-increasing vector budgets in [0, {v}], got {budget}")
    lengths = jnp.max(jnp.where(mask, jnp.arange(1, v + 1), 0), axis=-1)  # [..., P]
    order = jnp.argsort(-lengths, axis=-1, stable=True)
    fits = jnp.all(jnp.take_along_axis(lengths, order, axis=-1) <= jnp.asarray(budget))
    xs = jnp.take_along_axis(x, order[..., None, None], axis=-3)
    ms = jnp.take_along_axis(mask, order[..., None], axis=-2)
    outs, start = [], 0
    for b in sorted(set(budget), reverse=True):
        k = budget.count(b)
        rows = slice(start, start + k)
        if b == 0:  # every polyline here is empty: the padded layout's output is 0
            outs.append(jnp.zeros(mask.shape[:-2] + (k, features), x.dtype))
        else:
            outs.append(encode(xs[..., rows, :b, :], ms[..., rows, :b]).astype(x.dtype))
        start += k
    feats = jnp.take_along_axis(jnp.concatenate(outs, axis=-2), jnp.argsort(order, axis=-1)[..., None], axis=-2)
    return jnp.where(fits, feats, jnp.nan)


class GlobalGraph(nn.Module):
    """Eq. 5: softmax(P_Q P_K^T [/ sqrt(d)]) P_V over the valid polylines (padding mask),
    `depth` layers of width `width` (a single head, no output projection, as written)."""

    depth: int = 1
    width: int = 64
    attn_scale: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, p: jax.Array, valid: jax.Array) -> jax.Array:
        mask = padding_mask(valid)
        scale = 1.0 / float(self.width) ** 0.5 if self.attn_scale else 1.0
        for i in range(self.depth):
            q, k, v = (Dense(self.width, dtype=self.dtype, name=f"{n}_{i}")(p) for n in ("query", "key", "value"))
            o = dot_product_attention(q[:, :, None], k[:, :, None], v[:, :, None], scale=scale, mask=mask)
            p = o[:, :, 0]
        return p


def context_mask(kind: jax.Array, context: str) -> jax.Array:
    """Polylines the global graph sees: the target's always; lanes unless `none`; other
    agents only with `map_agents` (Table 2's rows)."""
    valid = kind == TARGET
    if context in ("map", "map_agents"):
        valid = valid | (kind == LANE)
    if context == "map_agents":
        valid = valid | (kind == AGENT)
    return valid & (kind != PAD)


class MLP(nn.Module):
    """Dense -> LayerNorm -> ReLU -> Dense."""

    hidden: int
    out: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.LayerNorm(dtype=self.dtype)(Dense(self.hidden, dtype=self.dtype)(x)))
        return Dense(self.out, dtype=self.dtype)(h)


class VectorNet(nn.Module):
    """The whole network: `(vectors [B,P,V,F], vec_mask [B,P,V], kind [B,P]) -> [B, T, 2]`.

    Polyline features are L2-normalised per polyline (Eq. 4's input), concatenated with the
    identifier embedding p^id = the minimum over the polyline's start coordinates (§3.3), and
    passed through the global graph; the decoder reads the target (row 0). With
    `targets [B, K]` (rows of the agents to predict, multi-agent prediction), the same decoder
    reads each of those rows and the trajectory is `[B, K, T, 2]`; `targets = 0` gives row 0's
    prediction, the same values as without `targets`. With `node_mask [B, P]` (auxiliary task,
    training only), masked rows' features are zeroed (their identifier kept) and
    `(trajectory, reconstructions [B, P, 2 * width], features [B, P, 2 * width])` is returned.
    `slot_vectors`: the subgraph's length classes (`PolylineSubgraph`; same outputs).
    `subgraph_hand_vjp`: `PolylineSubgraph.hand_vjp` (same values and gradients).
    """

    num_future: int = 30
    subgraph_depth: int = 3
    subgraph_width: int = 64
    global_depth: int = 1
    global_width: int = 64
    attn_scale: bool = False
    decoder_width: int = 64
    context: str = "map_agents"
    pool_includes_self: bool = True
    coord_scale: float = 10.0
    aux: bool = True
    dtype: Any = jnp.float32
    slot_vectors: tuple[int, ...] = ()
    subgraph_hand_vjp: bool = True

    @nn.compact
    def __call__(self, vectors, vec_mask, kind, node_mask=None, targets=None):
        scale = jnp.asarray([self.coord_scale] * 4 + [1.0] * (vectors.shape[-1] - 4), vectors.dtype)
        x = vectors / scale
        feats = PolylineSubgraph(self.subgraph_depth, self.subgraph_width, self.pool_includes_self, self.dtype,
                                 self.slot_vectors, self.subgraph_hand_vjp, name="subgraph")(x, vec_mask)
        feats = feats / jnp.maximum(jnp.linalg.norm(feats, axis=-1, keepdims=True), 1e-6)
        valid = context_mask(kind, self.context) & jnp.any(vec_mask, axis=-1)
        big = jnp.finfo(x.dtype).max
        ident = jnp.min(jnp.where(vec_mask[..., None], x[..., :2], big), axis=-2)
        ident = jnp.where(jnp.any(vec_mask, -1)[..., None], ident, 0.0)
        inp = feats if node_mask is None else jnp.where(node_mask[..., None], 0.0, feats)
        g = GlobalGraph(self.global_depth, self.global_width, self.attn_scale, self.dtype, name="global_graph")(
            jnp.concatenate([inp, ident], axis=-1), valid)
        read = g[:, 0] if targets is None else jnp.take_along_axis(g, targets[..., None], axis=1)  # [B, (K,) D]
        traj = MLP(self.decoder_width, 2 * self.num_future, self.dtype, name="decoder")(read)
        traj = traj.reshape(traj.shape[:-1] + (self.num_future, 2)) * self.coord_scale
        if self.aux and (node_mask is not None or self.is_initializing()):
            recon = MLP(self.decoder_width, feats.shape[-1], self.dtype, name="node_decoder")(g)
            return traj, recon, feats
        return traj
