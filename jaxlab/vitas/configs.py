"""ViTAS configs: `get_config("smoke" | "default" | "paper")`.

`smoke` runs the whole pipeline (train-supernet, search, retrain, evaluate) in about a
minute on 2 CPU cores, `default` is the spec's small superformer (sec. 3: 16x16 images,
patch sizes {2, 4}, C = 48 with ratios {1/4, 1/2, 3/4, 1}, L = 6, heads {1, 2, 4}) in
minutes on a CPU, `paper` the released DeiT-like 1G space (ImageNet scale, accelerators).

Two trainings go through `jaxlab.core.train.fit`, each with its own `LoopConfig`:
`supernet.loop` and `retrain.loop`. The genetic search has its own sizes.
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

__all__ = ["SpaceConfig", "DataConfig", "SupernetConfig", "SearchConfig", "RetrainConfig", "VitasConfig",
           "get_config"]

Sharing = Literal["prefix", "bilateral", "cyclic"]


@dataclasses.dataclass
class SpaceConfig:
    """The superformer and its search space (spec sec. 2.1-2.2).

    Attributes:
      image_size, in_channels, num_classes: input and output shapes.
      patch_sizes: patch-size choices, each with its own embedding, class token and
        position embedding; one compile per patch size.
      embed_dim: `C`, the widest token embedding.
      embed_ratios: global token-embedding ratios, width `d_k = round(r_k C)`.
      depth: `L`, blocks (each may be the identity).
      heads: head-count choices; each has a private q/k projection, `v` is shared.
      qkv_dim: widest per-projection attention width `A` (q, k and v each); the
        released 1.3G model has qkv 432 = 3 x 144.
      qkv_ratios, mlp_dim, mlp_ratios: per-block attention / MLP-hidden widths.
      attention_scale: logit scale of every head; 0 means `(C // 3) ** -0.5`, fixed for
        every head count and width as in the released code.
      sharing: token-embedding index sets: prefix, bilateral (BCNet, two forwards with
        summed logits) or cyclic (ViTAS v2, reconstruction).
      cyclic_offsets: one offset per embed ratio; () means `s_k = sum_{j<k} d_j mod C`.
      flops_count: "exact" (tokens = patches + class token, head once per image) or
        "release" (the repo's formula: patches only, head counted on every token).
      release_patch_bug: parity switch for the release's `set_subnet` bug: every forward
        uses patch size 0, whatever was sampled.
    """

    image_size: PositiveInt = 16
    in_channels: PositiveInt = 3
    num_classes: PositiveInt = 10
    patch_sizes: tuple[PositiveInt, ...] = (2, 4)
    embed_dim: PositiveInt = 48
    embed_ratios: tuple[PositiveFloat, ...] = (0.25, 0.5, 0.75, 1.0)
    depth: PositiveInt = 6
    heads: tuple[PositiveInt, ...] = (1, 2, 4)
    qkv_dim: PositiveInt = 48
    qkv_ratios: tuple[PositiveFloat, ...] = (0.25, 0.5, 0.75, 1.0)
    mlp_dim: PositiveInt = 96
    mlp_ratios: tuple[PositiveFloat, ...] = (0.25, 0.5, 0.75, 1.0)
    attention_scale: NonNegativeFloat = 0.0
    sharing: Sharing = "cyclic"
    cyclic_offsets: tuple[NonNegativeInt, ...] = ()
    flops_count: Literal["exact", "release"] = "exact"
    release_patch_bug: bool = False
    norm_epsilon: PositiveFloat = 1e-6


@dataclasses.dataclass
class DataConfig:
    """Procedural images (`jaxlab.data.synthetic`), digits, or an ImageNet-style class folder.

    Attributes:
      source: "procedural", "digits" (scikit-learn's 8x8 digits, 1,347 train / 450 test,
        upsampled to `image_size`, a multiple of 8) or "folder" (`folder/{train,val}/<class>/<image>`,
        read through the TFDS builder of `jaxlab.vitas.folder`).
      folder: the class-folder root when `source="folder"` (its val/ is the test split).
      num_train, num_val, num_test: procedural split sizes (val scores the search); for a
        folder or digits, `num_val` images are held out of train/ as the validation split.
      seed: the dataset's seed (apart from the run's seed).
      stream: a folder's train and test images read per batch from the prepared array_record
        files ("on"), held in memory decoded ("off"), or "auto": streamed when train/ decoded
        as float32 exceeds `data.STREAM_ABOVE_BYTES` (2 GiB).
    """

    source: Literal["procedural", "digits", "folder"] = "procedural"
    folder: str = ""
    num_train: PositiveInt = 4096
    num_val: PositiveInt = 512
    num_test: PositiveInt = 1000
    seed: int = 0
    stream: Literal["auto", "on", "off"] = "auto"


@dataclasses.dataclass
class AugConfig:
    """On-device augmentation (spec sec. 2.4). "weak": random resized crop + flip + random
    erasing + CutMix (the superformer recipe); "strong" adds colour jitter and drops
    CutMix (retraining); "none"."""

    kind: Literal["none", "weak", "strong"] = "weak"
    crop_min_scale: Probability = 0.35
    erase_prob: Probability = 0.25
    cutmix_prob: Probability = 1.0
    cutmix_alpha: PositiveFloat = 1.0
    jitter: NonNegativeFloat = 0.4


@dataclasses.dataclass
class SupernetConfig:
    """Superformer training: AdamW, warm-up + cosine, label smoothing, weak augmentation.

    Attributes:
      identity_shifting: canonicalise every sampled architecture (spec sec. 2.3).
      p_id: initial identity probability; tuned in steps of `p_id_step` until the mean
        analytic FLOPs of `p_id_samples` samples lies in the search's FLOPs band.
    """

    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.05
    warmup_steps: NonNegativeInt = 100
    label_smoothing: Probability = 0.1
    identity_shifting: bool = True
    p_id: Probability = 0.5
    p_id_step: PositiveFloat = 0.01
    p_id_samples: PositiveInt = 1000
    aug: AugConfig = dataclasses.field(default_factory=AugConfig)
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=3000, log_every=50, checkpoint_every=500, num_devices=1))


@dataclasses.dataclass
class SearchConfig:
    """Genetic search (NSGA-Net operators of `jaxlab.nas.evolution`) in a FLOPs band.

    Attributes:
      flops_min, flops_max: the band of analytic MACs (0 and 0: 25%-40% of the largest
        subnet's MACs).
      pop_size, generations: GA sizes (released: 50 x 40; small: 20 x 10).
      eval_batch: held-out images scoring each candidate with inherited weights.
      random_baseline: also run random search with the same number of evaluations.
      feasible_offspring: redraw out-of-band offspring before they are scored, so every
        evaluation is an in-band net (as every one of random search's is). False: score them
        too and let them lose the tournaments (constraint domination). The release gives them
        the penalty score `5 - (F - F_max) / F_max` (spec sec. 2.4) instead of redrawing.
    """

    flops_min: NonNegativeFloat = 0.0
    flops_max: NonNegativeFloat = 0.0
    pop_size: PositiveInt = 20
    generations: PositiveInt = 10
    eval_batch: PositiveInt = 512
    random_baseline: bool = True
    feasible_offspring: bool = True


@dataclasses.dataclass
class RetrainConfig:
    """Retraining the searched net from scratch (strong recipe by default)."""

    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.05
    warmup_steps: NonNegativeInt = 100
    label_smoothing: Probability = 0.1
    aug: AugConfig = dataclasses.field(default_factory=lambda: AugConfig(kind="strong"))
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=2000, log_every=50, checkpoint_every=500, eval_every=500, num_devices=1))


@dataclasses.dataclass
class VitasConfig:
    """Everything a ViTAS run depends on (space, data, supernet, search, retraining)."""

    seed: int = 0
    space: SpaceConfig = dataclasses.field(default_factory=SpaceConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    supernet: SupernetConfig = dataclasses.field(default_factory=SupernetConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    retrain: RetrainConfig = dataclasses.field(default_factory=RetrainConfig)

    def validate(self) -> None:
        s = self.space
        for name in ("patch_sizes", "embed_ratios", "heads", "qkv_ratios", "mlp_ratios"):
            if not getattr(s, name):
                raise ConfigError(f"config field 'space.{name}' needs at least one choice")
        for p in s.patch_sizes:
            if s.image_size % p:
                raise ConfigError(f"config field 'space.patch_sizes': {p} does not divide image_size={s.image_size}")
        for name, ratios in (("embed_ratios", s.embed_ratios), ("qkv_ratios", s.qkv_ratios),
                             ("mlp_ratios", s.mlp_ratios)):
            if any(r > 1.0 for r in ratios):
                raise ConfigError(f"config field 'space.{name}' must hold ratios in (0, 1], got {ratios}")
        for r in s.qkv_ratios:
            a = round(r * s.qkv_dim)
            bad = [h for h in s.heads if a == 0 or a % h]
            if bad:
                raise ConfigError(f"config field 'space.qkv_ratios': width round({r} * {s.qkv_dim}) = {a} "
                                  f"is not divisible by head counts {bad}")
        if any(round(r * s.embed_dim) == 0 for r in s.embed_ratios):
            raise ConfigError("config field 'space.embed_ratios': a ratio gives width 0")
        if s.cyclic_offsets and len(s.cyclic_offsets) != len(s.embed_ratios):
            raise ConfigError(f"config field 'space.cyclic_offsets' needs {len(s.embed_ratios)} offsets "
                              f"(one per embed ratio), got {len(s.cyclic_offsets)}")
        if self.search.flops_max < self.search.flops_min:
            raise ConfigError("config field 'search.flops_max' must be >= search.flops_min")
        if self.data.source == "folder" and not self.data.folder:
            raise ConfigError("config field 'data.folder' is needed when data.source='folder'")
        if self.data.source == "digits" and (s.image_size % 8 or s.in_channels != 3 or s.num_classes != 10):
            raise ConfigError("data.source='digits' needs space.image_size a multiple of 8, space.in_channels=3 "
                              f"and space.num_classes=10, got {s.image_size}, {s.in_channels}, {s.num_classes}")
        if self.data.source == "folder" and s.in_channels != 3:
            raise ConfigError("config field 'space.in_channels' must be 3 for a class folder (images are read as RGB)")


def _default() -> VitasConfig:
    return VitasConfig()


def _smoke() -> VitasConfig:
    space = SpaceConfig(embed_dim=24, depth=3, qkv_dim=16, qkv_ratios=(0.5, 1.0), mlp_dim=32,
                        mlp_ratios=(0.5, 1.0), heads=(1, 2))
    return VitasConfig(
        space=space, data=DataConfig(num_train=256, num_val=64, num_test=64),
        supernet=SupernetConfig(batch_size=16, warmup_steps=5, p_id_samples=200, loop=LoopConfig(
            num_steps=30, log_every=10, checkpoint_every=15, num_devices=1, progress=False)),
        search=SearchConfig(pop_size=6, generations=2, eval_batch=64),
        retrain=RetrainConfig(batch_size=16, warmup_steps=5, loop=LoopConfig(
            num_steps=20, log_every=10, checkpoint_every=10, eval_every=10, num_devices=1, progress=False)))


def _paper() -> VitasConfig:
    # The released DeiT-like 1G space (spec sec. 2.1); the data must be an ImageNet class folder.
    r10 = tuple(round(0.1 * k, 1) for k in range(1, 11))
    space = SpaceConfig(image_size=224, num_classes=1000, patch_sizes=(14, 16, 32), embed_dim=384,
                        embed_ratios=r10, depth=16, heads=(3, 6, 12, 16), qkv_dim=480, qkv_ratios=r10,
                        mlp_dim=1440, mlp_ratios=r10)
    return VitasConfig(
        space=space, data=DataConfig(source="folder", folder="imagenet"),
        supernet=SupernetConfig(batch_size=1024, warmup_steps=6250, loop=LoopConfig(
            num_steps=375000, log_every=100, checkpoint_every=5000, num_devices=1)),
        search=SearchConfig(flops_min=0.9e9, flops_max=1.0e9, pop_size=50, generations=40, eval_batch=10000),
        retrain=RetrainConfig(batch_size=1024, warmup_steps=6250, loop=LoopConfig(
            num_steps=375000, log_every=100, checkpoint_every=5000, eval_every=5000, num_devices=1)))


def get_config(variant: str = "default") -> VitasConfig:
    """The ViTAS config for `variant` in {"smoke", "default", "paper"}."""
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
