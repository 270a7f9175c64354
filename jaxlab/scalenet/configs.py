"""ScaleNet configs: `get_config("smoke" | "default" | "paper")`.

`smoke` runs in seconds (tests), `default` in minutes on a CPU (the spec's small
model, sec. 3), `paper` is the published setting (ImageNet scale, accelerators).
"""

from __future__ import annotations

import dataclasses

from jaxlab.core.config import variants
from jaxlab.scalenet.space import SpaceConfig

__all__ = ["DataConfig", "SupernetConfig", "SearchConfig", "RetrainConfig", "ScaleNetConfig", "get_config"]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Procedural images of `jaxlab.data.synthetic.make_images`, rendered per resolution."""

    num_train: int = 4096
    num_val: int = 400      # held-out images scoring candidates during the search
    num_test: int = 1000    # test images of the retrained models
    num_classes: int = 10
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class SupernetConfig:
    """Super-supernet training (spec sec. 2.4): SGD Nesterov, warm-up + cosine."""

    num_steps: int = 3000
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 4e-5
    warmup_steps: int = 100
    label_smoothing: float = 0.1
    sampler: str = "hierarchical"   # "hierarchical" or "uniform" (ablation)
    alternate_sides: bool = True    # asyn=True: one pass per step, side = step % 2
    log_every: int = 50
    checkpoint_every: int = 500


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """MCEA (spec sec. 2.5).

    `mode`: "joint" (alternate base GA and scaling search) or "decoupled" (a GA on the
    base model alone at stage 0, then one scaling search: the base-then-scale baseline).
    FLOPs budgets are relative to `base_macs` (MACs of the base model at stage 0):
    base band `base_macs * (1 +- base_tol)`, stage s target `2^s base` with tolerance
    `ladder_tol * 2^s base`. `base_macs = 0` takes the median of 256 random bases.
    """

    mode: str = "joint"
    pop_size: int = 16
    num_generations: int = 8
    num_alternations: int = 2
    n_basenet: int = 8
    eta_mutation: float = 3.0
    base_macs: float = 0.0
    base_tol: float = 0.15
    ladder_tol: float = 0.15
    eval_chunk: int = 4             # architectures per vmapped evaluation call
    eval_batch: int = 200           # held-out images per evaluation (of data.num_val)
    extrapolate_to: int = 4         # extrapolate the scaling rule up to this stage
    supernet_dir: str = ""          # "" = this workdir
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """Training the searched family (and the compound-scaling baseline) from scratch."""

    num_steps: int = 600
    batch_size: int = 64
    lr: float = 0.1
    weight_decay: float = 4e-5
    warmup_steps: int = 50
    label_smoothing: float = 0.1
    stages: str = "0,1,2,3,4"           # family members to retrain (4 = extrapolated)
    compound: bool = True               # also retrain the compound-scaling family
    compound_alpha: float = 1.2         # EfficientNet: d = alpha^phi
    compound_beta: float = 1.1          # w = beta^phi
    compound_gamma: float = 1.15        # r = gamma^phi
    search_dir: str = ""                # "" = this workdir
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class ScaleNetConfig:
    space: SpaceConfig = dataclasses.field(default_factory=SpaceConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    supernet: SupernetConfig = dataclasses.field(default_factory=SupernetConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    retrain: RetrainConfig = dataclasses.field(default_factory=RetrainConfig)
    seed: int = 0


def _smoke() -> ScaleNetConfig:
    space = SpaceConfig(stages=((1, 1, 8, 1), (2, 2, 12, 3)), head_channels=32,
                        mult_grid=((1.0,), (1.2, 1.3), (1.4, 1.5)), res_grid=((8,), (9,), (10,)), max_mult=1.5)
    return ScaleNetConfig(
        space=space,
        data=DataConfig(num_train=256, num_val=64, num_test=64),
        supernet=SupernetConfig(num_steps=6, batch_size=16, warmup_steps=2, log_every=2, checkpoint_every=3),
        search=SearchConfig(pop_size=6, num_generations=2, num_alternations=2, n_basenet=2, eval_chunk=2,
                            eval_batch=32, base_tol=0.5, ladder_tol=0.5, extrapolate_to=3),
        retrain=RetrainConfig(num_steps=4, batch_size=16, warmup_steps=1, stages="0,1,3"),
    )


def _default() -> ScaleNetConfig:
    return ScaleNetConfig()


def _paper() -> ScaleNetConfig:
    g = lambda a, b, st=0.04: tuple(round(a + i * st, 2) for i in range(int(round((b - a) / st)) + 1))
    space = SpaceConfig(
        stem_channels=32, stem_stride=2,
        stages=((1, 1, 16, 1), (4, 2, 32, 6), (4, 2, 40, 6), (4, 2, 80, 6), (4, 1, 96, 6), (4, 2, 192, 6),
                (1, 1, 320, 6)),
        kernels=(3, 5, 7), head_channels=1280, num_classes=1000,
        mult_grid=((1.0,), g(1.04, 1.16), g(1.20, 1.36), g(1.40, 1.64)),
        res_grid=((224,), (224, 240, 256), (272, 288, 304), (320, 336, 354)))
    return ScaleNetConfig(
        space=space,
        data=DataConfig(num_train=1_281_167, num_val=10_000, num_test=50_000, num_classes=1000),
        supernet=SupernetConfig(num_steps=750_000, batch_size=256, lr=0.12, warmup_steps=375,
                                checkpoint_every=5000, log_every=100),
        search=SearchConfig(pop_size=64, num_generations=40, num_alternations=8, n_basenet=20,
                            base_macs=306e6, base_tol=25e6 / 306e6, ladder_tol=50e6 / 306e6, eval_chunk=8,
                            eval_batch=10_000, extrapolate_to=5),
        retrain=RetrainConfig(num_steps=450_000, batch_size=256, lr=0.12, stages="0,1,2,3,4,5"),
    )


def get_config(variant: str = "default") -> ScaleNetConfig:
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
