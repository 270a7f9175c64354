"""The metric-guided subgraph sampler of MeGuide [reconstruction].

The paper's sampling algorithm is not available; this is the spec's pluggable
reconstruction (every choice a field of `MeGuideSamplerConfig`):

1. Root scores: node-level feature smoothness s_v (`metrics.node_smoothness`).
   Roots are drawn (with replacement) from the training nodes with
     q_v ∝ uniform_mix / |V_train| + (1 - uniform_mix) * (s_v / mean s)^(±score_power)
   (`prefer="high"`: +, favouring nodes whose neighbourhoods carry new information,
   the CS-GNN reading; `"low"`: -).
2. Size control by connection failure distance: each root walks until its
   `patience`-th connection failure (`metrics.walk_stop_lengths`), at most
   `max_walk_length` steps, so its expected length is CFD(root). The number of roots
   per subgraph is node_budget / (1 + E_q[CFD]) so subgraphs hold about `node_budget`
   nodes. The ablation `walk="fixed"` replaces this by GraphSAINT's walks: every root
   walks `fixed_walk_length` steps (0: round(E_q[CFD]), at least 1) through any node,
   training or not; with `uniform_mix=1` as well, the sampler is GraphSAINT-RW.
3. The subgraph induced on the visited nodes, with GraphSAINT's aggregator and loss
   normalisation estimated by pre-sampling (`norm_aggr`, `norm_loss`), which keeps the
   biased root choice an unbiased estimate of the full-graph loss.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from jaxlab.graph import samplers
from jaxlab.graph.samplers import Sampler
from jaxlab.meguide import metrics

if TYPE_CHECKING:
    from jaxlab.graph.data import GraphData
    from jaxlab.meguide.configs import MeGuideConfig

__all__ = ["MeGuideSampler", "make_sampler", "training_protocol", "match_nodes_per_batch", "batch_sizes",
           "size_setting", "SIZE_FIELDS"]


class MeGuideSampler(Sampler):
    saint = True

    def __init__(self, adj, nodes, train_mask, *, node_budget: int = 2000, prefer: str = "high",
                 score_power: float = 1.0, uniform_mix: float = 0.5, max_walk_length: int = 4,
                 patience: int = 1, smoothness_scaling: str = "minmax", cfd_walks: int = 4,
                 walk: str = "cfd", fixed_walk_length: int = 0, scores=None, **kw):
        super().__init__(adj, nodes, train_mask, **kw)
        if prefer not in ("high", "low"):
            raise ValueError(f"prefer must be 'high' or 'low', got {prefer!r}")
        if not 0.0 <= uniform_mix <= 1.0:
            raise ValueError(f"uniform_mix must lie in [0, 1], got {uniform_mix}")
        if walk not in ("cfd", "fixed"):
            raise ValueError(f"walk must be 'cfd' or 'fixed', got {walk!r}")
        self.walk = walk
        self.max_walk_length = max_walk_length
        self.patience = patience
        s = metrics.node_smoothness(self.adj, nodes["x"], smoothness_scaling) if scores is None else np.asarray(scores)
        st = s[self.train_nodes]
        rel = st / max(st.mean(), 1e-12) + 1e-6
        pref = rel ** (score_power if prefer == "high" else -score_power)
        pref = pref / pref.sum()
        q = uniform_mix / len(st) + (1.0 - uniform_mix) * pref
        self.root_prob = q / q.sum()
        self._cdf = np.cumsum(self.root_prob)
        self.scores = s
        self.cfd = metrics.connection_failure_distance(self.adj, self.train_mask, cfd_walks,
                                                 max_walk_length, patience, seed=self.seed)
        expected = float(np.sum(self.root_prob * self.cfd[self.train_nodes]))
        if walk == "fixed":
            self.fixed_walk_length = int(fixed_walk_length) or max(1, int(round(expected)))
            expected = float(self.fixed_walk_length)
        self.expected_walk_length = expected
        self.num_roots = max(1, int(round(node_budget / (1.0 + expected))))

    def sample_nodes(self, rng):
        u = rng.random(self.num_roots) * self._cdf[-1]
        idx = np.minimum(np.searchsorted(self._cdf, u, side="right"), len(self._cdf) - 1)
        roots = self.train_nodes[idx]
        if self.walk == "fixed":
            return self.unique_nodes(samplers.random_walks(self.indptr, self.indices, roots,
                                                           self.fixed_walk_length, rng).ravel())
        walks, added = metrics.walk_stop_lengths(self.indptr, self.indices, self.train_mask, roots,
                                           self.max_walk_length, self.patience, rng)
        return np.unique(walks[added])

    def steps_per_epoch(self):
        return max(1, int(np.ceil(len(self.train_nodes) / (self.num_roots * (1 + self.expected_walk_length)))))


def training_protocol(config: MeGuideConfig, data: GraphData) -> str:
    """"inductive" or "transductive": `config.train_graph` with "auto" resolved (inductive
    for data that carry a training graph, GraphSAINT's adj_train.npz)."""
    if config.train_graph == "auto":
        return "inductive" if data.adj_train is not None else "transductive"
    return "inductive" if config.train_graph == "train" else "transductive"


def make_sampler(config: MeGuideConfig, data: GraphData, *, normalize: bool = True):
    """The sampler of `config.sampler` over the whole graph (transductive) or the training
    graph (inductive, `data.train_adjacency()`: GraphSAINT's adj_train), with its
    GraphSAINT normalisation pre-sampled where it uses one (unless `normalize=False`, for
    sampling without batches). `batch(step)` of the result is a pure function of
    (config.seed, step)."""
    masks = data.masks()
    nodes = {"x": data.x.astype(np.float32), "y": data.y}
    train_mask = masks["train_mask"]
    inductive = training_protocol(config, data) == "inductive"
    adj = sp.csr_matrix(data.train_adjacency()) if inductive else data.adj
    common = dict(model=config.model.kind, seed=config.seed, budget_multiple=config.budget_multiple,
                  budget_growth=config.budget_growth)
    kind, saint = config.sampler, config.saint
    saint_norm = dict(norm_aggr=saint.norm_aggr, norm_loss=saint.norm_loss)
    if kind == "full":
        return samplers.FullBatch(adj, nodes, train_mask, model=config.model.kind,
                                  budget_multiple=config.budget_multiple)
    if kind == "cluster":
        return samplers.ClusterSampler(adj, nodes, train_mask, num_parts=config.cluster.num_parts,
                                       clusters_per_batch=config.cluster.clusters_per_batch,
                                       partition_all=not inductive, **common)
    if kind == "neighbor":
        return samplers.NeighborSampler(adj, nodes, train_mask, batch_size=config.neighbor.batch_size,
                                        fanouts=config.neighbor.fanouts, **common)
    if kind == "meguide":
        m = config.meguide
        sampler = MeGuideSampler(
            adj, nodes, train_mask, node_budget=m.node_budget, prefer=m.prefer, score_power=m.score_power,
            uniform_mix=m.uniform_mix, max_walk_length=m.max_walk_length, patience=m.patience,
            smoothness_scaling=m.smoothness_scaling, cfd_walks=m.cfd_walks, walk=m.walk,
            fixed_walk_length=m.fixed_walk_length, norm_aggr=m.norm_aggr, norm_loss=m.norm_loss, **common)
        presample = m.presample if (m.norm_aggr or m.norm_loss) else 0
    else:
        if kind == "saint-node":
            sampler = samplers.SaintNodeSampler(adj, nodes, train_mask, budget=saint.node_budget,
                                                **saint_norm, **common)
        elif kind == "saint-edge":
            sampler = samplers.SaintEdgeSampler(adj, nodes, train_mask, num_edges=saint.num_edges,
                                                **saint_norm, **common)
        elif kind == "saint-rw":
            sampler = samplers.SaintRWSampler(adj, nodes, train_mask, num_roots=saint.num_roots,
                                              walk_length=saint.walk_length, **saint_norm, **common)
        else:
            raise ValueError(f"unknown sampler {kind!r}")
        presample = saint.presample if (saint.norm_aggr or saint.norm_loss) else 0
    if presample and normalize:
        sampler.estimate_normalization(presample)
    return sampler


# the field that sets each sampler's subgraph size: (config section, field, grows with size)
SIZE_FIELDS = {
    "saint-node": ("saint", "node_budget", True),
    "saint-edge": ("saint", "num_edges", True),
    "saint-rw": ("saint", "num_roots", True),
    "cluster": ("cluster", "num_parts", False),
    "neighbor": ("neighbor", "batch_size", True),
    "meguide": ("meguide", "node_budget", True),
}


def batch_sizes(sampler, steps: int = 16) -> dict:
    """Mean nodes per subgraph (every node the step computes on) and mean loss nodes
    (nodes whose loss counts) over the subgraphs of steps 0 .. steps - 1."""
    if isinstance(sampler, samplers.FullBatch):  # graph 0 is the graph, graph 1 the padding
        return {"nodes_per_batch": float(np.asarray(sampler.graph.n_node)[0]),
                "loss_nodes_per_batch": float(np.sum(sampler.graph.nodes["mask"]))}
    nodes, loss = [], []
    for step in range(steps):
        ids, _, _, _, mask = sampler.sample_step(step)
        nodes.append(len(ids))
        loss.append(int(np.sum(mask)))
    return {"nodes_per_batch": float(np.mean(nodes)), "loss_nodes_per_batch": float(np.mean(loss))}


def size_setting(config: MeGuideConfig) -> dict:
    """`{"<section>.<field>": value}` of the field that sets the configured sampler's
    subgraph size (empty for full batch)."""
    if config.sampler not in SIZE_FIELDS:
        return {}
    section, field, _ = SIZE_FIELDS[config.sampler]
    return {f"{section}.{field}": getattr(getattr(config, section), field)}


def _with_size(config: MeGuideConfig, value: int) -> MeGuideConfig:
    section, field, _ = SIZE_FIELDS[config.sampler]
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **{field: value})})


def match_nodes_per_batch(config: MeGuideConfig, data: GraphData, target: int, *, probes: int = 16,
                          iters: int = 8, rtol: float = 0.02) -> MeGuideConfig:
    """`config` with its sampler's size field (`SIZE_FIELDS`: roots, draws, edges, seeds,
    METIS parts or node budget) set so that its subgraphs hold `target` nodes on average
    (over the first `probes` steps), so that samplers can be compared at the same cost
    per step. Fixed-point iterations value <- value * target / measured (parts: divided,
    and kept a multiple of `cluster.clusters_per_batch` so that every batch of an epoch
    holds as many clusters: Cluster-GCN's batches are then 1/k of the graph for an integer
    k), keeping the closest value seen; deterministic for a given config and data. Full
    batch is returned unchanged."""
    if config.sampler not in SIZE_FIELDS:
        return config
    if target >= data.num_nodes:
        raise ValueError(f"nodes_per_batch={target} must be below the graph's {data.num_nodes} nodes")
    _, _, grows = SIZE_FIELDS[config.sampler]
    value = next(iter(size_setting(config).values()))
    best, tried = None, []
    for _ in range(iters):
        if config.sampler == "cluster":  # whole batches: parts a multiple of the clusters per batch
            q = config.cluster.clusters_per_batch
            value = q * max(1, int(round(value / q)))
        cfg = _with_size(config, value)
        got = batch_sizes(make_sampler(cfg, data, normalize=False), probes)["nodes_per_batch"]
        tried.append((value, got))
        if best is None or abs(got - target) < abs(best[1] - target):
            best = (value, got)
        if abs(got - target) <= rtol * target:
            break
        ratio = target / max(got, 1.0)
        new = max(1, int(round(value * ratio if grows else value / ratio)))
        step = config.cluster.clusters_per_batch if config.sampler == "cluster" else 1
        if abs(new - value) < step:
            new = value + (step if (got < target) == grows else -step)
        if new < 1 or any(v == new for v, _ in tried):
            break
        value = new
    return _with_size(config, best[0])
