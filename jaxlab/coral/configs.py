"""Configs of CORAL: `get_config("smoke" | "default" | "paper")`."""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass
class PlantedConfig:
    """The generated repository (the embedded default; see `data.planted_repository`)."""

    num_commits: PositiveInt = 1200
    num_teams: PositiveInt = 4
    team_size: PositiveInt = 6
    movers: NonNegativeInt = 2
    bots: NonNegativeInt = 2
    bot_rate: Probability = 0.05
    buddy_prob: Probability = 0.7
    second_reviewer_prob: Probability = 0.3
    new_file_rate: Probability = 0.15
    rename_rate: Probability = 0.02
    start_time: PositiveInt = 1_600_000_000
    interval_s: PositiveInt = 6 * 3600
    seed: int = 0


@dataclasses.dataclass
class GraphConfig:
    """Which parts of the socio-technical graph to build (the paper's ablation switches)."""

    unit: Literal["commit", "merge"] = "commit"
    committer_reviews: bool = False
    merger_reviews: bool = True
    tokens: bool = True
    files: bool = True
    work_items: bool = True
    min_token_count: PositiveInt = 2
    min_cooccurrence: PositiveInt = 2
    max_pmi_edges: NonNegativeInt = 20000


@dataclasses.dataclass
class ModelConfig:
    """The heterogeneous GCN (reconstruction: the paper gives no architecture)."""

    features: PositiveInt = 64
    layers: PositiveInt = 1
    conv: Literal["rgcn", "gcn"] = "rgcn"
    dtype: Literal["float32", "bfloat16"] = "float32"


@dataclasses.dataclass
class OptConfig:
    lr: PositiveFloat = 1e-2
    weight_decay: NonNegativeFloat = 0.0
    warmup_steps: NonNegativeInt = 10


@dataclasses.dataclass
class CoralConfig:
    """Everything a CORAL run depends on.

    Attributes:
      repo: a local git repository ("" : the planted repository, generated into the workdir).
      export: a JSON-lines export of pull requests (GitHub REST shapes) instead of `repo`.
      rev: the revision read (`build-graph`, `train`) or recommended for (`recommend`; "" = newest).
      split: "time" (train on the oldest `train_fraction` of PRs) or "random" (the paper's).
      pool_days: candidates are users active in training PRs within this many days of the PR.
      targets_per_step: PRs whose review edges are hidden and predicted in one step.
      negatives: sampled non-reviewers per target PR (loss "bce").
      loss: "bce" (sampled negatives, the spec's default) or "softmax" over all training users.
      top_k: reviewers printed by `recommend`.
    """

    seed: int = 0
    repo: str = ""
    export: str = ""
    rev: str = ""
    split: Literal["time", "random"] = "time"
    train_fraction: Probability = 0.8
    pool_days: PositiveFloat = 90.0
    targets_per_step: PositiveInt = 64
    negatives: PositiveInt = 16
    loss: Literal["bce", "softmax"] = "softmax"
    recency_half_life_days: NonNegativeFloat = 0.0
    top_k: PositiveInt = 5
    planted: PlantedConfig = dataclasses.field(default_factory=PlantedConfig)
    graph: GraphConfig = dataclasses.field(default_factory=GraphConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    opt: OptConfig = dataclasses.field(default_factory=OptConfig)
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=400, eval_every=100, log_every=20, checkpoint_every=100, num_devices=1))

    def validate(self) -> None:
        if self.repo and self.export:
            raise ConfigError("config fields 'repo' and 'export' are exclusive: give one input")
        if not 0.0 < self.train_fraction < 1.0:
            raise ConfigError(f"config field 'train_fraction' must lie in (0, 1), got {self.train_fraction}")


def _default() -> CoralConfig:
    return CoralConfig()


def _smoke() -> CoralConfig:
    return CoralConfig(
        planted=PlantedConfig(num_commits=400, team_size=8),
        model=ModelConfig(features=32),
        targets_per_step=32,
        loop=LoopConfig(num_steps=60, eval_every=30, log_every=10, checkpoint_every=30, num_devices=1))


def _paper() -> CoralConfig:
    # The paper trains on 2.5 years of 332 repositories; the accelerator variant scales the
    # planted history and the model (embedding size and depth are reconstructions).
    return CoralConfig(
        planted=PlantedConfig(num_commits=20000, num_teams=8, team_size=12, movers=6),
        model=ModelConfig(features=128, layers=1, dtype="bfloat16"), targets_per_step=256, negatives=32,
        loop=LoopConfig(num_steps=3000, eval_every=500, log_every=50, checkpoint_every=500))


def get_config(variant: str = "default") -> CoralConfig:
    """CORAL's config for `variant` in {"smoke", "default", "paper"}."""
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
