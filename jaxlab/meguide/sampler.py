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
   nodes.
3. The subgraph induced on the visited nodes, with GraphSAINT's aggregator and loss
   normalisation estimated by pre-sampling (`norm_aggr`, `norm_loss`), which keeps the
   biased root choice an unbiased estimate of the full-graph loss.
"""

from __future__ import annotations

import numpy as np

from jaxlab.graph.samplers import Sampler
from jaxlab.meguide import metrics as M


class MeGuideSampler(Sampler):
    saint = True

    def __init__(self, adj, nodes, train_mask, *, node_budget: int = 2000, prefer: str = "high",
                 score_power: float = 1.0, uniform_mix: float = 0.5, max_walk_length: int = 4,
                 patience: int = 1, smoothness_scaling: str = "minmax", cfd_walks: int = 4,
                 scores=None, **kw):
        super().__init__(adj, nodes, train_mask, **kw)
        if prefer not in ("high", "low"):
            raise ValueError(f"prefer must be 'high' or 'low', got {prefer!r}")
        if not 0.0 <= uniform_mix <= 1.0:
            raise ValueError(f"uniform_mix must lie in [0, 1], got {uniform_mix}")
        self.max_walk_length = max_walk_length
        self.patience = patience
        s = M.node_smoothness(self.adj, nodes["x"], smoothness_scaling) if scores is None else np.asarray(scores)
        st = s[self.train_nodes]
        rel = st / max(st.mean(), 1e-12) + 1e-6
        pref = rel ** (score_power if prefer == "high" else -score_power)
        pref = pref / pref.sum()
        q = uniform_mix / len(st) + (1.0 - uniform_mix) * pref
        self.root_prob = q / q.sum()
        self._cdf = np.cumsum(self.root_prob)
        self.scores = s
        self.cfd = M.connection_failure_distance(self.adj, self.train_mask, cfd_walks,
                                                 max_walk_length, patience, seed=self.seed)
        expected = float(np.sum(self.root_prob * self.cfd[self.train_nodes]))
        self.expected_walk_length = expected
        self.num_roots = max(1, int(round(node_budget / (1.0 + expected))))

    def sample_nodes(self, rng):
        u = rng.random(self.num_roots) * self._cdf[-1]
        idx = np.minimum(np.searchsorted(self._cdf, u, side="right"), len(self._cdf) - 1)
        roots = self.train_nodes[idx]
        walks, added = M.walk_stop_lengths(self.indptr, self.indices, self.train_mask, roots,
                                           self.max_walk_length, self.patience, rng)
        return np.unique(walks[added])

    def steps_per_epoch(self):
        return max(1, int(np.ceil(len(self.train_nodes) / (self.num_roots * (1 + self.expected_walk_length)))))
