"""The heterogeneous GCN of CORAL (reconstruction: the paper names a GCN trained for link
prediction on the socio-technical graph, without architecture details).

Every node starts from a learned ID embedding (no raw features, as the paper): row
`embedding_index[i]`, where all PRs share one row, so a PR's representation comes only
from its neighbours (author, files, tokens, repository, reviewers) and a PR never seen in
training is scored the same way (inductive inference, §III-C). Layer l:

    h_i^{l+1} = act( h_i^l W_self^l / d_i + sum_{(j -> i, r)} w_ji / sqrt(d_i d_j) h_j^l W_r^l )

with d_i = 1 + sum of the weights of the edges into i and one W for all edges (`conv="gcn"`:
the GCN symmetric normalisation of the weighted adjacency with self loops, Kipf & Welling
2017, the spec's default), or (`conv="rgcn"`, R-GCN, Schlichtkrull et al. 2018) one matrix
`W_r` per relation (edge type and direction) with the coefficient w_ji / sum_{k in N_i^r} w_ki
(a weighted mean per relation), so that the single author of a PR weighs as much as all of
its tokens together. act = ReLU between layers, none
after the last; the output adds the input embedding (a skip connection). The score of a
user-PR pair is the dot product <h_u, h_p>.

Two ways to compute the R-GCN sum, equal up to float rounding (tested):

- relation first (`groups=None`): transform every node by every `W_r` (`[R, N, F]`), gather
  one row per edge, sum per receiver. Any graph, any shapes; `R N F^2` multiply-adds.
- grouped (`groups=RelationGroups`, built once on the host by `group_by_relation` for a
  fixed graph): sum the weighted sender rows per (receiver, relation) pair, then one matmul
  per relation over its pairs only, then sum per receiver. A node has edges of few of the
  20 relations, so the pairs are about 4x fewer than `R N` on the planted graph and so are the
  multiply-adds, and the backward pass no longer scatters into an `[R, N, F]` buffer.
  Training uses it (the graph is fixed); inductive scoring, whose local graphs change
  with every request, uses relation first.

Fast inductive scoring: messages never flow out of an inductively added PR, so the layer
inputs of the trained nodes do not change when PRs are added. `return_states=True` returns
them (`[layers - 1, N, F]`, the inputs of layers 1..L-1) with the output; a later call on a
small local graph (the new PRs and their neighbours) passes them back as `frozen` with
`frozen_mask` marking the trained nodes, whose layer inputs are then taken from `frozen`
instead of being recomputed from their (absent) neighbourhoods.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core.fusion import materialize
from jaxlab.nn.linear import Dense

__all__ = ["HeteroGCN", "RelationGroups", "group_by_relation", "grouped_matmul", "pair_scores"]


@flax.struct.dataclass
class RelationGroups:
    """The (receiver, relation) pairs of a fixed edge list, pairs ordered by relation.

    `edge_pair` int `[M]`: each edge's pair; `pair_receiver` int `[P]`; `sizes`: pairs per
    relation (static, so the per-relation matmuls have static shapes; padding pairs receive
    no edge and add zero to the last node).
    """

    edge_pair: jax.Array
    pair_receiver: jax.Array
    sizes: tuple[int, ...] = flax.struct.field(pytree_node=False)


def group_by_relation(receivers: np.ndarray, relation: np.ndarray, num_nodes: int, num_relations: int,
                      multiple: int = 8) -> RelationGroups:
    """`RelationGroups` of an edge list (host-side, once per graph); each relation's pair count
    is rounded up to `multiple` so a slightly different graph can share shapes."""
    receivers, relation = np.asarray(receivers, np.int64), np.asarray(relation, np.int64)
    if receivers.shape != relation.shape or receivers.ndim != 1:
        raise ValueError(f"receivers {receivers.shape} and relation {relation.shape} must be equal 1-D shapes")
    if len(relation) and (relation.min() < 0 or relation.max() >= num_relations):
        raise ValueError(f"relation ids must lie in [0, {num_relations}), got [{relation.min()}, {relation.max()}]")
    key = relation * num_nodes + receivers
    uniq, inverse = np.unique(key, return_inverse=True)
    rel_of, recv_of = uniq // num_nodes, uniq % num_nodes
    counts = np.bincount(rel_of, minlength=num_relations)
    sizes = -(-counts // multiple) * multiple
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = starts[rel_of] + (np.arange(len(uniq)) - first[rel_of])      # pair -> padded slot
    pair_receiver = np.full(int(sizes.sum()), num_nodes - 1, np.int32)
    pair_receiver[slot] = recv_of
    return RelationGroups(edge_pair=jnp.asarray(slot[inverse].astype(np.int32)),
                          pair_receiver=jnp.asarray(pair_receiver), sizes=tuple(int(x) for x in sizes))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def grouped_matmul(x, w, sizes):
    """`concat_r(x[rows of group r] @ w[r])`: `x` `[P, F]` in consecutive groups of `sizes`
    rows (static), `w` `[R, F, G]` -> `[P, G]`.

    The backward pass is written out: autodiff of the slices would give `dx` as a sum of
    one zero-padded `[P, F]` array per group, which XLA fuses into the gather that reads
    `dx` per edge and so re-evaluates for each of its elements (36 ms of a 190 ms CORAL
    step); here `dx` is one concatenation, materialised once (`core.fusion`).
    """
    return jnp.concatenate(_group_products(x, w, sizes))


def _group_products(x, w, sizes):
    parts, start = [], 0
    for r, size in enumerate(sizes):
        if size:
            parts.append(x[start:start + size] @ w[r])
            start += size
    return parts


def _grouped_matmul_fwd(x, w, sizes):
    return grouped_matmul(x, w, sizes), (x, w)


def _grouped_matmul_bwd(sizes, res, g):
    x, w = res
    dx_parts, dw, start = [], [], 0
    for r, size in enumerate(sizes):
        if size:
            gr, xr = g[start:start + size], x[start:start + size]
            dx_parts.append(gr @ w[r].T)
            dw.append(xr.T @ gr)
            start += size
        else:
            dw.append(jnp.zeros(w.shape[1:], w.dtype))
    dw.extend(jnp.zeros(w.shape[1:], w.dtype) for _ in range(len(sizes), w.shape[0]))
    (dx,) = materialize(jnp.concatenate(dx_parts).astype(x.dtype))
    return dx, jnp.stack(dw).astype(w.dtype)


grouped_matmul.defvjp(_grouped_matmul_fwd, _grouped_matmul_bwd)


class HeteroGCN(nn.Module):
    """Node representations `[N, features]` of the socio-technical graph.

    Call with `emb_index` int `[N]`, `senders`, `receivers`, `relation` int `[M]` and
    `weight` float `[M]` (padding edges have weight 0). N and M are static (padded budgets).
    """

    num_embeddings: int
    num_relations: int
    features: int = 64
    layers: int = 2
    conv: str = "rgcn"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, emb_index, senders, receivers, relation, weight, frozen=None, frozen_mask=None,
                 return_states=False, groups: RelationGroups | None = None):
        n = emb_index.shape[0]
        if groups is not None and self.conv != "rgcn":
            raise ValueError(f"groups apply to conv='rgcn', not {self.conv!r}")
        x0 = nn.Embed(self.num_embeddings, self.features, embedding_init=nn.initializers.normal(0.1),
                      name="embed")(emb_index)
        deg = jax.ops.segment_sum(weight, receivers, n) + 1.0
        inv = jax.lax.rsqrt(deg)
        if groups is not None:
            p = groups.pair_receiver.shape[0]
            deg_p = jax.ops.segment_sum(weight, groups.edge_pair, p)
            coef = (weight / jnp.maximum(deg_p[groups.edge_pair], 1e-6)).astype(self.dtype)
        elif self.conv == "rgcn":
            seg = receivers * self.num_relations + relation
            deg_r = jax.ops.segment_sum(weight, seg, n * self.num_relations)
            coef = (weight / jnp.maximum(deg_r[seg], 1e-6)).astype(self.dtype)
        else:
            coef = (weight * inv[senders] * inv[receivers]).astype(self.dtype)
        h = x0.astype(self.dtype)
        states = []
        for layer in range(self.layers):
            if layer > 0:
                states.append(h.astype(jnp.float32))
                if frozen is not None:
                    h = jnp.where(frozen_mask[:, None], frozen[layer - 1].astype(self.dtype), h)
            if self.conv == "rgcn":
                w = self.param(f"relation_{layer}", nn.initializers.lecun_normal(batch_axis=(0,)),
                               (self.num_relations, self.features, self.features))
                w = w.astype(self.dtype)
            own = Dense(self.features, dtype=self.dtype, name=f"self_{layer}")(h)
            own = own * (inv * inv)[:, None].astype(own.dtype)
            if groups is not None:
                agg = jax.ops.segment_sum(coef[:, None] * h[senders], groups.edge_pair, groups.pair_receiver.shape[0])
                out = jax.ops.segment_sum(grouped_matmul(agg, w, groups.sizes), groups.pair_receiver, n) + own
            else:
                if self.conv == "rgcn":
                    msg = jnp.einsum("nf,rfg->rng", h, w)[relation, senders]
                else:
                    msg = Dense(self.features, use_bias=False, dtype=self.dtype, name=f"linear_{layer}")(h)[senders]
                out = jax.ops.segment_sum(coef[:, None] * msg, receivers, n) + own
            h = nn.relu(out) if layer < self.layers - 1 else out
        out = (h + x0.astype(self.dtype)).astype(jnp.float32)
        if return_states:
            return out, (jnp.stack(states) if states else jnp.zeros((0, n, self.features), jnp.float32))
        return out


def pair_scores(h, a, b):
    """<h[a], h[b]> over the last axis: `a` int `[B]`, `b` int `[B, K]` -> `[B, K]`."""
    return jnp.einsum("bf,bkf->bk", h[a], h[b])
