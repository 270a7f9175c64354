"""MeGuide's two graph metrics: Feature Smoothness and Connection Failure Distance.

The paper (Bai, Ren & Zhang, IJIS 2022, arXiv:2112.15015) names the metrics but its
definitions are not available to us. What is here:

* `feature_smoothness` / `label_smoothness`: the graph-level definitions of CS-GNN
  (Hou et al., ICLR 2020), which MeGuide's metric name follows [verified for CS-GNN].
* `node_smoothness`: a per-node form, s_v = ||x_v - mean_{u in N(v)} x_u||^2 / d
  [reconstruction].
* `connection_failure_distance`: the expected number of steps a random walk from v
  makes before it fails `patience` times to add a new connected training node
  [reconstruction of "the hop at which expansion stops adding connected training nodes"].

All reconstruction choices are config fields of `jaxlab.meguide.configs.MeGuideSamplerConfig`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from jaxlab.graph.data import scale_features


def _edges(adj):
    """Undirected edges (u < v) of a symmetric adjacency, each once."""
    coo = sp.triu(sp.csr_matrix(adj), k=1).tocoo()
    return coo.row.astype(np.int64), coo.col.astype(np.int64)


def feature_smoothness(adj, x, scaling: str = "minmax") -> float:
    """CS-GNN feature smoothness  lambda_f = 2 ||sum_{(u,v) in E} (x_u - x_v)^2||_1 / (|E| d).

    `x [N, d]` is scaled first (`scaling`: "minmax" as CS-GNN does, "standard" or
    "none"; the value depends on it). Larger: neighbours differ more from the node,
    i.e. aggregation brings more new information. E: undirected edges, each once.
    """
    x = scale_features(x, np.arange(x.shape[0]), scaling).astype(np.float64)
    u, v = _edges(adj)
    if len(u) == 0:
        return 0.0
    return float(2.0 * np.sum((x[u] - x[v]) ** 2) / (len(u) * x.shape[1]))


def label_smoothness(adj, y) -> float:
    """CS-GNN label smoothness  lambda_l = 2 |{(u,v) in E: y_u != y_v}| / |E|  (note
    the factor 2 of the spec: the value lies in [0, 2])."""
    u, v = _edges(adj)
    if len(u) == 0:
        return 0.0
    y = np.asarray(y)
    diff = np.any(y[u] != y[v], axis=-1) if y.ndim == 2 else y[u] != y[v]
    return float(2.0 * np.mean(diff))


def node_smoothness(adj, x, scaling: str = "minmax") -> np.ndarray:
    """Per-node feature smoothness [reconstruction]:
    s_v = ||x_v - mean_{u in N(v)} x_u||^2 / d; 0 for isolated nodes. Returns [N]."""
    x = scale_features(x, np.arange(x.shape[0]), scaling).astype(np.float64)
    a = sp.csr_matrix(adj, dtype=np.float64)
    deg = np.asarray(a.sum(1)).ravel()
    mean = (a @ x) / np.maximum(deg, 1)[:, None]
    s = np.sum((x - mean) ** 2, 1) / x.shape[1]
    return np.where(deg > 0, s, 0.0)


def walk_stop_lengths(indptr, indices, train_mask, roots, max_len: int, patience: int, rng):
    """Random walks from `roots` that stop after `patience` connection failures.

    A step *fails* when it lands on a node this walk already visited, on a
    non-training node, or cannot move (no neighbours). Returns
    (walks [R, max_len + 1], added [R, max_len + 1] bool): `added[r, t]` marks the
    steps that added a new connected training node (column 0, the root, is True); the
    walk's CFD sample is `added[r, 1:].sum()`. [reconstruction]
    """
    r = len(roots)
    walks = np.empty((r, max_len + 1), np.int64)
    cur = np.asarray(roots, np.int64)
    walks[:, 0] = cur
    fails = np.zeros(r, np.int64)
    added = np.zeros((r, max_len + 1), bool)
    added[:, 0] = True
    alive = np.ones(r, bool)
    for t in range(1, max_len + 1):
        start = indptr[cur]
        deg = indptr[cur + 1] - start
        off = (rng.random(r) * deg).astype(np.int64)
        nxt = np.where(deg > 0, indices[np.minimum(start + off, max(len(indices) - 1, 0))], cur)
        seen = np.any(walks[:, :t] == nxt[:, None], axis=1)
        failed = (deg == 0) | seen | ~train_mask[nxt]
        fails += alive & failed
        alive &= fails < patience
        walks[:, t] = np.where(alive, nxt, walks[:, t - 1])
        added[:, t] = alive & ~failed
        cur = np.where(alive, nxt, cur)
    return walks, added


def connection_failure_distance(adj, train_mask=None, num_walks: int = 4, max_len: int = 8,
                                patience: int = 1, seed: int = 0) -> np.ndarray:
    """Connection failure distance per node [reconstruction]: the mean, over
    `num_walks` random walks from v, of the number of new connected training nodes the
    walk adds before its `patience`-th connection failure (see `walk_stop_lengths`),
    capped at `max_len`. Small in sparse / tree-poor / non-training regions, large where
    walks keep finding new training nodes. Returns float [N]."""
    a = sp.csr_matrix(adj)
    a.sort_indices()
    n = a.shape[0]
    tm = np.ones(n, bool) if train_mask is None else np.asarray(train_mask, bool)
    rng = np.random.default_rng(seed)
    roots = np.repeat(np.arange(n), num_walks)
    _, added = walk_stop_lengths(a.indptr.astype(np.int64), a.indices.astype(np.int64), tm,
                                  roots, max_len, patience, rng)
    return added[:, 1:].sum(1).reshape(n, num_walks).mean(1)
