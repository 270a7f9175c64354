"""ScaleNet configs: `get_config("smoke" | "default" | "paper")`.

`smoke` runs the whole pipeline (train-supernet, search, retrain, evaluate) in about a
minute on 2 CPU cores (tests), `default` in minutes on a CPU (the spec's small model,
sec. 3), `paper` is the published setting (ImageNet scale, accelerators).

Two trainings go through `jaxlab.core.train.fit`, each with its own `LoopConfig`:
`supernet.loop` (`--config.supernet.loop.num_steps=`) and `retrain.loop`
(`--config.retrain.loop.num_steps=`, per retrained family member). The search is a
genetic algorithm, not a training loop: its sizes are its own fields.
"""

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
from jaxlab.scalenet.space import SpaceConfig, check_space_config

__all__ = ["DataConfig", "SupernetConfig", "SearchConfig", "RetrainConfig", "RankConfig", "ScaleNetConfig",
           "get_config"]


@dataclasses.dataclass
class DataConfig:
    """Procedural images of `jaxlab.data.synthetic.make_images`, rendered per resolution.

    Attributes:
      num_train: training images (supernet and retraining).
      num_val: held-out images scoring candidates during the search.
      num_test: test images of the retrained models.
      num_classes: classes of the images (must equal `space.num_classes`).
      seed: the dataset's seed, apart from the run's `seed` so that runs of different
        seeds see the same images.
    """

    num_train: PositiveInt = 4096
    num_val: PositiveInt = 400
    num_test: PositiveInt = 1000
    num_classes: PositiveInt = 10
    seed: int = 0


@dataclasses.dataclass
class SupernetConfig:
    """Super-supernet training (spec sec. 2.4): SGD Nesterov, warm-up + cosine.

    Attributes:
      loop: steps, log/checkpoint periods, kept checkpoints. `loop.num_devices` must be
        1: a supernet batch carries its sampled architecture, which a data-parallel
        split of the batch would cut.
      weight_decay, conv_decay_multiplier: coupled L2 on kernels; convolution kernels get
        `conv_decay_multiplier` times the rate. reconstruction: 1.0 (one rate) is what this
        code used for the published runs; the spec's recipe is 2.0 ("conv x2").
      sampler: "hierarchical" (ScaleNet) or "uniform" (the ablation).
      alternate_sides: asyn=True: one pass per step, coupling side = step % 2.
      stage_archs: sub-networks per scaling stage scored with inherited weights at the
        end of training and by `evaluate` (on `search.eval_batch` held-out images).
      buckets: "auto" (on for the CPU backend and runs of >= 1000 steps), "on" or "off":
        run each step on the supernet cut to the smallest width/depth bucket holding the
        sampled architecture (`jaxlab.scalenet.buckets`; the same update to float
        tolerance, one compile per bucket and resolution) instead of at the full width
        with masks.
    """

    batch_size: PositiveInt = 64
    lr: PositiveFloat = 0.1
    momentum: Probability = 0.9
    weight_decay: NonNegativeFloat = 4e-5
    conv_decay_multiplier: PositiveFloat = 1.0
    warmup_steps: NonNegativeInt = 100
    label_smoothing: Probability = 0.1
    sampler: Literal["hierarchical", "uniform"] = "hierarchical"
    alternate_sides: bool = True
    stage_archs: PositiveInt = 8
    buckets: Literal["auto", "on", "off"] = "auto"
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=3000, log_every=50, checkpoint_every=500, num_devices=1))


@dataclasses.dataclass
class SearchConfig:
    """MCEA (spec sec. 2.5).

    `mode`: "joint" (alternate base GA and scaling search), "decoupled" (a GA on the
    base model alone at stage 0, then one scaling search: the base-then-scale baseline)
    or "per_budget" (one-shot search per
    FLOPs budget: a separate GA over base genes and stage s's (d, w, r) for every stage,
    the alternative ScaleNet's search-cost claim is made against).
    FLOPs budgets are relative to `base_macs` (MACs of the base model at stage 0):
    base band `base_macs * (1 +- base_tol)`, stage s target `2^s base` with tolerance
    `ladder_tol * 2^s base`. `base_macs = 0` takes the median of 256 random bases.

    Attributes:
      proposal: how the genetic searches propose genomes: "genetic" (selection, crossover,
        mutation) or "random" (random canonical bases of the FLOPs band, as many
        evaluations as the GA, the same initial population: the baseline that tells
        whether the GA matters; `jaxlab.nas.evolution.GAConfig.proposal`).
      flops_rule: how the FLOPs limits (base band, ladder) count MACs: "official"
        (a strided conv's output is `floor(n / s)`, as the official counter; the paper's
        306M +- 25M and 2^s ladder were computed with it) or "true" (`ceil(n / s)`, the
        real shapes, checked against XLA). Reported MACs are always the true ones.
      init_pass_fraction: reconstruction of the init's "FLOPs check passes on average":
        a triple enters the initial grid search when at least this fraction of the
        `n_basenet` random bases are inside its ladder (0.5: a majority).
      eval_chunk: architectures per vmapped evaluation call.
      eval_batch: held-out images scoring each architecture (of `data.num_val`).
      extrapolate_to: extrapolate the scaling rule up to this stage.
      num_search_stages: the scaling stages the search optimises, 1..K (0: all stages of
        the space). Stages of the space above K are not in the fitness; the search then
        also ranks their triples for the final base once (`family.json`, `searched_above`),
        which is what the extrapolated members are compared with.
      supernet_dir: the run whose supernet is searched ("" = this workdir).
    """

    mode: Literal["joint", "decoupled", "per_budget"] = "joint"
    proposal: Literal["genetic", "random"] = "genetic"
    pop_size: PositiveInt = 16
    num_generations: NonNegativeInt = 8
    num_alternations: PositiveInt = 2
    n_basenet: PositiveInt = 8
    eta_mutation: PositiveFloat = 3.0
    base_macs: NonNegativeFloat = 0.0
    base_tol: PositiveFloat = 0.15
    ladder_tol: PositiveFloat = 0.15
    flops_rule: Literal["official", "true"] = "official"
    init_pass_fraction: Probability = 0.5
    eval_chunk: PositiveInt = 4
    eval_batch: PositiveInt = 200
    extrapolate_to: NonNegativeInt = 4
    num_search_stages: NonNegativeInt = 0
    supernet_dir: str = ""


@dataclasses.dataclass
class RetrainConfig:
    """Training the searched family (and the compound-scaling baseline) from scratch.

    Attributes:
      loop: steps, log/eval/checkpoint periods and devices of each member's training;
        every member trains in its own `retrain/<family>_s<stage>/` and resumes there.
      stages: family members to retrain (stages above the searched ones are the
        extrapolated members).
      compound: also retrain the compound-scaling family (EfficientNet:
        `d = alpha^phi, w = beta^phi, r = gamma^phi r_0`).
      compound_target: how each compound member's `phi` is chosen: "ladder" (MACs
        closest to `2^s` x S0) or "family" (MACs closest to the searched member of the
        same stage, for comparisons at matched MACs).
      eval_batch_size: test images per evaluation call (the last batch is padded).
      weight_decay, conv_decay_multiplier: as in `SupernetConfig` (reconstruction).
      search_dir: the run whose family.json is retrained ("" = this workdir).
      family_preset: "" (the searched family of family.json) or "released" (the released
        family S0-S5 of the official configs, `jaxlab.scalenet.released`; needs the paper
        space). Members deeper than the super-supernet are built uncapped.
    """

    batch_size: PositiveInt = 64
    lr: PositiveFloat = 0.1
    weight_decay: NonNegativeFloat = 4e-5
    conv_decay_multiplier: PositiveFloat = 1.0
    warmup_steps: NonNegativeInt = 50
    label_smoothing: Probability = 0.1
    stages: tuple[NonNegativeInt, ...] = (0, 1, 2, 3, 4)
    compound: bool = True
    compound_alpha: PositiveFloat = 1.2
    compound_beta: PositiveFloat = 1.1
    compound_gamma: PositiveFloat = 1.15
    compound_target: Literal["ladder", "family"] = "ladder"
    eval_batch_size: PositiveInt = 250
    search_dir: str = ""
    family_preset: Literal["", "released"] = ""
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=600, log_every=50, checkpoint_every=200))


@dataclasses.dataclass
class RankConfig:
    """How well the super-supernet ranks sub-networks (`jaxlab scalenet rank`, spec check 7).

    Attributes:
      num_archs: sub-networks drawn by the hierarchical sampler, each scored with
        inherited weights (on `search.eval_batch` validation images) and retrained from
        scratch with the `retrain` settings (tested on the test split).
      bootstrap: resamples of the architectures for the confidence intervals of Kendall's tau.
    """

    num_archs: PositiveInt = 12
    bootstrap: PositiveInt = 2000


@dataclasses.dataclass
class ScaleNetConfig:
    """Everything a ScaleNet run depends on.

    Attributes:
      seed: supernet and retraining initialisation, batches, sampled architectures and
        the search's random streams (each derived with a named stream constant).
    """

    seed: int = 0
    space: SpaceConfig = dataclasses.field(default_factory=SpaceConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    supernet: SupernetConfig = dataclasses.field(default_factory=SupernetConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    retrain: RetrainConfig = dataclasses.field(default_factory=RetrainConfig)
    rank: RankConfig = dataclasses.field(default_factory=RankConfig)

    def validate(self) -> None:
        check_space_config(self.space, "space.")
        if self.data.num_classes != self.space.num_classes:
            raise ConfigError(f"config field 'data.num_classes' ({self.data.num_classes}) must equal "
                              f"'space.num_classes' ({self.space.num_classes})")
        if self.supernet.loop.num_devices != 1:
            raise ConfigError("config field 'supernet.loop.num_devices' must be 1: a supernet batch carries "
                              "its sampled architecture, which a data-parallel split would cut")
        if self.search.eval_batch > self.data.num_val:
            raise ConfigError(f"config field 'search.eval_batch' ({self.search.eval_batch}) exceeds "
                              f"'data.num_val' ({self.data.num_val})")
        if self.search.num_search_stages >= len(self.space.mult_grid):
            raise ConfigError(f"config field 'search.num_search_stages' ({self.search.num_search_stages}) must be "
                              f"below the space's {len(self.space.mult_grid)} scaling stages (0: all)")
        if not self.retrain.stages or len(set(self.retrain.stages)) != len(self.retrain.stages):
            raise ConfigError(f"config field 'retrain.stages' needs distinct stages, got {self.retrain.stages}")
        last = max(len(self.space.mult_grid) - 1, self.search.extrapolate_to)
        if max(self.retrain.stages) > last and not self.retrain.search_dir and not self.retrain.family_preset:
            raise ConfigError(f"config field 'retrain.stages' asks for stage {max(self.retrain.stages)}, but the "
                              f"search gives stages 0..{last} (raise 'search.extrapolate_to')")


def _smoke() -> ScaleNetConfig:
    space = SpaceConfig(stages=((1, 1, 8, 1), (2, 2, 12, 3)), head_channels=32,
                        mult_grid=((1.0,), (1.2, 1.3), (1.4, 1.5)), res_grid=((8,), (8,), (8,)), max_mult=1.5)
    return ScaleNetConfig(
        space=space,
        data=DataConfig(num_train=256, num_val=64, num_test=64),
        supernet=SupernetConfig(batch_size=16, warmup_steps=2, stage_archs=2, loop=LoopConfig(
            num_steps=6, log_every=2, checkpoint_every=3, num_devices=1)),
        search=SearchConfig(pop_size=4, num_generations=1, num_alternations=2, n_basenet=2, eval_chunk=4,
                            eval_batch=32, base_tol=0.5, ladder_tol=0.5, extrapolate_to=3),
        retrain=RetrainConfig(batch_size=16, warmup_steps=1, stages=(3,), eval_batch_size=32, loop=LoopConfig(
            num_steps=4, log_every=2, checkpoint_every=2, num_devices=1)),
        rank=RankConfig(num_archs=3, bootstrap=200),
    )


def _default() -> ScaleNetConfig:
    return ScaleNetConfig()


def _paper() -> ScaleNetConfig:
    def grid(a: float, b: float, step: float = 0.04) -> tuple[float, ...]:
        return tuple(round(a + i * step, 2) for i in range(int(round((b - a) / step)) + 1))

    space = SpaceConfig(
        stem_channels=32, stem_stride=2,
        stages=((1, 1, 16, 1), (4, 2, 32, 6), (4, 2, 40, 6), (4, 2, 80, 6), (4, 1, 96, 6), (4, 2, 192, 6),
                (1, 1, 320, 6)),
        kernels=(3, 5, 7), head_channels=1280, num_classes=1000,
        mult_grid=((1.0,), grid(1.04, 1.16), grid(1.20, 1.36), grid(1.40, 1.64)),
        res_grid=((224,), (224, 240, 256), (272, 288, 304), (320, 336, 354)))
    return ScaleNetConfig(
        space=space,
        data=DataConfig(num_train=1_281_167, num_val=10_000, num_test=50_000, num_classes=1000),
        supernet=SupernetConfig(batch_size=256, lr=0.12, warmup_steps=375, loop=LoopConfig(
            num_steps=750_000, log_every=100, checkpoint_every=5000, num_devices=1)),
        search=SearchConfig(pop_size=64, num_generations=40, num_alternations=8, n_basenet=20,
                            base_macs=306e6, base_tol=25e6 / 306e6, ladder_tol=50e6 / 306e6, eval_chunk=8,
                            eval_batch=10_000, extrapolate_to=5),
        retrain=RetrainConfig(batch_size=256, lr=0.12, stages=(0, 1, 2, 3, 4, 5), loop=LoopConfig(
            num_steps=450_000, log_every=100, checkpoint_every=5000)),
    )


def get_config(variant: str = "default") -> ScaleNetConfig:
    """ScaleNet's config for `variant` in {"smoke", "default", "paper"}."""
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
