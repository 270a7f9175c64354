"""Linen GNN layers over `jraph.GraphsTuple`s that are correct under padding.

All layers read edge weights `w [E]` from `graph.edges` (None means ones); an edge with
`w == 0` is absent, which is how padding edges (and only they) look after
`jaxlab.graph.pad`. Messages flow senders -> receivers. Reductions are segment sums
and a `segment_max_or_constant` softmax shift, so empty (padding) segments give
finite outputs and finite gradients.

Edge indices must lie in `[0, N)` (every builder and sampler of `jaxlab.graph` makes
them so; padding edges point at a padding node). Gathers and scatters therefore skip
JAX's out-of-bounds handling, which on CPU cost a masked copy of every `[E, F]`
message array.

Speed: GCN and SAGE apply their linear maps before or after aggregating, whichever
aggregates the narrower features (`aggregate_first=None`); on the first layer, whose
input features take no gradient, aggregating first also skips the backward pass
through the graph. GAT's weighted aggregation has a hand-written VJP
(`attention_aggregate`) that needs no softmax scatter in the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxlab.nn.dropout import Dropout
from jaxlab.nn.linear import matmul

_IN_BOUNDS = lax.GatherScatterMode.PROMISE_IN_BOUNDS


def take_rows(x, index):
    """`x[index]` along axis 0 for in-range `index` (no bounds masking)."""
    return jnp.take(x, index, axis=0, mode="clip")  # XLA gathers clamp natively: no extra ops


def sum_into(messages, index, num_segments: int):
    """`segment_sum` of `messages` into `num_segments` rows for in-range `index`."""
    return jax.ops.segment_sum(messages, index, num_segments=num_segments, mode=_IN_BOUNDS)


def propagate(graph, h, weights):
    """`out_v = sum_{e: s(e) -> v} w_e h_{s(e)}`: h [N, ...], weights [E] -> [N, ...]
    (one head of `attention_aggregate`, so the same kernels and VJP)."""
    n = h.shape[0]
    out = attention_aggregate(weights.astype(h.dtype)[:, None], h.reshape(n, 1, -1), graph.senders,
                              graph.receivers, _reverse(graph))
    return out.reshape(h.shape)


def _weights(graph, dtype=jnp.float32):
    w = graph.edges.get("weight") if isinstance(graph.edges, Mapping) else graph.edges
    if w is None:
        return jnp.ones(graph.senders.shape, dtype)
    w = jnp.asarray(w)
    if w.ndim > 1:
        w = w.reshape(w.shape[0], -1)[:, 0]
    return w.astype(dtype)


def _reverse(graph):
    """The reverse-edge index (`jaxlab.graph.with_reverse_index`, or attached by the
    samplers), if present."""
    return graph.edges.get("reverse") if isinstance(graph.edges, Mapping) else None


def _num_nodes(x):
    return x.shape[0]


def _aggregate_first(flag: bool | None, in_features: int, out_features: int) -> bool:
    return in_features <= out_features if flag is None else bool(flag)


def gcn_coefficients(graph, num_nodes: int):
    """Edge and self-loop coefficients of D^-1/2 (A + I) D^-1/2 from weights `w`.

    deg_v = 1 + sum_{e: r(e) = v} w_e;  c_e = w_e / sqrt(deg_{s(e)} deg_{r(e)});
    c_self,v = 1 / deg_v.  Returns (c_edge [E], c_self [N]).
    """
    w = _weights(graph)
    deg = 1.0 + sum_into(w, graph.receivers, num_nodes)
    inv = lax.rsqrt(deg)
    return w * take_rows(inv, graph.senders) * take_rows(inv, graph.receivers), 1.0 / deg


# Features per head from which, on the CPU backend, the forward product runs as a CSR
# sparse-dense product (XLA:CPU's `cpu_csr_sparse_dense_ffi` kernel, through
# `jax.experimental.sparse.BCSR`) instead of a gather of [E, F] messages and a scatter.
# The kernel is fast only for F a multiple of 8 (10k nodes, 111k edges, one core: 0.49 ms
# at F = 8, 1.8 ms at F = 5), so features are zero-padded to one: 0.33 vs 0.93 ms
# (scatter) at F = 5, 0.61 vs 1.4 ms at F = 16, 0.96 vs 2.7 ms at F = 64. At F = 1 the
# scatter is faster.
CSR_MIN_FEATURES = 2
CSR_FEATURE_MULTIPLE = 8


def _scatter_product(weights, z, senders, receivers):
    return sum_into(weights[..., None] * take_rows(z, senders), receivers, z.shape[0])


def _row_starts(receivers, n):
    """CSR `indptr` [n + 1] of receiver-sorted edges."""
    return jnp.searchsorted(receivers.astype(jnp.int32), jnp.arange(n + 1, dtype=jnp.int32),
                            side="left").astype(jnp.int32)


def _csr_product(weights, z, senders, receivers, indptr=None):
    from jax.experimental import sparse as jsparse

    n = z.shape[0]
    index = senders.astype(jnp.int32)
    indptr = _row_starts(receivers, n) if indptr is None else indptr
    f = z.shape[-1]
    pad = -f % CSR_FEATURE_MULTIPLE
    if pad:
        z = jnp.pad(z, ((0, 0), (0, 0), (0, pad)))
    heads = [jsparse.BCSR((weights[:, k], index, indptr), shape=(n, n)) @ z[:, k, :]
             for k in range(z.shape[1])]
    return jnp.stack(heads, axis=1)[..., :f]


def _use_csr(weights, z) -> bool:
    return (z.shape[-1] >= CSR_MIN_FEATURES and jax.default_backend() == "cpu"
            and z.dtype in (jnp.float32, jnp.float64) and weights.dtype == z.dtype)


def _csr_layout(weights, z, receivers):
    """(indptr, in_order) when the CSR product applies to these shapes, else None.

    The CSR layout needs edges sorted by receiver (every builder and sampler of
    jaxlab.graph makes them so); `in_order` says on the device whether they are, at the
    cost of one comparison per edge, and other graphs take the scatter path.
    """
    if not _use_csr(weights, z):
        return None
    return _row_starts(receivers, z.shape[0]), jnp.all(receivers[1:] >= receivers[:-1])


def _product(weights, z, senders, receivers, layout):
    if layout is None:
        return _scatter_product(weights, z, senders, receivers)
    indptr, in_order = layout
    return lax.cond(in_order, lambda: _csr_product(weights, z, senders, receivers, indptr),
                    lambda: _scatter_product(weights, z, senders, receivers))


def _is_reverse_map(senders, receivers, rev):
    """Whether `rev` maps every edge to its reverse and back (`rev[rev] == id`)."""
    e = rev.shape[0]
    return (jnp.all(take_rows(senders, rev) == receivers)
            & jnp.all(take_rows(rev, rev) == jnp.arange(e, dtype=rev.dtype)))


def reverse_edges(senders, receivers, indptr):
    """`rev[e]`: the index of edge `receivers[e] -> senders[e]`, and whether every edge
    has exactly one reverse (`rev[rev] == id`; a self loop is its own reverse).

    Needs edges sorted by receiver and, within a receiver, by sender (the order of
    `from_scipy`); found by a vectorised binary search within each row, so it costs
    about log2(max degree) passes over the edges.
    """
    e = senders.shape[0]
    s = senders.astype(jnp.int32)
    target = receivers.astype(jnp.int32)
    lo, hi = indptr[s], indptr[s + 1]

    def cond(c):
        return jnp.any(c[0] < c[1])

    def body(c):
        lo, hi = c
        active = lo < hi
        mid = (lo + hi) // 2
        less = take_rows(s, jnp.minimum(mid, e - 1)) < target
        return jnp.where(active & less, mid + 1, lo), jnp.where(active & ~less, mid, hi)

    rev, _ = lax.while_loop(cond, body, (lo, hi))
    # A self loop is its own reverse, also when repeated (padding edges all are v -> v).
    rev = jnp.where(s == target, jnp.arange(e, dtype=jnp.int32), jnp.minimum(rev, e - 1))
    return rev, _is_reverse_map(s, target, rev)


def _transposed_product(weights, g, senders, receivers, reverse, layout):
    """`out_u = sum_{e: s(e) = u} weights_e g_{r(e)}` (the VJP of `_product` in z).

    With a symmetric edge set this is the forward product with the weights permuted by
    the reverse-edge map (`out_u = sum_{e: r(e) = u} weights_{rev(e)} g_{s(e)}`): a CSR
    product for wide features, else a scatter into the sorted receivers instead of the
    unsorted senders. The map is given (checked, two gathers) or searched for (only
    when the CSR product pays for it); otherwise a scatter to the senders.
    """
    n = g.shape[0]
    plain = lambda: sum_into(weights[..., None] * take_rows(g, receivers), senders, n)
    if layout is None and reverse is None:
        return plain()
    if layout is None:
        in_order = jnp.all(receivers[1:] >= receivers[:-1])
    else:
        indptr, in_order = layout
    if reverse is None:
        rev, ok = reverse_edges(senders, receivers, indptr)
    else:
        rev = reverse.astype(jnp.int32)
        ok = _is_reverse_map(senders.astype(jnp.int32), receivers.astype(jnp.int32), rev)
    if layout is None:
        fast = lambda: _scatter_product(take_rows(weights, rev), g, senders, receivers)
    else:
        fast = lambda: _csr_product(take_rows(weights, rev), g, senders, receivers, indptr)
    return lax.cond(ok & in_order, fast, plain)


@jax.custom_vjp
def attention_aggregate(weights, z, senders, receivers, reverse=None):
    """`out_v = sum_{e: s(e) -> v} weights_e * z_{s(e)}` per head: weights [E, H],
    z [N, H, F] -> [N, H, F].

    Forward: a CSR sparse-dense product per head on CPU for F >= `CSR_MIN_FEATURES`
    when the edges are sorted by receiver, else gather + `segment_sum`. The VJP is
    written out: d weights_e = <g_{r(e)}, z_{s(e)}> over F, one fused gather-multiply
    pass over the edges (XLA drops it when the weights are constants), and
    d z = A^T g, again a CSR product when the edge set is symmetric (`reverse_edges`),
    else a scatter to the senders. `reverse` ([E] int, optional): the reverse-edge index
    of `jaxlab.graph.with_reverse_index`, which saves searching for it.
    """
    return _product(weights, z, senders, receivers, _csr_layout(weights, z, receivers))


def _attention_fwd(weights, z, senders, receivers, reverse=None):
    layout = _csr_layout(weights, z, receivers)  # shared with the backward pass
    out = _product(weights, z, senders, receivers, layout)
    return out, (weights, z, senders, receivers, reverse, layout)


def _attention_bwd(res, g):
    weights, z, senders, receivers, reverse, layout = res
    g_r = take_rows(g, receivers)  # [E, H, F]
    # The barrier keeps XLA from sharing the forward pass's `z[senders]`: recomputing the
    # gather inside this reduction is cheaper than keeping [E, H, F] messages alive.
    z_s = take_rows(lax.optimization_barrier(z), senders)
    d_weights = jnp.sum(g_r * z_s, axis=-1)
    d_z = _transposed_product(weights, g, senders, receivers, reverse, layout)
    int_zero = lambda a: jnp.zeros(a.shape, jax.dtypes.float0)
    d_rev = None if reverse is None else int_zero(reverse)
    return d_weights.astype(weights.dtype), d_z, int_zero(senders), int_zero(receivers), d_rev


attention_aggregate.defvjp(_attention_fwd, _attention_bwd)


class _Affine(nn.Module):
    """The parameters of an `nn.Dense` (same names, shapes and initialisers), returned
    instead of applied, so that two of them can run as one matmul."""

    in_features: int
    features: int
    use_bias: bool = True
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (self.in_features, self.features),
                            self.param_dtype)
        bias = (self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
                if self.use_bias else None)
        return kernel, bias


class GCNConv(nn.Module):
    """Graph convolution  h' = D^-1/2 (A + I) D^-1/2 h W + b  (Kipf & Welling 2017).

    normalize=True computes the coefficients on the device from the edge weights
    (`gcn_coefficients`); normalize=False uses the edge weights as the final
    coefficients (host-normalised graphs from `normalized_graph(model="gcn")` or a
    sampler, which carry explicit self-loop edges).
    aggregate_first: aggregate before the linear map (True), after it (False), or
    whichever aggregates the narrower features (None). The result is the same.
    h: [N, F_in] -> [N, features].
    """

    features: int
    normalize: bool = True
    use_bias: bool = True
    aggregate_first: bool | None = None
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, graph, h):
        n = _num_nodes(h)
        kernel, _ = _Affine(h.shape[-1], self.features, False, self.param_dtype, name="linear")()
        dtype = self.dtype or jnp.result_type(h, kernel)
        h = h.astype(dtype)
        linear = lambda x: matmul(x, kernel.astype(dtype))
        first = _aggregate_first(self.aggregate_first, h.shape[-1], self.features)
        if not first:
            h = linear(h)
        if self.normalize:
            c_edge, c_self = gcn_coefficients(graph, n)
            out = propagate(graph, h, c_edge) + h * c_self[:, None].astype(h.dtype)
        else:
            out = propagate(graph, h, _weights(graph, h.dtype))
        if first:
            out = linear(out)
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            out = out + b.astype(out.dtype)
        return out


class SAGEConv(nn.Module):
    """GraphSAGE with the mean aggregator (Hamilton et al. 2017):

      h'_v = W_self h_v + W_neigh * sum_{u->v} w_uv h_u / sum_{u->v} w_uv  (+ b)

    normalize=False uses `sum_u w_uv h_u` with host-normalised weights (`D^-1 A`, or
    GraphSAINT's aggregator-normalised weights). Nodes without in-edges aggregate 0.
    aggregate_first: as in `GCNConv`, for W_neigh. Either way the two linear maps run
    as one matmul: `[h, mean] @ [W_self; W_neigh]` or `h @ [W_self, W_neigh]`.
    Parameters are those of two `nn.Dense` named "self" and "neigh".
    """

    features: int
    normalize: bool = True
    use_bias: bool = True
    aggregate_first: bool | None = None
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, graph, h):
        n, f_in = _num_nodes(h), h.shape[-1]
        w_self, bias = _Affine(f_in, self.features, self.use_bias, self.param_dtype, name="self")()
        w_neigh, _ = _Affine(f_in, self.features, False, self.param_dtype, name="neigh")()
        dtype = self.dtype or jnp.result_type(h, w_self)
        h = h.astype(dtype)
        w = _weights(graph, dtype)

        def mean(x):
            agg = propagate(graph, x, w)
            if self.normalize:
                deg = sum_into(w, graph.receivers, n)
                scale = jnp.where(deg > 0, 1.0 / jnp.maximum(deg, 1e-12), 0.0)
                agg = agg * scale[:, None].astype(agg.dtype)
            return agg

        if _aggregate_first(self.aggregate_first, f_in, self.features):
            kernel = jnp.concatenate([w_self, w_neigh], axis=0).astype(dtype)
            out = matmul(jnp.concatenate([h, mean(h)], axis=-1), kernel)
        else:
            y = matmul(h, jnp.concatenate([w_self, w_neigh], axis=1).astype(dtype))
            out = y[:, :self.features] + mean(y[:, self.features:])
        if bias is not None:
            out = out + bias.astype(dtype)
        return out


class GATConv(nn.Module):
    """Graph attention (Velickovic et al. 2018), `heads` heads of `features` each:

      z = h W;  e_uv = LeakyReLU(a_src . z_u + a_dst . z_v)  over u -> v and u = v;
      alpha_uv = softmax_u(e_uv) (per receiver v, over its real in-edges and its self loop);
      h'_v = concat_k sum_u alpha^k_uv z^k_u  (or the mean over heads if concat=False) + b.

    add_self_loops=True (PyG's default): self-loop edges already in the graph are ignored
    and exactly one self loop per node is used, as PyG's `remove_self_loops` then
    `add_self_loops`; add_self_loops=False attends over the graph's edges as they are.
    Edge weights only mask (w == 0: absent). The softmax shift uses
    `segment_max_or_constant` under `stop_gradient`, so padding segments stay finite.
    The normalisation is applied per node after aggregating
    (`sum_u exp(e_uv - m_v) z_u / sum_u exp(e_uv - m_v)`), with `attention_aggregate`.
    """

    features: int
    heads: int = 1
    concat: bool = True
    negative_slope: float = 0.2
    add_self_loops: bool = True
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, graph, h):
        import jraph

        n = _num_nodes(h)
        k, f = self.heads, self.features
        kernel, _ = _Affine(h.shape[-1], k * f, False, self.param_dtype, name="linear")()
        dtype = self.dtype or jnp.result_type(h, kernel)
        z = matmul(h.astype(dtype), kernel.astype(dtype)).reshape(n, k, f)
        init = nn.initializers.glorot_uniform()
        a_src = self.param("att_src", init, (1, k, f), self.param_dtype).astype(z.dtype)
        a_dst = self.param("att_dst", init, (1, k, f), self.param_dtype).astype(z.dtype)
        s_src = jnp.sum(z * a_src, -1)  # [N, K]
        s_dst = jnp.sum(z * a_dst, -1)
        # Masks are 0/1 factors, not selects: XLA:CPU does not vectorise a per-edge select
        # whose predicate is broadcast over heads (4x slower in this pass and its VJP).
        live = _weights(graph) != 0
        if self.add_self_loops:
            # As PyG: existing self loops are removed and one per node is added below.
            # They are masked, not dropped, so shapes, the CSR layout and the reverse index
            # (a self loop is its own reverse) stay as they are.
            live = live & (graph.senders != graph.receivers)
        live = live.astype(z.dtype)[:, None]  # [E, 1]
        logits = nn.leaky_relu(take_rows(s_src, graph.senders) + take_rows(s_dst, graph.receivers),
                               self.negative_slope)
        neg = jnp.finfo(logits.dtype).min
        shift = jraph.segment_max_or_constant(logits * live + (1.0 - live) * neg, graph.receivers,
                                              num_segments=n)
        if self.add_self_loops:
            self_logit = nn.leaky_relu(s_src + s_dst, self.negative_slope)
            shift = jnp.maximum(shift, self_logit)
        shift = lax.stop_gradient(shift)
        # x <= 0 on every real edge (the shift is its receiver's maximum), so the clamp only
        # keeps exp finite on padding edges, which the mask then zeroes.
        x = logits - take_rows(shift, graph.receivers)
        ex = jnp.exp(jnp.where(x > 0, 0.0, x)) * live
        num = attention_aggregate(ex, z, graph.senders, graph.receivers, _reverse(graph))
        den = sum_into(ex, graph.receivers, n)
        if self.add_self_loops:
            ex_self = jnp.exp(self_logit - shift)
            num = num + ex_self[..., None] * z
            den = den + ex_self
        out = num / jnp.maximum(den, jnp.finfo(den.dtype).tiny)[..., None]
        out = out.reshape(n, k * f) if self.concat else out.mean(1)
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros, (out.shape[-1],), self.param_dtype)
            out = out + b.astype(out.dtype)
        return out


class GNN(nn.Module):
    """A stack of GCN / SAGE / GAT layers for node classification: logits `[N, classes]`.

    Reads `graph.nodes["x"]`. Hidden layers: conv -> activation -> dropout; the last
    conv outputs `num_classes` logits (GAT: one head averaged, concat=False).
    """

    model: str = "gcn"
    hidden: Sequence[int] = (64,)
    num_classes: int = 2
    dropout: float = 0.0
    heads: int = 4
    prenormalized: bool = False
    activation: Callable = nn.relu
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    def _conv(self, features, last, i):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, name=f"conv{i}")
        if self.model == "gcn":
            return GCNConv(features, normalize=not self.prenormalized, **kw)
        if self.model == "sage":
            return SAGEConv(features, normalize=not self.prenormalized, **kw)
        if self.model == "gat":
            if last:
                return GATConv(features, heads=1, concat=False, **kw)
            return GATConv(max(1, features // self.heads), heads=self.heads, **kw)
        raise ValueError(f"model must be 'gcn', 'sage' or 'gat', got {self.model!r}")

    @nn.compact
    def __call__(self, graph, train: bool = False):
        h = graph.nodes["x"]
        if self.dtype is not None:
            h = h.astype(self.dtype)
        widths = list(self.hidden) + [self.num_classes]
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            if self.dropout > 0:
                h = Dropout(self.dropout, deterministic=not train)(h)
            h = self._conv(width, last, i)(graph, h)
            if not last:
                h = self.activation(h)
        return h.astype(jnp.float32)
