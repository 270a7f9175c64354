"""Host-side (NumPy) subgraph samplers yielding padded `GraphsTuple`s.

Every sampler draws node sets from a training adjacency (CSR, symmetric), extracts the
subgraph, attaches aggregation coefficients for the model (`"gcn"`: D^-1/2 (A+I) D^-1/2
with explicit self-loop edges; `"sage"`: D^-1 A; `"gat"`: A) and pads it to a bucketed
budget (`jaxlab.graph.graphs.bucket`), so a jitted step compiles once per bucket.
`sampler.batch(step)` is a pure function of (seed, step): a resumed run sees the same
subgraphs.

* GraphSAINT (Zeng et al., ICLR 2020): node (degree-proportional, with replacement),
  edge (p_e ∝ 1/deg_u + 1/deg_v) and random-walk (uniform roots, length-h walks)
  samplers on induced subgraphs, with the aggregator normalisation
  alpha_{u,v} = p_v / p_{u,v} (edge u -> v, coefficients built with full-graph
  degrees) and loss normalisation lambda_v = 1 / (p_v |V_train|), both estimated from
  `estimate_normalization` pre-sampling counts (`norm_aggr`, `norm_loss`).
* Cluster-GCN (Chiang et al., KDD 2019): pymetis partitions; a batch is the induced
  subgraph of `clusters_per_batch` random clusters (an epoch visits every cluster).
* GraphSAGE neighbour sampling (Hamilton et al., 2017): seeds, then `fanouts[k]`
  neighbours per frontier node without replacement; the subgraph holds the sampled edges
  (towards the seeds) and the loss counts seeds only.

Samplers without SAINT normalisation normalise each subgraph with its own degrees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from jaxlab.graph import graphs as G


def rng_for(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step), 7919])


def with_ids(graph, nodes):
    """`graph` (padded by `pad_fast`) with `nodes["ids"]`: the global ids `nodes` of its
    real nodes, -1 on padding nodes (int32)."""
    ids = np.full(graph.n_node.sum(), -1, np.int32)
    ids[:len(nodes)] = nodes
    return graph._replace(nodes={**graph.nodes, "ids": ids})


def induced_edges(indptr, indices, nodes, local):
    """Edges of the subgraph induced by `nodes` (sorted unique int array) in a CSR
    adjacency, vectorised. `local` is a scratch `[N]` int array filled with -1.

    Returns (senders_local, receivers_local, edge_ids) where edge_ids index the CSR
    `indices`/`data` arrays (row = receiver, column = sender). With sorted `nodes` and
    sorted CSR rows the edges come in (receiver, sender) order."""
    k = len(nodes)
    local[nodes] = np.arange(k, dtype=local.dtype)
    starts = np.take(indptr, nodes)
    lens = np.take(indptr, nodes + 1)
    lens -= starts
    ends = np.cumsum(lens)
    total = int(ends[-1]) if k else 0
    if total == 0:
        local[nodes] = -1
        e = np.zeros(0, np.int64)
        return e, e, e
    # CSR positions of the rows' entries, and their columns' local ids (-1: outside)
    eid = np.repeat(starts - ends + lens, lens)
    eid += np.arange(total, dtype=eid.dtype)
    cols = np.take(local, np.take(indices, eid))
    local[nodes] = -1
    keep = cols >= 0
    rows = np.repeat(np.arange(k, dtype=cols.dtype), lens)
    return np.compress(keep, cols), np.compress(keep, rows), np.compress(keep, eid)


class Sampler:
    """Base class: subclasses implement `sample_nodes(rng) -> sorted unique node ids`
    (or override `sample`).

    Args:
      adj: symmetric CSR training adjacency `[N, N]` (no self loops).
      nodes: dict of per-node arrays `[N, ...]` (at least "x" and "y").
      train_mask: bool `[N]`, nodes whose loss counts.
      model: "gcn" | "sage" | "gat" (which aggregation coefficients to attach).
      norm_aggr / norm_loss: GraphSAINT normalisations (need `estimate_normalization`).
      budget_multiple, budget_growth: padding bucket ladder (see `graphs.bucket`).
      budget_presample: size one padding budget from the largest of this many
        subgraphs (steps 0, 1, ...) plus `budget_headroom`, rounded up to a multiple
        of 8; every subgraph that fits uses it (one compile, a few percent of padding)
        and the rest fall back to the ladder. 0: ladder only (up to `budget_growth`x
        padding).
      reverse_index: attach each subgraph's reverse-edge index (`graphs.reverse_index`,
        linear time on the host) when `adj` is symmetric, so the layers' backward pass
        does not search for it on the device every step.
    """

    saint = False

    def __init__(self, adj, nodes, train_mask, model: str = "gcn", seed: int = 0,
                 norm_aggr: bool = False, norm_loss: bool = False,
                 budget_multiple: int = 64, budget_growth: float = 1.25,
                 budget_presample: int = 8, budget_headroom: float = 1.05,
                 reverse_index: bool = True):
        a = sp.csr_matrix(adj, dtype=np.float32)
        a.sort_indices()
        self.adj = a
        pattern = sp.csr_matrix((np.ones(a.nnz, np.int8), a.indices, a.indptr), shape=a.shape)
        # the map needs a symmetric stored structure, whatever the weights
        self.reverse_index = bool(reverse_index) and (pattern != pattern.T).nnz == 0
        self.indptr = a.indptr.astype(np.int64)
        self.indices = a.indices.astype(np.int64)
        self.n = a.shape[0]
        self.deg = np.diff(self.indptr).astype(np.float64)
        self.nodes = nodes
        self.train_mask = np.asarray(train_mask, bool)
        self.train_nodes = np.flatnonzero(self.train_mask)
        if model not in G.AGGREGATION_NORM:
            raise ValueError(f"model must be one of {sorted(G.AGGREGATION_NORM)}, got {model!r}")
        self.model = model
        self.seed = seed
        self.norm_aggr = norm_aggr
        self.norm_loss = norm_loss
        self.budget_multiple = budget_multiple
        self.budget_growth = budget_growth
        self.budget_presample = int(budget_presample)
        self.budget_headroom = float(budget_headroom)
        self._budget = None
        # per-sampler scratch: global -> local ids (-1 outside the subgraph), a mark per
        # node (all False between calls), and the column indices in int32 for gathers
        self._local = np.full(self.n, -1, np.int32 if self.n < 2**31 else np.int64)
        self._mark = np.zeros(self.n, bool)
        self._cols = self.indices.astype(self._local.dtype)
        self.node_count = None
        self.edge_count = None
        self.num_presampled = 0
        rows = np.repeat(np.arange(self.n), np.diff(self.indptr))
        # full-graph coefficients per CSR entry (receiver = row, sender = column)
        if model == "gcn":
            inv = 1.0 / np.sqrt(self.deg + 1.0)
            self._coef = (inv[rows] * inv[self.indices]).astype(np.float32)
            self._self_coef = (1.0 / (self.deg + 1.0)).astype(np.float32)
        elif model == "sage":
            self._coef = (1.0 / np.maximum(self.deg[rows], 1.0)).astype(np.float32)
        else:
            self._coef = np.ones(len(self.indices), np.float32)

    # -- sampling -------------------------------------------------------------------
    def sample_nodes(self, rng) -> np.ndarray:
        raise NotImplementedError

    def unique_nodes(self, *ids) -> np.ndarray:
        """`np.unique(np.concatenate(ids))` (int64): a mark per node and one scan of the
        marks when that is cheaper than sorting (the draws are not few next to N)."""
        m = sum(len(i) for i in ids)
        if m * 256 < self.n:
            return np.unique(np.concatenate(ids)).astype(np.int64, copy=False)
        mark = self._mark
        for i in ids:
            mark[i] = True
        nodes = np.flatnonzero(mark).astype(np.int64, copy=False)
        mark[nodes] = False
        return nodes

    def sample(self, rng):
        """Returns (nodes, senders_local, receivers_local, edge_ids, loss_mask)."""
        nodes = self.sample_nodes(rng)
        s, r, eid = induced_edges(self.indptr, self._cols, nodes, self._local)
        return nodes, s, r, eid, self.train_mask[nodes]

    def sample_step(self, step: int):
        """`sample` for a step: a pure function of (seed, step)."""
        return self.sample(rng_for(self.seed, step))

    def estimate_normalization(self, num_subgraphs: int, seed: int | None = None):
        """Pre-samples `num_subgraphs` subgraphs and counts how often each node and each
        (directed CSR) edge appears: p_v ≈ C_v / n, p_{u,v} ≈ C_{u,v} / n (GraphSAINT)."""
        base = self.seed + 1_000_003 if seed is None else seed
        nc = np.zeros(self.n, np.int64)
        ec = np.zeros(len(self.indices), np.int64)
        for i in range(num_subgraphs):
            nodes, _, _, eid, _ = self.sample(rng_for(base, i))
            nc[nodes] += 1
            ec += np.bincount(eid, minlength=len(ec))
        self.node_count, self.edge_count, self.num_presampled = nc, ec, num_subgraphs
        return nc / num_subgraphs, ec / num_subgraphs

    def _require_counts(self):
        if (self.norm_aggr or self.norm_loss) and self.node_count is None:
            raise RuntimeError("call estimate_normalization(num_subgraphs) before sampling "
                               "with norm_aggr or norm_loss")

    # -- coefficients ---------------------------------------------------------------
    def edge_weights(self, nodes, s, r, eid):
        """Coefficients of the sampled edges `s -> r` (float32, in their order) and of the
        GCN self loops (float32 `[len(nodes)]`, None for other models)."""
        k = len(nodes)
        if self.norm_aggr:
            w = self._coef[eid].astype(np.float64)
            cv = self.node_count[nodes][r].astype(np.float64)
            ce = np.maximum(self.edge_count[eid], 1).astype(np.float64)
            w = np.clip(w * cv / ce, 0.0, 1e4).astype(np.float32)
            return w, (self._self_coef[nodes] if self.model == "gcn" else None)
        # normalise with the subgraph's own degrees
        d = np.bincount(r, minlength=k).astype(np.float64)
        if self.model == "gcn":
            inv = 1.0 / np.sqrt(d + 1.0)
            # the product in float64, rounded once to float32
            w = np.multiply(inv[s], inv[r], out=np.empty(len(s), np.float32), casting="same_kind")
            return w, (1.0 / (d + 1.0)).astype(np.float32)
        if self.model == "sage":
            return (1.0 / np.maximum(d, 1.0)).astype(np.float32)[r], None
        return np.ones(len(s), np.float32), None

    @staticmethod
    def _csr_order(k, s, r, *more):
        """(s, r, *more) sorted by (receiver, sender) (stable; unchanged when they already
        are, as induced subgraphs of sorted nodes are) and the sort keys."""
        key = np.asarray(r, np.int32 if k < 46_000 else np.int64) * k  # k * k < 2**31
        key += s
        if len(key) > 1 and np.any(key[1:] < key[:-1]):
            order = np.argsort(key, kind="stable")
            return (key[order], s[order], r[order], *(m[order] for m in more))
        return (key, s, r, *more)

    def coefficients(self, nodes, s, r, eid):
        """Edge list (with GCN self loops) and coefficients for the sampled subgraph,
        sorted by (receiver, sender)."""
        k = len(nodes)
        w, self_w = self.edge_weights(nodes, s, r, eid)
        # Edges in (receiver, sender) order, the CSR order of the layers' fast path:
        # induced subgraphs of a CSR matrix come sorted; self loops are merged in.
        key, s, r, w = self._csr_order(k, s, r, w)
        if self_w is not None:
            ar = np.arange(k)
            at = np.searchsorted(key, ar * (k + 1))
            s, r = np.insert(s, at, ar), np.insert(r, at, ar)
            w = np.insert(w, at, self_w.astype(np.float32))
        return s, r, w

    def assemble(self, nodes, s, r, eid, mask, loss_weight=None, reverse: bool = False):
        """The padded GraphsTuple of a sampled subgraph: `coefficients`' edges and the node
        arrays written straight into buffers of the padding budget, as
        `with_ids(graphs.pad_fast(...), nodes)` pads them; with `reverse`, the edges'
        reverse index (the sampled subgraph of a symmetric structure is symmetric)."""
        k, e0 = len(nodes), len(s)
        w, self_w = self.edge_weights(nodes, s, r, eid)
        key, s, r, w = self._csr_order(k, s, r, w)
        e = e0 + (k if self_w is not None else 0)
        budget = self.padding_budget(k, e)
        n_edge = budget.n_edge
        snd = np.full(n_edge, k, np.int32)
        rcv = np.full(n_edge, k, np.int32)
        wt = np.zeros(n_edge, np.float32)
        if self_w is None:
            snd[:e0], rcv[:e0], wt[:e0] = s, r, w
        else:
            # self loop i goes before row i's edges with sender >= i (np.insert's place):
            # edge j moves by the loops of rows r_j and before; the loops take the rest
            pos = np.arange(e0)
            pos += r
            pos += s >= r
            free = np.ones(e, bool)
            free[pos] = False
            at = np.flatnonzero(free)
            ar = np.arange(k)
            snd[pos], rcv[pos], wt[pos] = s, r, w
            snd[at], rcv[at], wt[at] = ar, ar, self_w
        edges = wt
        if reverse:
            rev = np.arange(n_edge, dtype=np.int32)
            rev[:e] = G.reverse_index(snd[:e], rcv[:e], check=False)
            edges = {"weight": wt, "reverse": rev}
        n_node = budget.n_node
        out = {}
        for name, v in self.nodes.items():
            v = np.asarray(v)
            buf = np.empty((n_node, *v.shape[1:]), v.dtype)
            np.take(v, nodes, axis=0, out=buf[:k], mode="clip")  # nodes are in range
            buf[k:] = 0
            out[name] = buf
        extra = {"mask": mask} if loss_weight is None else {"mask": mask, "loss_weight": loss_weight}
        for name, v in extra.items():
            buf = np.zeros(n_node, v.dtype)
            buf[:k] = v
            out[name] = buf
        ids = np.full(n_node, -1, np.int32)
        ids[:k] = nodes
        out["ids"] = ids
        counts = np.zeros((2, budget.n_graph), np.int32)
        counts[:, 0] = k, e
        counts[:, 1] = n_node - k, n_edge - e
        return G._jraph().GraphsTuple(nodes=out, edges=edges, senders=snd, receivers=rcv,
                                      n_node=counts[0], n_edge=counts[1], globals=None)

    def batch(self, step: int):
        """Padded GraphsTuple for `step`; nodes: the arrays of `nodes` (x, y, ...), "mask",
        "loss_weight" (with norm_loss) and "ids", the global id of each node (int32, -1
        on padding nodes)."""
        self._require_counts()
        nodes, s, r, eid, mask = self.sample_step(step)
        lw = None
        if self.norm_loss:
            c = np.maximum(self.node_count[nodes], 1).astype(np.float64)
            lw = self.num_presampled / (c * max(len(self.train_nodes), 1))
            lw = np.where(mask, lw, 0.0).astype(np.float32)
        return self.assemble(nodes, s, r, eid, mask, lw, reverse=self.reverse_index)

    def steps_per_epoch(self) -> int:
        """Batches that cover about |V_train| nodes (GraphSAINT's epoch convention)."""
        return 1

    # -- padding --------------------------------------------------------------------
    def _edge_count(self, nodes, s) -> int:
        return len(s) + (len(nodes) if self.model == "gcn" else 0)  # + GCN self loops

    def padding_budget(self, num_nodes: int, num_edges: int) -> G.Budget:
        """The presampled budget if the subgraph fits it, else the ladder's (a pure
        function of the sampler's seed and the sizes, so resumed runs pad alike)."""
        if self.budget_presample > 0 and self._budget is None:
            sizes = []
            for i in range(self.budget_presample):
                nodes, s = self.sample_step(i)[:2]
                sizes.append((len(nodes), self._edge_count(nodes, s)))
            n, e = np.max(np.asarray(sizes), axis=0)
            m = 8  # one budget, so no ladder to align to: round to SIMD-friendly sizes
            up = lambda x: int(math.ceil(x * self.budget_headroom / m)) * m
            self._budget = G.Budget(max(up(n + 1), n + 1 + m), max(up(e), e + 1))
        b = self._budget
        if b is not None and num_nodes + 1 <= b.n_node and num_edges <= b.n_edge:
            return b
        return G.Budget(G.bucket(num_nodes, self.budget_multiple, self.budget_growth),
                        G.bucket(num_edges, self.budget_multiple, self.budget_growth))


class SaintNodeSampler(Sampler):
    """GraphSAINT node sampler: `budget` draws with replacement, p_v ∝ deg_v."""

    saint = True

    def __init__(self, *args, budget: int = 1000, **kw):
        super().__init__(*args, **kw)
        self.budget = budget
        p = self.deg[self.train_nodes] + 1e-12
        self.p = p / p.sum()
        self._cdf = np.cumsum(self.p)

    def sample_nodes(self, rng):
        u = rng.random(self.budget) * self._cdf[-1]
        u.sort()  # the draws' order is irrelevant to the node set; sorted, the search is faster
        idx = np.minimum(np.searchsorted(self._cdf, u, side="right"), len(self._cdf) - 1)
        return self.unique_nodes(self.train_nodes[idx])

    def steps_per_epoch(self):
        return max(1, math.ceil(len(self.train_nodes) / self.budget))


class SaintEdgeSampler(Sampler):
    """GraphSAINT edge sampler: `num_edges` undirected edges with replacement,
    p_{u,v} ∝ 1/deg_u + 1/deg_v; the subgraph is induced on their endpoints."""

    saint = True

    def __init__(self, *args, num_edges: int = 500, **kw):
        super().__init__(*args, **kw)
        self.num_edges = num_edges
        coo = sp.triu(self.adj, k=1).tocoo()
        tm = self.train_mask
        keep = tm[coo.row] & tm[coo.col]
        self.eu, self.ev = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64)
        p = 1.0 / self.deg[self.eu] + 1.0 / self.deg[self.ev]
        self.p = p / p.sum()
        self._cdf = np.cumsum(self.p)

    def sample_nodes(self, rng):
        u = rng.random(self.num_edges) * self._cdf[-1]
        u.sort()  # as in SaintNodeSampler
        idx = np.minimum(np.searchsorted(self._cdf, u, side="right"), len(self._cdf) - 1)
        return self.unique_nodes(self.eu[idx], self.ev[idx])

    def steps_per_epoch(self):
        return max(1, math.ceil(len(self.train_nodes) / (2 * self.num_edges)))


def random_walks(indptr, indices, roots, length: int, rng):
    """Uniform random walks `[len(roots), length + 1]` (column 0 = roots); a node
    without neighbours stays put."""
    walks = np.empty((len(roots), length + 1), np.int64)
    cur = np.asarray(roots, np.int64)
    walks[:, 0] = cur
    for t in range(1, length + 1):
        start = indptr[cur]
        deg = indptr[cur + 1] - start
        off = (rng.random(len(cur)) * deg).astype(np.int64)
        nxt = indices[np.minimum(start + off, len(indices) - 1)] if len(indices) else cur
        cur = np.where(deg > 0, nxt, cur)
        walks[:, t] = cur
    return walks


class SaintRWSampler(Sampler):
    """GraphSAINT random-walk sampler: `num_roots` uniform training roots (with
    replacement), walks of `walk_length`; induced subgraph on the visited nodes."""

    saint = True

    def __init__(self, *args, num_roots: int = 200, walk_length: int = 2, **kw):
        super().__init__(*args, **kw)
        self.num_roots = num_roots
        self.walk_length = walk_length

    def sample_nodes(self, rng):
        roots = self.train_nodes[rng.integers(0, len(self.train_nodes), self.num_roots)]
        return self.unique_nodes(random_walks(self.indptr, self.indices, roots, self.walk_length, rng).ravel())

    def steps_per_epoch(self):
        return max(1, math.ceil(len(self.train_nodes) / (self.num_roots * (self.walk_length + 1))))


def metis_parts(adj, num_parts: int, seed: int = 0) -> np.ndarray:
    """Cluster id per node from pymetis (k-way) on a symmetric adjacency."""
    import pymetis

    a = sp.csr_matrix(adj)
    if num_parts <= 1:
        return np.zeros(a.shape[0], np.int64)
    opts = pymetis.Options(seed=seed) if hasattr(pymetis, "Options") else None
    kw = {"options": opts} if opts is not None else {}
    if hasattr(pymetis, "CSRAdjacency"):
        csr = pymetis.CSRAdjacency(adj_starts=a.indptr.astype(np.int32), adjacent=a.indices.astype(np.int32))
        _, parts = pymetis.part_graph(num_parts, adjacency=csr, **kw)
    else:
        _, parts = pymetis.part_graph(num_parts, xadj=a.indptr, adjncy=a.indices, **kw)
    return np.asarray(parts, np.int64)


class ClusterSampler(Sampler):
    """Cluster-GCN: METIS partition of the training nodes (or of all nodes with
    `partition_all`, the loss still counting training nodes only) into `num_parts`;
    batch = induced subgraph of `clusters_per_batch` clusters, an epoch is a random
    permutation of the clusters (pure function of seed and epoch)."""

    def __init__(self, *args, num_parts: int = 50, clusters_per_batch: int = 5,
                 partition_all: bool = False, **kw):
        super().__init__(*args, **kw)
        members = np.arange(self.n) if partition_all else self.train_nodes
        sub = self.adj[members][:, members]
        parts = metis_parts(sub, num_parts, seed=self.seed)
        self.num_parts = num_parts
        self.q = clusters_per_batch
        order = np.argsort(parts, kind="stable")
        bounds = np.searchsorted(parts[order], np.arange(num_parts + 1))
        self.clusters = [np.sort(members[order[bounds[i]:bounds[i + 1]]])
                         for i in range(num_parts)]
        self._perm = (None, None)

    def steps_per_epoch(self):
        return max(1, math.ceil(self.num_parts / self.q))

    def sample(self, rng):
        raise NotImplementedError  # uses the step, see batch

    def sample_step(self, step):
        spe = self.steps_per_epoch()
        epoch, i = divmod(step, spe)
        if self._perm[0] != epoch:  # one permutation per epoch, drawn once
            self._perm = (epoch, rng_for(self.seed, 10_000_000 + epoch).permutation(self.num_parts))
        perm = self._perm[1]
        chosen = perm[i * self.q:(i + 1) * self.q]
        nodes = self.unique_nodes(*(self.clusters[c] for c in chosen))
        s, r, eid = induced_edges(self.indptr, self._cols, nodes, self._local)
        return nodes, s, r, eid, self.train_mask[nodes]

    def estimate_normalization(self, num_subgraphs, seed=None):
        nc = np.zeros(self.n, np.int64)
        ec = np.zeros(len(self.indices), np.int64)
        for i in range(num_subgraphs):
            nodes, _, _, eid, _ = self.sample_step(i)
            nc[nodes] += 1
            ec += np.bincount(eid, minlength=len(ec))
        self.node_count, self.edge_count, self.num_presampled = nc, ec, num_subgraphs
        return nc / num_subgraphs, ec / num_subgraphs



class NeighborSampler(Sampler):
    """GraphSAGE neighbour sampling: `batch_size` seed training nodes per step (an epoch
    is a permutation of them); hop k samples up to `fanouts[k]` in-neighbours of each
    frontier node without replacement. The subgraph holds the sampled edges (neighbour ->
    frontier node) and the loss counts seeds only."""

    def __init__(self, *args, batch_size: int = 256, fanouts: Sequence[int] = (10, 5), **kw):
        super().__init__(*args, **kw)
        self.batch_size = batch_size
        self.fanouts = tuple(fanouts)

    def steps_per_epoch(self):
        return max(1, math.ceil(len(self.train_nodes) / self.batch_size))

    def seeds(self, step):
        spe = self.steps_per_epoch()
        epoch, i = divmod(step, spe)
        perm = rng_for(self.seed, 20_000_000 + epoch).permutation(self.train_nodes)
        return perm[i * self.batch_size:(i + 1) * self.batch_size]

    def sample_neighbors(self, frontier, fanout, rng):
        """(neighbour, frontier node) pairs: up to `fanout` per frontier node."""
        starts = self.indptr[frontier]
        lens = self.indptr[frontier + 1] - starts
        total = int(lens.sum())
        if total == 0:
            z = np.zeros(0, np.int64)
            return z, z
        offs = np.cumsum(lens) - lens
        eid = np.repeat(starts - offs, lens) + np.arange(total)
        row = np.repeat(np.arange(len(frontier)), lens)
        key = rng.random(total)
        order = np.lexsort((key, row))
        rank = np.arange(total) - np.repeat(offs, lens)  # rank within row after sorting
        keep = order[rank < fanout]
        return self.indices[eid[keep]], frontier[row[keep]]

    def sample_step(self, step):
        rng = rng_for(self.seed, step)
        seeds = self.seeds(step)
        frontier = seeds
        src_all, dst_all = [], []
        for f in self.fanouts:
            src, dst = self.sample_neighbors(frontier, f, rng)
            src_all.append(src)
            dst_all.append(dst)
            frontier = np.unique(src)
        src = np.concatenate(src_all) if src_all else np.zeros(0, np.int64)
        dst = np.concatenate(dst_all) if dst_all else np.zeros(0, np.int64)
        pairs = np.unique(np.stack([src, dst], 1), axis=0) if len(src) else np.zeros((0, 2), np.int64)
        nodes = np.unique(np.concatenate([seeds, pairs[:, 0], pairs[:, 1]]))
        local = self._local
        local[nodes] = np.arange(len(nodes))
        s, r = local[pairs[:, 0]], local[pairs[:, 1]]
        local[nodes] = -1
        mask = np.zeros(len(nodes), bool)
        mask[np.searchsorted(nodes, seeds)] = True
        return nodes, s, r, None, mask

    def batch(self, step):
        """Padded GraphsTuple for `step`, as `Sampler.batch` (the "mask" marks the seeds)."""
        if self.norm_aggr or self.norm_loss:
            raise ValueError("NeighborSampler does not use GraphSAINT normalisation")
        nodes, s, r, eid, mask = self.sample_step(step)
        return self.assemble(nodes, s, r, eid, mask)


class FullBatch:
    """The whole graph every step (padded once, with its reverse-edge index when the
    edge set is symmetric); loss on the training nodes."""

    def __init__(self, adj, nodes, train_mask, model: str = "gcn", budget_multiple: int = 64, **_):
        arrays = dict(nodes)
        arrays["mask"] = np.asarray(train_mask, bool)
        g = G.normalized_graph(adj, arrays, model)
        g = G.pad_to_budget(g, multiple=budget_multiple, growth=None)[0]
        try:  # the layers' backward pass uses it; a directed graph goes without
            g = G.with_reverse_index(g)
        except ValueError:
            pass
        self.graph = g

    def steps_per_epoch(self):
        return 1

    def batch(self, step):
        return self.graph
