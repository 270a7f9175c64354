"""Linen GNN layers over `jraph.GraphsTuple`s that are correct under padding.

All layers read edge weights `w [E]` from `graph.edges` (None means ones); an edge with
`w == 0` is absent, which is how padding edges (and only they) look after
`jaxlab.graph.pad`. Messages flow senders -> receivers. Reductions are segment sums
and a `segment_max_or_constant` softmax shift, so empty (padding) segments give
finite outputs and finite gradients.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _weights(graph, dtype=jnp.float32):
    if graph.edges is None:
        return jnp.ones(graph.senders.shape, dtype)
    w = jnp.asarray(graph.edges)
    if w.ndim > 1:
        w = w.reshape(w.shape[0], -1)[:, 0]
    return w.astype(dtype)


def _num_nodes(x):
    return x.shape[0]


def gcn_coefficients(graph, num_nodes: int):
    """Edge and self-loop coefficients of D^-1/2 (A + I) D^-1/2 from weights `w`.

    deg_v = 1 + sum_{e: r(e) = v} w_e;  c_e = w_e / sqrt(deg_{s(e)} deg_{r(e)});
    c_self,v = 1 / deg_v.  Returns (c_edge [E], c_self [N]).
    """
    w = _weights(graph)
    deg = 1.0 + jax.ops.segment_sum(w, graph.receivers, num_segments=num_nodes)
    inv = jax.lax.rsqrt(deg)
    return w * inv[graph.senders] * inv[graph.receivers], 1.0 / deg


class GCNConv(nn.Module):
    """Graph convolution  h' = D^-1/2 (A + I) D^-1/2 h W + b  (Kipf & Welling 2017).

    normalize=True computes the coefficients on the device from the edge weights
    (`gcn_coefficients`); normalize=False uses the edge weights as the final
    coefficients (host-normalised graphs from `normalized_graph(model="gcn")` or a
    sampler, which carry explicit self-loop edges).
    h: [N, F_in] -> [N, features].
    """

    features: int
    normalize: bool = True
    use_bias: bool = True
    dtype: Optional[jnp.dtype] = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, graph, h):
        n = _num_nodes(h)
        h = nn.Dense(self.features, use_bias=False, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="linear")(h)
        if self.normalize:
            c_edge, c_self = gcn_coefficients(graph, n)
            out = jax.ops.segment_sum(h[graph.senders] * c_edge[:, None].astype(h.dtype),
                                      graph.receivers, num_segments=n)
            out = out + h * c_self[:, None].astype(h.dtype)
        else:
            w = _weights(graph, h.dtype)
            out = jax.ops.segment_sum(h[graph.senders] * w[:, None], graph.receivers, num_segments=n)
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            out = out + b.astype(out.dtype)
        return out


class SAGEConv(nn.Module):
    """GraphSAGE with the mean aggregator (Hamilton et al. 2017):

      h'_v = W_self h_v + W_neigh * sum_{u->v} w_uv h_u / sum_{u->v} w_uv  (+ b)

    normalize=False uses `sum_u w_uv h_u` with host-normalised weights (`D^-1 A`, or
    GraphSAINT's aggregator-normalised weights). Nodes without in-edges aggregate 0.
    """

    features: int
    normalize: bool = True
    use_bias: bool = True
    dtype: Optional[jnp.dtype] = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, graph, h):
        n = _num_nodes(h)
        w = _weights(graph, h.dtype if self.dtype is None else self.dtype)
        agg = jax.ops.segment_sum(h[graph.senders] * w[:, None].astype(h.dtype),
                                  graph.receivers, num_segments=n)
        if self.normalize:
            deg = jax.ops.segment_sum(w, graph.receivers, num_segments=n)
            agg = agg / jnp.maximum(deg, 1e-12)[:, None].astype(agg.dtype) * (deg > 0)[:, None]
        dense = lambda name, bias: nn.Dense(self.features, use_bias=bias, dtype=self.dtype,
                                            param_dtype=self.param_dtype, name=name)
        return dense("self", self.use_bias)(h) + dense("neigh", False)(agg)


class GATConv(nn.Module):
    """Graph attention (Velickovic et al. 2018), `heads` heads of `features` each:

      z = h W;  e_uv = LeakyReLU(a_src . z_u + a_dst . z_v)  over u -> v and u = v;
      alpha_uv = softmax_u(e_uv) (per receiver v, over its real in-edges and its self loop);
      h'_v = concat_k sum_u alpha^k_uv z^k_u  (or the mean over heads if concat=False) + b.

    Edge weights only mask (w == 0: absent). The softmax shift uses
    `segment_max_or_constant` under `stop_gradient`, so padding segments stay finite.
    """

    features: int
    heads: int = 1
    concat: bool = True
    negative_slope: float = 0.2
    add_self_loops: bool = True
    use_bias: bool = True
    dtype: Optional[jnp.dtype] = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, graph, h):
        import jraph

        n = _num_nodes(h)
        k, f = self.heads, self.features
        z = nn.Dense(k * f, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                     name="linear")(h).reshape(n, k, f)
        init = nn.initializers.glorot_uniform()
        a_src = self.param("att_src", init, (1, k, f), self.param_dtype).astype(z.dtype)
        a_dst = self.param("att_dst", init, (1, k, f), self.param_dtype).astype(z.dtype)
        s_src = jnp.sum(z * a_src, -1)  # [N, K]
        s_dst = jnp.sum(z * a_dst, -1)
        live = (_weights(graph) != 0)[:, None]  # [E, 1]
        logits = nn.leaky_relu(s_src[graph.senders] + s_dst[graph.receivers], self.negative_slope)
        neg = jnp.finfo(logits.dtype).min
        masked = jnp.where(live, logits, neg)
        shift = jraph.segment_max_or_constant(masked, graph.receivers, num_segments=n)
        if self.add_self_loops:
            self_logit = nn.leaky_relu(s_src + s_dst, self.negative_slope)
            shift = jnp.maximum(shift, self_logit)
        shift = jax.lax.stop_gradient(shift)
        ex = jnp.where(live, jnp.exp(jnp.where(live, logits - shift[graph.receivers], 0.0)), 0.0)
        num = jax.ops.segment_sum(ex[..., None] * z[graph.senders], graph.receivers, num_segments=n)
        den = jax.ops.segment_sum(ex, graph.receivers, num_segments=n)
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
    dtype: Optional[jnp.dtype] = None
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
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
            h = self._conv(width, last, i)(graph, h)
            if not last:
                h = self.activation(h)
        return h.astype(jnp.float32)
