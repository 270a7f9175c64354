"""The procedural image splits ScaleNet trains, searches and tests on.

Example i is the same scene at every resolution (`jaxlab.data.synthetic.make_images`
depends only on `(data.seed, index)`); the train, val (search) and test splits are
disjoint slices of one stream.
"""

from __future__ import annotations

import numpy as np

from jaxlab.scalenet.configs import DataConfig

__all__ = ["Data", "SPLITS"]

SPLITS = ("train", "val", "test")


class Data:
    """Train / val / test splits of the procedural images, rendered lazily per resolution.

    `get(split, r)` returns `(images float32 [N, r, r, 3], labels int32 [N])`, cached.
    """

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self._cache: dict = {}

    def get(self, split: str, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        key = (split, int(resolution))
        if key not in self._cache:
            from jaxlab.data.synthetic import make_images

            c = self.cfg
            n = {"train": c.num_train, "val": c.num_val, "test": c.num_test}[split]
            start = {"train": 0, "val": c.num_train, "test": c.num_train + c.num_val}[split]
            self._cache[key] = make_images(n, resolution=int(resolution), num_classes=c.num_classes,
                                           seed=c.seed, start=start)
        return self._cache[key]
