"""Configs of the reference classifier: `get_config("smoke" | "default" | "paper")`."""

from __future__ import annotations

import dataclasses

from jaxlab.core.config import variants


@dataclasses.dataclass
class ModelConfig:
    stages: tuple[int, ...] = (32, 64)
    blocks_per_stage: int = 2
    norm: str = "group"
    dtype: str = "float32"


@dataclasses.dataclass
class OptConfig:
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    clip_norm: float = 1.0


@dataclasses.dataclass
class ClassifierConfig:
    """Everything a classifier run depends on.

    Attributes:
      seed: initialisation, shuffling and dropout seed.
      batch_size: global batch (divisible by the number of devices used).
      num_steps: optimizer updates.
      eval_every, log_every, checkpoint_every: periods in steps (0: only at the end).
      keep: checkpoints kept.
      num_devices: devices of the data-parallel mesh (0: all).
      data_dir: TFDS data directory ("" : $JAXLAB_DATA_DIR or ~/.cache/jaxlab/tfds).
    """

    seed: int = 0
    batch_size: int = 64
    num_steps: int = 1000
    eval_every: int = 200
    log_every: int = 50
    checkpoint_every: int = 500
    keep: int = 3
    num_devices: int = 0
    data_dir: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    opt: OptConfig = dataclasses.field(default_factory=OptConfig)


def _default() -> ClassifierConfig:
    return ClassifierConfig()


def _smoke() -> ClassifierConfig:
    return ClassifierConfig(
        batch_size=32, num_steps=30, eval_every=15, log_every=10, checkpoint_every=15,
        model=ModelConfig(stages=(16, 32), blocks_per_stage=1), opt=OptConfig(lr=1e-2, warmup_steps=5))


def _paper() -> ClassifierConfig:
    # No paper: the accelerator-scale variant trains longer with wider stages in bf16.
    return ClassifierConfig(batch_size=256, num_steps=4000, eval_every=500,
                            model=ModelConfig(stages=(64, 128), dtype="bfloat16"))


def get_config(variant: str = "default") -> ClassifierConfig:
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
