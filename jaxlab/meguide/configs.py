"""Configs of MeGuide runs: `get_config("smoke" | "default" | "paper")`.

`sampler` picks the subgraph sampler: meguide (the metric-guided reconstruction),
saint-rw / saint-node / saint-edge (GraphSAINT), cluster (Cluster-GCN), neighbor
(GraphSAGE) or full (full-batch). `data` is "sbm" (contextual SBM, `sbm` section),
"karate", a GraphSAINT folder path, or "planetoid:<folder>:<name>" (read by
`jaxlab.graph.data.load`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

from jaxlab.core.config import (
    ConfigError,
    LoopConfig,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    variants,
)

Sampler = Literal["meguide", "saint-rw", "saint-node", "saint-edge", "cluster", "neighbor", "full"]
SAMPLERS: tuple[str, ...] = typing.get_args(Sampler)
Scaling = Literal["standard", "minmax", "none"]


@dataclasses.dataclass
class SBMConfig:
    """The contextual stochastic block model of `jaxlab.graph.data.contextual_sbm`."""

    num_nodes: PositiveInt = 10_000
    num_classes: PositiveInt = 5
    avg_degree: PositiveFloat = 10.0
    homophily: Probability = 0.8
    num_features: PositiveInt = 32
    feature_signal: NonNegativeFloat = 1.0
    noise: NonNegativeFloat = 6.0
    num_labels: NonNegativeInt = 0  # > 0: multi-label targets (sigmoid loss, micro-F1)


@dataclasses.dataclass
class ModelConfig:
    kind: Literal["gcn", "sage", "gat"] = "gcn"
    hidden: tuple[PositiveInt, ...] = (64,)
    dropout: Probability = 0.1
    heads: PositiveInt = 4
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


@dataclasses.dataclass
class OptConfig:
    lr: PositiveFloat = 0.01
    weight_decay: NonNegativeFloat = 0.0


@dataclasses.dataclass
class SaintConfig:
    """GraphSAINT samplers (Zeng et al. 2020).

    Attributes:
      node_budget: saint-node: draws per subgraph.
      num_edges: saint-edge: edges per subgraph.
      num_roots: saint-rw: roots per subgraph.
      walk_length: saint-rw: steps of each walk.
      norm_aggr, norm_loss: GraphSAINT's aggregator and loss normalisations.
      presample: subgraphs pre-sampled to estimate the normalisation.
    """

    node_budget: PositiveInt = 2000
    num_edges: PositiveInt = 1000
    num_roots: PositiveInt = 600
    walk_length: PositiveInt = 2
    norm_aggr: bool = True
    norm_loss: bool = True
    presample: PositiveInt = 50


@dataclasses.dataclass
class ClusterConfig:
    num_parts: PositiveInt = 50
    clusters_per_batch: PositiveInt = 5


@dataclasses.dataclass
class NeighborConfig:
    batch_size: PositiveInt = 512
    fanouts: tuple[PositiveInt, ...] = (10, 5)


@dataclasses.dataclass
class MeGuideSamplerConfig:
    """The metric-guided sampler. Every field is part of a documented
    `reconstruction` (the paper's equations are not available).

    Attributes:
      node_budget: target number of nodes per subgraph.
      prefer: roots prefer "high" or "low" node smoothness.
      score_power: exponent of the relative smoothness in the root probabilities.
      uniform_mix: weight of the uniform part of the root probabilities.
      max_walk_length: the longest walk from a root.
      patience: connection failures before a walk stops.
      cfd_walks: walks per node to estimate the connection failure distance.
      walk: "cfd": a walk stops at its `patience`-th connection failure (a revisit, a
        non-training node or a dead end); "fixed" (ablation): GraphSAINT's walks of
        `fixed_walk_length` steps through any node (0: the rounded expected CFD).
      smoothness_scaling: feature scaling before the smoothness (minmax: CS-GNN's).
      norm_aggr, norm_loss, presample: GraphSAINT normalisation, as in `SaintConfig`.
    """

    node_budget: PositiveInt = 2000
    prefer: Literal["high", "low"] = "high"
    score_power: NonNegativeFloat = 1.0
    uniform_mix: Probability = 0.5
    max_walk_length: PositiveInt = 4
    patience: PositiveInt = 1
    cfd_walks: PositiveInt = 4
    walk: Literal["cfd", "fixed"] = "cfd"
    fixed_walk_length: NonNegativeInt = 0
    smoothness_scaling: Scaling = "minmax"
    norm_aggr: bool = True
    norm_loss: bool = True
    presample: PositiveInt = 50


@dataclasses.dataclass
class MeGuideConfig:
    """Everything a MeGuide run depends on.

    Attributes:
      seed: the SBM, the samplers' streams, initialisation and dropout.
      data: "sbm" | "karate" | GraphSAINT folder | "planetoid:<folder>:<name>".
      feature_scale: scaling of features read from files (standard | minmax | none).
      sampler: one of SAMPLERS.
      train_graph: "auto" (default): the inductive protocol for data that come with a
        training graph (a GraphSAINT folder's adj_train.npz), the transductive one for the
        rest (SBM, karate, Planetoid); "train": inductive, as GraphSAINT's datasets and
        reference numbers: every training batch (full batch included) is taken from the
        training graph (`GraphData.train_adjacency()`: adj_train.npz, or the graph induced
        on the training nodes), so training never sees an edge of a non-training node
        (full batch keeps those nodes isolated and out of the loss);
        evaluation runs on the whole graph; "full": transductive, subgraphs are sampled
        from the whole graph and the loss counts training nodes.
      loop: steps, logging/eval/checkpoint periods, kept checkpoints. `num_devices`
        must stay 1: a padded graph batch is one graph and cannot be split over a
        data-parallel mesh.
      budget_multiple, budget_growth: padding bucket ladder (`jaxlab.graph.graphs.bucket`).
      nodes_per_batch: > 0: set the sampler's size field (roots, draws, edges, seeds,
        METIS parts or node budget; `sampler.SIZE_FIELDS`) so that its subgraphs hold
        this many nodes on average (`sampler.match_nodes_per_batch`), to compare
        samplers at the same cost per step; 0: the sections' sizes as given.
      prefetch: batches sampled ahead on a host thread while the device runs a step
        (`core.train.fit`); the batches and results do not depend on it. "auto": 2 on
        accelerators, 0 on the CPU backend, where the sampling thread and XLA share the
        cores (measured slower there: experiments/meguide/README.md).
    """

    seed: int = 0
    data: str = "sbm"
    feature_scale: Scaling = "standard"
    sbm: SBMConfig = dataclasses.field(default_factory=SBMConfig)
    sampler: Sampler = "meguide"
    train_graph: Literal["auto", "full", "train"] = "auto"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    opt: OptConfig = dataclasses.field(default_factory=OptConfig)
    saint: SaintConfig = dataclasses.field(default_factory=SaintConfig)
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    neighbor: NeighborConfig = dataclasses.field(default_factory=NeighborConfig)
    meguide: MeGuideSamplerConfig = dataclasses.field(default_factory=MeGuideSamplerConfig)
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=300, eval_every=25, log_every=25, checkpoint_every=0, keep=2, num_devices=1))
    budget_multiple: PositiveInt = 64
    budget_growth: PositiveFloat = 1.25
    nodes_per_batch: NonNegativeInt = 0
    prefetch: NonNegativeInt | Literal["auto"] = "auto"

    def prefetch_depth(self) -> int:
        """`prefetch` with "auto" resolved for the default backend."""
        if self.prefetch == "auto":
            import jax

            return 0 if jax.default_backend() == "cpu" else 2
        return self.prefetch

    def validate(self) -> None:
        if self.loop.num_devices != 1:
            raise ConfigError(
                f"config field 'loop.num_devices' must be 1 for meguide, got {self.loop.num_devices}: "
                "a padded graph batch is one graph and cannot be sharded over a data mesh")
        if not self.data.strip():
            raise ConfigError("config field 'data' is empty: expected 'sbm', 'karate', "
                              "'planetoid:<folder>:<name>' or a GraphSAINT folder")
        if self.budget_growth <= 1.0:
            raise ConfigError(f"config field 'budget_growth' must be > 1, got {self.budget_growth}")
        if self.cluster.clusters_per_batch > self.cluster.num_parts:
            raise ConfigError(
                f"config field 'cluster.clusters_per_batch' ({self.cluster.clusters_per_batch}) must be "
                f"<= cluster.num_parts ({self.cluster.num_parts})")
        if not self.neighbor.fanouts:
            raise ConfigError("config field 'neighbor.fanouts' needs at least one hop")
        if self.model.dropout >= 1.0:
            raise ConfigError(f"config field 'model.dropout' must be < 1, got {self.model.dropout}")


def _default() -> MeGuideConfig:
    return MeGuideConfig()


def _smoke() -> MeGuideConfig:
    return MeGuideConfig(
        sbm=SBMConfig(num_nodes=600, num_classes=3, avg_degree=6, num_features=8),
        model=ModelConfig(hidden=(16,)),
        saint=SaintConfig(node_budget=150, num_edges=80, num_roots=50, presample=10),
        cluster=ClusterConfig(num_parts=8, clusters_per_batch=2),
        neighbor=NeighborConfig(batch_size=64, fanouts=(5, 3)),
        meguide=MeGuideSamplerConfig(node_budget=150, presample=10),
        loop=LoopConfig(num_steps=20, eval_every=10, log_every=10, checkpoint_every=10, keep=2,
                        num_devices=1))


def _paper() -> MeGuideConfig:
    # GraphSAINT-scale settings (Flickr/Reddit-sized graphs) for accelerators.
    return MeGuideConfig(
        sbm=SBMConfig(num_nodes=200_000, num_classes=10, avg_degree=20, num_features=128),
        model=ModelConfig(hidden=(256, 256), dropout=0.1),
        saint=SaintConfig(node_budget=8000, num_edges=4000, num_roots=3000, presample=200),
        cluster=ClusterConfig(num_parts=1500, clusters_per_batch=20),
        neighbor=NeighborConfig(batch_size=1024, fanouts=(25, 10)),
        meguide=MeGuideSamplerConfig(node_budget=8000, presample=200),
        loop=LoopConfig(num_steps=3000, eval_every=200, log_every=100, checkpoint_every=1000, keep=2,
                        num_devices=1))


def get_config(variant: str = "default") -> MeGuideConfig:
    """The MeGuide config for `variant` in {"smoke", "default", "paper"}."""
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
