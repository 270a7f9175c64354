"""The crop classifier: a 3-conv Flax CNN over 32x32 crops (background, vehicle, pedestrian, cyclist)."""

from __future__ import annotations

import jax.numpy as jnp

from jaxlab.lidarfirst.configs import LidarFirstConfig
from jaxlab.nn import SmallCNN


def make_model(config: LidarFirstConfig) -> SmallCNN:
    """`SmallCNN` with one conv block per stage: `[B, s, s, 3] -> [B, 4]` logits."""
    m = config.model
    return SmallCNN(num_classes=4, stages=tuple(m.stages), blocks_per_stage=1, norm="group", dtype=jnp.dtype(m.dtype))
