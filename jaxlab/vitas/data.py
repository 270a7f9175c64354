"""Data of ViTAS runs: procedural 16x16 images (`jaxlab.data.synthetic`) or an ImageNet-style
class folder (`root/{train,val}/<class>/<image>.{JPEG,png}`) read through a TFDS builder."""

from __future__ import annotations

import functools

import numpy as np

from jaxlab.data import synthetic
from jaxlab.vitas.configs import VitasConfig

__all__ = ["splits"]


@functools.lru_cache(maxsize=4)
def _procedural(n_train, n_val, n_test, res, classes, seed):
    make = lambda n, start: synthetic.make_images(n, resolution=res, num_classes=classes, seed=seed, start=start)
    tr = make(n_train, 0)
    va = make(n_val, n_train)
    te = make(n_test, n_train + n_val)
    return {"train": tr, "val": va, "test": te}


def splits(config: VitasConfig) -> dict:
    """`{"train", "val", "test"}` -> `(images float32 [N, R, R, 3] in [0, 1], labels int32 [N])`."""
    d, s = config.data, config.space
    if d.source == "procedural":
        return _procedural(d.num_train, d.num_val, d.num_test, s.image_size, s.num_classes, d.seed)
    from jaxlab.core.config import ConfigError

    raise ConfigError("config field 'data.source': the class-folder TFDS builder is not built yet; use 'procedural'")


def batch_indices(n: int, batch: int, seed: int, stream: int, step: int) -> np.ndarray:
    """Rows of training batch `step`: a pure function of `(seed, stream, step)`."""
    return np.random.default_rng([seed, stream, step]).integers(0, n, batch)
