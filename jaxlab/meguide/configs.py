"""Configs of MeGuide runs: `get_config("smoke" | "default" | "paper")`.

`sampler` picks the subgraph sampler: meguide (the metric-guided reconstruction),
saint-rw / saint-node / saint-edge (GraphSAINT), cluster (Cluster-GCN), neighbor
(GraphSAGE) or full (full-batch). `data` is "sbm" (contextual SBM, `sbm` section),
"karate", a GraphSAINT folder path, or "planetoid:<folder>:<name>".
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxlab.core.config import variants

SAMPLERS = ("meguide", "saint-rw", "saint-node", "saint-edge", "cluster", "neighbor", "full")


@dataclasses.dataclass
class SBMConfig:
    num_nodes: int = 10_000
    num_classes: int = 5
    avg_degree: float = 10.0
    homophily: float = 0.8
    num_features: int = 32
    feature_signal: float = 1.0
    noise: float = 6.0


@dataclasses.dataclass
class ModelConfig:
    kind: Literal["gcn", "sage", "gat"] = "gcn"
    hidden: tuple[int, ...] = (64,)
    dropout: float = 0.1
    heads: int = 4
    dtype: str = "float32"


@dataclasses.dataclass
class OptConfig:
    lr: float = 0.01
    weight_decay: float = 0.0


@dataclasses.dataclass
class SaintConfig:
    """GraphSAINT samplers (Zeng et al. 2020)."""

    node_budget: int = 2000  # saint-node: draws per subgraph
    num_edges: int = 1000  # saint-edge: edges per subgraph
    num_roots: int = 600  # saint-rw: roots per subgraph
    walk_length: int = 2
    norm_aggr: bool = True
    norm_loss: bool = True
    presample: int = 50  # subgraphs pre-sampled to estimate the normalisation


@dataclasses.dataclass
class ClusterConfig:
    num_parts: int = 50
    clusters_per_batch: int = 5


@dataclasses.dataclass
class NeighborConfig:
    batch_size: int = 512
    fanouts: tuple[int, ...] = (10, 5)


@dataclasses.dataclass
class MeGuideSamplerConfig:
    """The metric-guided sampler. Every field is part of a documented
    `reconstruction` (the paper's equations are not available)."""

    node_budget: int = 2000
    prefer: Literal["high", "low"] = "high"  # node smoothness preferred for roots
    score_power: float = 1.0
    uniform_mix: float = 0.5
    max_walk_length: int = 4
    patience: int = 1  # connection failures before a walk stops
    cfd_walks: int = 4  # walks per node to estimate connection failure distance
    smoothness_scaling: Literal["minmax", "standard", "none"] = "minmax"  # minmax: CS-GNN
    norm_aggr: bool = True
    norm_loss: bool = True
    presample: int = 50


@dataclasses.dataclass
class MeGuideConfig:
    """Everything a MeGuide run depends on.

    Attributes:
      data: "sbm" | "karate" | GraphSAINT folder | "planetoid:<folder>:<name>".
      feature_scale: scaling of features read from files (standard | minmax | none).
      sampler: one of SAMPLERS.
      train_graph: "full": subgraphs are sampled from the whole graph, the loss counts
        training nodes; "train": from the graph induced on the training nodes
        (GraphSAINT's inductive protocol).
      num_steps, eval_every, log_every, checkpoint_every, keep: periods in steps.
      budget_multiple, budget_growth: padding bucket ladder.
    """

    seed: int = 0
    data: str = "sbm"
    feature_scale: Literal["standard", "minmax", "none"] = "standard"
    sbm: SBMConfig = dataclasses.field(default_factory=SBMConfig)
    sampler: Literal["meguide", "saint-rw", "saint-node", "saint-edge", "cluster", "neighbor", "full"] = "meguide"
    train_graph: Literal["full", "train"] = "full"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    opt: OptConfig = dataclasses.field(default_factory=OptConfig)
    saint: SaintConfig = dataclasses.field(default_factory=SaintConfig)
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    neighbor: NeighborConfig = dataclasses.field(default_factory=NeighborConfig)
    meguide: MeGuideSamplerConfig = dataclasses.field(default_factory=MeGuideSamplerConfig)
    num_steps: int = 300
    eval_every: int = 25
    log_every: int = 25
    checkpoint_every: int = 0
    keep: int = 2
    budget_multiple: int = 64
    budget_growth: float = 1.25


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
        num_steps=20, eval_every=10, log_every=10, checkpoint_every=10)


def _paper() -> MeGuideConfig:
    # GraphSAINT-scale settings (Flickr/Reddit-sized graphs) for accelerators.
    return MeGuideConfig(
        sbm=SBMConfig(num_nodes=200_000, num_classes=10, avg_degree=20, num_features=128),
        model=ModelConfig(hidden=(256, 256), dropout=0.1),
        saint=SaintConfig(node_budget=8000, num_edges=4000, num_roots=3000, presample=200),
        cluster=ClusterConfig(num_parts=1500, clusters_per_batch=20),
        neighbor=NeighborConfig(batch_size=1024, fanouts=(25, 10)),
        meguide=MeGuideSamplerConfig(node_budget=8000, presample=200),
        num_steps=3000, eval_every=200, log_every=100, checkpoint_every=1000)


def get_config(variant: str = "default") -> MeGuideConfig:
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
