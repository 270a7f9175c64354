"""Configs of the reference classifier: `get_config("smoke" | "default" | "paper")`."""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxlab.core.config import LoopConfig, NonNegativeFloat, PositiveFloat, PositiveInt, variants

Dtype = Literal["float32", "bfloat16", "float16"]


@dataclasses.dataclass
class ModelConfig:
    stages: tuple[PositiveInt, ...] = (32, 64)
    blocks_per_stage: PositiveInt = 2
    norm: Literal["group", "layer", "none"] = "group"
    dtype: Dtype = "float32"


@dataclasses.dataclass
class OptConfig:
    lr: PositiveFloat = 3e-3
    weight_decay: NonNegativeFloat = 1e-4
    warmup_steps: int = 50
    clip_norm: PositiveFloat = 1.0


@dataclasses.dataclass
class ClassifierConfig:
    """Everything a classifier run depends on.

    Attributes:
      seed: initialisation, shuffling and dropout seed.
      batch_size: global batch (divisible by the number of devices used).
      eval_batch_size: rows per evaluation call (the last batch is padded and masked).
      data_dir: TFDS data directory ("" : $JAXLAB_DATA_DIR or ~/.cache/jaxlab/tfds).
      loop: steps, logging/eval/checkpoint periods, kept checkpoints, devices.
    """

    seed: int = 0
    batch_size: PositiveInt = 64
    eval_batch_size: PositiveInt = 256
    data_dir: str = ""
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=1000, eval_every=200, log_every=50, checkpoint_every=500))
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    opt: OptConfig = dataclasses.field(default_factory=OptConfig)

    def validate(self) -> None:
        if not self.model.stages:
            from jaxlab.core.config import ConfigError

            raise ConfigError("config field 'model.stages' needs at least one stage")


def _default() -> ClassifierConfig:
    return ClassifierConfig()


def _smoke() -> ClassifierConfig:
    return ClassifierConfig(
        batch_size=32, loop=LoopConfig(num_steps=30, eval_every=15, log_every=10, checkpoint_every=15),
        model=ModelConfig(stages=(16, 32), blocks_per_stage=1), opt=OptConfig(lr=1e-2, warmup_steps=5))


def _paper() -> ClassifierConfig:
    # No paper: the accelerator-scale variant trains longer with wider stages in bf16.
    return ClassifierConfig(batch_size=256, loop=LoopConfig(num_steps=4000, eval_every=500, checkpoint_every=500),
                            model=ModelConfig(stages=(64, 128), dtype="bfloat16"))


def get_config(variant: str = "default") -> ClassifierConfig:
    """The classifier's config for `variant` in {"smoke", "default", "paper"}."""
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
