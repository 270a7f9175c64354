"""Configs of `jaxlab mhui`: `get_config(variant)` for smoke / default / paper.

    smoke    seconds on a CPU (tests): a tiny CNN, a few hundred steps, a few attacks.
    default  minutes on a CPU: the digits tables of experiments/mhui/README.md.
    paper    CIFAR-10 with the ResNet-18-style multi-exit network (accelerators; needs
             the CIFAR-10 python batches in `data.cifar_dir`).

Fields marked "reconstruction" are choices the paper does not publish.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "DetectConfig", "AttackConfig",
           "BaselineConfig", "MhuiConfig", "get_config"]


@dataclass
class DataConfig:
    dataset: str = "digits"  # "digits" (scikit-learn, bundled) or "cifar10" (python batches)
    cifar_dir: str = ""  # directory with data_batch_1..5 and test_batch
    split_seed: int = 0
    num_eval: int = 0  # test examples evaluated/attacked (0: all)


@dataclass
class ModelConfig:
    arch: str = "cnn"  # "cnn" (jaxlab.nn.SmallCNN, 8x8) or "resnet" (jaxlab.nn.resnet, 32x32)
    stages: tuple[int, ...] = (32, 64, 128)  # cnn: one head after each stage
    blocks_per_stage: int = 1
    norm: str = "group"
    dropout_rate: float = 0.1  # after every stage; used by the MC-dropout baselines
    resnet_stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
    resnet_widths: tuple[int, ...] = (64, 128, 256, 512)
    resnet_norm: str = "group"  # "group" keeps attacks/MC dropout free of batch statistics
    dtype: str = "float32"


@dataclass
class TrainConfig:
    num_steps: int = 1000
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    # reconstruction: deep-supervision loss sum_h w_h CE_h / sum_h w_h; () = all heads 1.0
    head_weights: tuple[float, ...] = ()
    log_every: int = 100
    eval_every: int = 500
    checkpoint_every: int = 500
    augment_shift: int = 0  # random translation by up to this many pixels (0: none)


@dataclass
class DetectConfig:
    # reconstruction: which heads enter the Dirichlet estimate; () = all heads
    heads: tuple[int, ...] = ()
    # reconstruction: the score MH-UI reports (see dirichlet.SCORES)
    score: str = "precision"
    combine: str = "pooled"  # "pooled" or "minka_log"
    head_temperature: float = 1.0  # softmax temperature of every head before moment matching
    var_floor: float = 1e-12
    min_precision: float = 1e-3
    mc_samples: int = 20  # MC-dropout passes


@dataclass
class AttackConfig:
    attacks: tuple[str, ...] = ("fgsm", "bim", "pgd_linf", "pgd_l2", "cw_l2")
    eps_linf: tuple[float, ...] = (0.05, 0.1, 0.2)
    eps_l2: tuple[float, ...] = (0.5, 1.0, 2.0)
    num_steps: int = 20
    rel_step_size: float = 2.5  # step = rel_step_size * eps / num_steps
    cw_binary_steps: int = 5
    cw_steps: int = 100
    cw_lr: float = 0.05
    cw_initial_c: float = 1.0
    cw_kappa: float = 0.0
    # adaptive PGD-Linf on CE(final head) - weight * s(x), s = MH-UI score (-log alpha_0 for
    # precision/epkl); weight 0 = the plain (non-adaptive) PGD
    adaptive_weights: tuple[float, ...] = (0.0, 1.0, 10.0, 100.0)
    adaptive_eps: tuple[float, ...] = (0.1,)
    batch_size: int = 512
    seed: int = 1


@dataclass
class BaselineConfig:
    ensemble_size: int = 5  # deep ensemble members (0: skip)
    prior_net: bool = True  # train the reverse-KL Prior Network
    # Malinin & Gales 2019: target Dirichlet alpha = 1 + target_concentration * smoothed one-hot
    rkl_target_concentration: float = 100.0
    rkl_smoothing: float = 0.01
    # reconstruction: out-of-distribution inputs for the flat target: uniform noise images
    rkl_ood_weight: float = 1.0
    rkl_num_steps: int = 0  # 0: train.num_steps


@dataclass
class MhuiConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    seed: int = 0


def get_config(variant: str = "default") -> MhuiConfig:
    """The config of `variant` in {"smoke", "default", "paper"}."""
    cfg = MhuiConfig()
    if variant == "default":
        return cfg
    if variant == "smoke":
        return dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, num_eval=0),
            model=dataclasses.replace(cfg.model, stages=(16, 32, 64), blocks_per_stage=1),
            train=dataclasses.replace(cfg.train, num_steps=300, batch_size=64, learning_rate=5e-3,
                                      log_every=50, eval_every=0, checkpoint_every=0, warmup_steps=10),
            detect=dataclasses.replace(cfg.detect, mc_samples=4),
            attack=dataclasses.replace(cfg.attack, attacks=("fgsm", "pgd_linf", "cw_l2"), eps_linf=(0.1,),
                                       eps_l2=(1.0,), num_steps=5, cw_binary_steps=2, cw_steps=10,
                                       adaptive_weights=(0.0, 10.0), adaptive_eps=(0.1,)),
            baselines=dataclasses.replace(cfg.baselines, ensemble_size=2, rkl_num_steps=100),
        )
    if variant == "paper":
        return dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, dataset="cifar10", cifar_dir="data/cifar-10-batches-py",
                                     num_eval=2000),
            model=dataclasses.replace(cfg.model, arch="resnet", blocks_per_stage=2, dtype="bfloat16"),
            train=dataclasses.replace(cfg.train, num_steps=40_000, batch_size=128, learning_rate=1e-3,
                                      weight_decay=5e-4, warmup_steps=1000, augment_shift=4,
                                      log_every=200, eval_every=5000, checkpoint_every=5000),
            attack=dataclasses.replace(cfg.attack, eps_linf=(2 / 255, 4 / 255, 8 / 255),
                                       eps_l2=(0.25, 0.5, 1.0), batch_size=256),
        )
    raise ValueError(f"unknown mhui config variant {variant!r}; expected 'smoke', 'default' or 'paper'")
