"""Configs of `jaxlab mhui`: `get_config(variant)` for smoke / default / paper.

    smoke    about a minute on 2 CPU cores for train + attack + evaluate (tests): a tiny
             CNN without normalisation (its programs compile a third faster), 120 steps,
             96 test examples, PGD-Linf and C&W (5 and 2x10 steps) plus two adaptive
             sets, a 2-member ensemble; XLA compiles take most of that minute.
    default  minutes on a CPU: the digits tables of experiments/mhui/README.md.
    protocol the networks of the validation-split protocol with adaptive attacks
             (`jaxlab mhui protocol`; a few minutes a seed on a CPU).
    paper    CIFAR-10 with the ResNet-18-style multi-exit network (accelerators; needs
             the CIFAR-10 python batches in `data.cifar_dir`).

Fields marked "reconstruction" are choices the paper does not publish.
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

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "DetectConfig", "AttackConfig",
           "BaselineConfig", "ProtocolConfig", "MhuiConfig", "get_config", "ATTACKS"]

Dtype = Literal["float32", "bfloat16", "float16"]
AttackName = Literal["fgsm", "bim", "pgd_linf", "pgd_l2", "cw_l2"]
Score = Literal["precision", "diff_entropy", "mutual_info", "epkl", "entropy", "max_prob"]
ATTACKS = ("fgsm", "bim", "pgd_linf", "pgd_l2", "cw_l2")


@dataclasses.dataclass
class DataConfig:
    """Attributes:
      dataset: "digits" (scikit-learn, bundled), "synthetic32" (procedural 32x32 colour
        images of `jaxlab.data.synthetic`) or "cifar10" (python batches).
      synthetic_train_size, synthetic_test_size: examples of "synthetic32".
      cifar_dir: directory with data_batch_1..5 and test_batch.
      split_seed: seed of the digits train/test split.
      num_eval: test examples evaluated and attacked (0: all).
    """

    dataset: Literal["digits", "synthetic32", "cifar10"] = "digits"
    cifar_dir: str = ""
    synthetic_train_size: PositiveInt = 3000
    synthetic_test_size: PositiveInt = 500
    split_seed: int = 0
    num_eval: NonNegativeInt = 0


@dataclasses.dataclass
class ModelConfig:
    """Attributes:
      arch: "cnn" (`jaxlab.nn.SmallCNN`, 8x8) or "resnet" (`jaxlab.nn.resnet`, 32x32).
      stages: cnn widths, one head after each stage.
      dropout_rate: after every cnn stage; used by the MC-dropout baselines.
      resnet_norm: "group" keeps attacks and MC dropout free of batch statistics.
    """

    arch: Literal["cnn", "resnet"] = "cnn"
    stages: tuple[PositiveInt, ...] = (32, 64, 128)
    blocks_per_stage: PositiveInt = 1
    norm: Literal["group", "layer", "none"] = "group"
    dropout_rate: Probability = 0.1
    resnet_stage_sizes: tuple[PositiveInt, ...] = (2, 2, 2, 2)
    resnet_widths: tuple[PositiveInt, ...] = (64, 128, 256, 512)
    resnet_norm: Literal["group", "batch"] = "group"
    dtype: Dtype = "float32"

    @property
    def num_heads(self) -> int:
        return len(self.stages) if self.arch == "cnn" else len(self.resnet_stage_sizes)


@dataclasses.dataclass
class TrainConfig:
    """Optimisation of every network (the loop itself is `MhuiConfig.loop`).

    Attributes:
      learning_rate: AdamW peak rate (linear warmup, cosine decay to 1% of it).
      head_weights: reconstruction: deep-supervision loss sum_h w_h CE_h / sum_h w_h;
        () = all heads 1.0.
      augment_shift: random translation by up to this many pixels (0: none).
    """

    batch_size: PositiveInt = 128
    learning_rate: PositiveFloat = 3e-3
    weight_decay: NonNegativeFloat = 1e-4
    warmup_steps: NonNegativeInt = 50
    head_weights: tuple[NonNegativeFloat, ...] = ()
    augment_shift: NonNegativeInt = 0


@dataclasses.dataclass
class DetectConfig:
    """Attributes:
      heads: reconstruction: which heads enter the Dirichlet estimate; () = all heads.
      score: reconstruction: the score MH-UI reports (see `dirichlet.SCORES`).
      combine: the per-class precision combination of `dirichlet.dirichlet_moment_match`.
      head_temperature: softmax temperature of every head before moment matching.
      mc_samples: MC-dropout passes (fewer than 2: no MC-dropout baselines).
    """

    heads: tuple[int, ...] = ()
    score: Score = "precision"
    combine: Literal["pooled", "minka_log"] = "pooled"
    head_temperature: PositiveFloat = 1.0
    var_floor: PositiveFloat = 1e-12
    min_precision: PositiveFloat = 1e-3
    mc_samples: NonNegativeInt = 20


@dataclasses.dataclass
class AttackConfig:
    """Attributes:
      attacks: the non-adaptive attacks, run against every network's own classifier.
      eps_linf, eps_l2: radii of the L-inf attacks (fgsm, bim, pgd_linf) and of pgd_l2.
      rel_step_size: iterative attacks step by rel_step_size * eps / num_steps.
      adaptive_weights: adaptive PGD-Linf on CE(final head) - weight * s(x), s = the
        MH-UI detector term (-log alpha_0 for precision/epkl); weight 0 = plain PGD.
      batch_size: examples per attack call (the last batch is padded).
    """

    attacks: tuple[AttackName, ...] = ATTACKS
    eps_linf: tuple[PositiveFloat, ...] = (0.05, 0.1, 0.2)
    eps_l2: tuple[PositiveFloat, ...] = (0.5, 1.0, 2.0)
    num_steps: PositiveInt = 20
    rel_step_size: PositiveFloat = 2.5
    cw_binary_steps: PositiveInt = 5
    cw_steps: PositiveInt = 100
    cw_lr: PositiveFloat = 0.05
    cw_initial_c: PositiveFloat = 1.0
    cw_kappa: NonNegativeFloat = 0.0
    adaptive_weights: tuple[NonNegativeFloat, ...] = (0.0, 1.0, 10.0, 100.0)
    adaptive_eps: tuple[PositiveFloat, ...] = (0.1,)
    batch_size: PositiveInt = 512


@dataclasses.dataclass
class BaselineConfig:
    """Attributes:
      ensemble_size: deep-ensemble members (0: no ensemble; otherwise at least 2).
      prior_net: train the reverse-KL Prior Network.
      rkl_target_concentration, rkl_smoothing: Malinin & Gales 2019: target Dirichlet
        alpha = 1 + concentration * smoothed one-hot.
      rkl_ood_weight: reconstruction: weight of the flat target on uniform-noise images.
      rkl_num_steps: steps of the Prior Network (0: loop.num_steps). Its own count, not a
        loop setting: the Prior Network converges on another schedule than the heads.
      forward_kl_prior_net: also train the forward-KL Prior Network (Malinin & Gales 2018;
        network "prior_net_fkl", same targets and steps as the reverse-KL one).
    """

    ensemble_size: NonNegativeInt = 5
    prior_net: bool = True
    rkl_target_concentration: PositiveFloat = 100.0
    rkl_smoothing: Probability = 0.01
    rkl_ood_weight: NonNegativeFloat = 1.0
    rkl_num_steps: NonNegativeInt = 0
    forward_kl_prior_net: bool = False


@dataclasses.dataclass
class ProtocolConfig:
    """The validation-split protocol with adaptive attacks (`jaxlab mhui protocol`, `protocol.py`).

    Attributes:
      val_fraction: share of the test set that becomes the validation half (choices).
      eps: L-inf radius of pgd and of the adaptive attacks.
      num_steps, rel_step_size: steps of every PGD-type attack, each rel_step_size * eps / num_steps.
      weights: detector weights w of the hinge attack (the best per example is kept).
      kappa: margin of the hinge attack (logits).
      temperatures: head temperatures of the MH-UI temperature ablation.
      fpr: the false-positive rate of the TPR column (threshold on validation clean scores).
    """

    val_fraction: Probability = 0.5
    eps: PositiveFloat = 0.1
    num_steps: PositiveInt = 40
    rel_step_size: PositiveFloat = 2.5
    weights: tuple[NonNegativeFloat, ...] = (1.0, 10.0)
    kappa: NonNegativeFloat = 1.0
    cw_binary_steps: PositiveInt = 5
    cw_steps: PositiveInt = 100
    cw_lr: PositiveFloat = 0.05
    temperatures: tuple[PositiveFloat, ...] = (0.5, 1.0, 2.0, 4.0)
    fpr: Probability = 0.05
    batch_size: PositiveInt = 512


@dataclasses.dataclass
class MhuiConfig:
    """Everything a `jaxlab mhui` run depends on.

    Attributes:
      seed: initialisation, batches, dropout, attack starts and MC dropout (each a named
        stream folded into this seed).
      eval_batch_size: examples per evaluation call (the last batch is padded and masked).
      loop: steps, log/eval/checkpoint periods, kept checkpoints and devices of the
        training of every network (`--config.loop.num_steps=...`).
    """

    seed: int = 0
    eval_batch_size: PositiveInt = 512
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=1000, log_every=100, eval_every=500, checkpoint_every=500))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    detect: DetectConfig = dataclasses.field(default_factory=DetectConfig)
    attack: AttackConfig = dataclasses.field(default_factory=AttackConfig)
    baselines: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)
    protocol: ProtocolConfig = dataclasses.field(default_factory=ProtocolConfig)

    def validate(self) -> None:
        h = self.model.num_heads
        if self.model.arch == "cnn" and not self.model.stages:
            raise ConfigError("config field 'model.stages' needs at least one stage")
        if self.model.arch == "resnet" and len(self.model.resnet_widths) != len(self.model.resnet_stage_sizes):
            raise ConfigError(f"config field 'model.resnet_widths' has {len(self.model.resnet_widths)} values "
                              f"but 'model.resnet_stage_sizes' has {len(self.model.resnet_stage_sizes)}")
        if self.train.head_weights and len(self.train.head_weights) != h:
            raise ConfigError(f"config field 'train.head_weights' has {len(self.train.head_weights)} values "
                              f"but the model has {h} heads")
        if self.train.head_weights and not sum(self.train.head_weights) > 0:
            raise ConfigError("config field 'train.head_weights' must have a positive sum")
        bad = [i for i in self.detect.heads if not -h <= i < h]
        if bad:
            raise ConfigError(f"config field 'detect.heads' names heads {bad}, but the model has {h} heads")
        used = len(set(i % h for i in self.detect.heads)) if self.detect.heads else h
        if used < 2:
            raise ConfigError(f"config field 'detect.heads' must select at least 2 heads (moment matching "
                              f"needs 2 samples); the model has {h} heads, {used} selected")
        if self.baselines.ensemble_size == 1:
            raise ConfigError("config field 'baselines.ensemble_size' must be 0 (no ensemble) or at least 2")
        if not self.attack.attacks and not self.attack.adaptive_weights:
            raise ConfigError("config fields 'attack.attacks' and 'attack.adaptive_weights' are both empty")


def _default() -> MhuiConfig:
    return MhuiConfig()


def _smoke() -> MhuiConfig:
    return MhuiConfig(
        eval_batch_size=128,
        loop=LoopConfig(num_steps=120, log_every=40, eval_every=60, checkpoint_every=60, num_devices=1),
        data=DataConfig(num_eval=96),
        model=ModelConfig(stages=(8, 16, 32), norm="none"),
        train=TrainConfig(batch_size=64, learning_rate=1e-2, warmup_steps=10),
        detect=DetectConfig(mc_samples=4),
        attack=AttackConfig(attacks=("pgd_linf", "cw_l2"), eps_linf=(0.1,), eps_l2=(1.0,), num_steps=5,
                            cw_binary_steps=2, cw_steps=10, adaptive_weights=(0.0, 10.0), adaptive_eps=(0.1,),
                            batch_size=128),
        baselines=BaselineConfig(ensemble_size=2, rkl_num_steps=60),
    )


def _paper() -> MhuiConfig:
    return MhuiConfig(
        loop=LoopConfig(num_steps=40_000, log_every=200, eval_every=5000, checkpoint_every=5000),
        data=DataConfig(dataset="cifar10", cifar_dir="data/cifar-10-batches-py", num_eval=2000),
        model=ModelConfig(arch="resnet", blocks_per_stage=2, dtype="bfloat16"),
        train=TrainConfig(batch_size=128, learning_rate=1e-3, weight_decay=5e-4, warmup_steps=1000,
                          augment_shift=4),
        attack=AttackConfig(eps_linf=(2 / 255, 4 / 255, 8 / 255), eps_l2=(0.25, 0.5, 1.0), batch_size=256),
    )


def _protocol() -> MhuiConfig:
    """Digits networks for `jaxlab mhui protocol`: MH-UI, RKL and FKL Prior Networks (no
    ensemble), a half-width CNN (stages 16-32-64) trained 400 steps, so that a seed takes
    a few minutes on 2 CPU cores."""
    return MhuiConfig(
        loop=LoopConfig(num_steps=400, log_every=100, eval_every=200, checkpoint_every=200),
        model=ModelConfig(stages=(16, 32, 64)),
        baselines=BaselineConfig(ensemble_size=0, forward_kl_prior_net=True),
    )


def _protocol32() -> MhuiConfig:
    """`protocol` on the procedural 32x32 colour images with a reduced-width ResNet (three
    stages of one basic block, widths 8-16-32, GroupNorm, a head after each stage; no
    dropout, so no MC-dropout detector). Sized for a few seeds on 2 CPU cores: no
    forward-KL Prior Network, PGD-type attacks of 20 steps, C&W of 3 x 50 steps."""
    return MhuiConfig(
        eval_batch_size=250,
        loop=LoopConfig(num_steps=400, log_every=100, eval_every=200, checkpoint_every=200),
        data=DataConfig(dataset="synthetic32"),
        model=ModelConfig(arch="resnet", resnet_stage_sizes=(1, 1, 1), resnet_widths=(8, 16, 32)),
        train=TrainConfig(batch_size=64),
        baselines=BaselineConfig(ensemble_size=0, forward_kl_prior_net=False),
        protocol=ProtocolConfig(eps=8 / 255, num_steps=20, cw_binary_steps=3, cw_steps=50, batch_size=250),
    )


def get_config(variant: str = "default") -> MhuiConfig:
    """The config of `variant` in {"smoke", "default", "protocol", "protocol32", "paper"}
    (another name is a `ConfigError`)."""
    return variants({"smoke": _smoke, "default": _default, "protocol": _protocol, "protocol32": _protocol32,
                     "paper": _paper}, variant)
