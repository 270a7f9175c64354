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

Fast inductive scoring: messages never flow out of an inductively added PR, so the layer
inputs of the trained nodes do not change when PRs are added. `return_states=True` returns
them (`[layers - 1, N, F]`, the inputs of layers 1..L-1) with the output; a later call on a
small local graph (the new PRs and their neighbours) passes them back as `frozen` with
`frozen_mask` marking the trained nodes, whose layer inputs are then taken from `frozen`
instead of being recomputed from their (absent) neighbourhoods.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["HeteroGCN", "pair_scores"]


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
                 return_states=False):
        n = emb_index.shape[0]
        x0 = nn.Embed(self.num_embeddings, self.features, embedding_init=nn.initializers.normal(0.1),
                      name="embed")(emb_index)
        deg = jax.ops.segment_sum(weight, receivers, n) + 1.0
        inv = jax.lax.rsqrt(deg)
        if self.conv == "rgcn":
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
                hw = jnp.einsum("nf,rfg->rng", h, w.astype(self.dtype))
                msg = hw[relation, senders]
            else:
                msg = nn.Dense(self.features, use_bias=False, dtype=self.dtype, name=f"linear_{layer}")(h)[senders]
            own = nn.Dense(self.features, dtype=self.dtype, name=f"self_{layer}")(h)
            out = jax.ops.segment_sum(coef[:, None] * msg, receivers, n) + own * (inv * inv)[:, None].astype(own.dtype)
            h = nn.relu(out) if layer < self.layers - 1 else out
        out = (h + x0.astype(self.dtype)).astype(jnp.float32)
        if return_states:
            return out, (jnp.stack(states) if states else jnp.zeros((0, n, self.features), jnp.float32))
        return out


def pair_scores(h, a, b):
    """<h[a], h[b]> over the last axis: `a` int `[B]`, `b` int `[B, K]` -> `[B, K]`."""
    return jnp.einsum("bf,bkf->bk", h[a], h[b])
