"""scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes)."""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["load_digits", "digits_arrays", "NUM_CLASSES"]

NUM_CLASSES = 10


@functools.lru_cache(maxsize=8)
def digits_arrays(seed: int = 0, test_fraction: float = 0.25):
    """`(x_train, y_train, x_test, y_test)` as uint8 `[N, 8, 8, 1]` (0..16) and int64 labels.

    The split is stratified by class and a pure function of `seed`.
    """
    from sklearn.datasets import load_digits as sk_load
    from sklearn.model_selection import train_test_split

    bunch = sk_load()
    images = bunch.images.astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    return xtr, ytr, xte, yte


def load_digits(split: str, seed: int = 0, test_fraction: float = 0.25):
    """Digits as `(images float32 [N, 8, 8, 1] in [0, 1], labels int32 [N])`.

    Args:
      split: "train" or "test".
      seed: seed of the stratified split.
      test_fraction: fraction of each class held out for "test".
    """
    xtr, ytr, xte, yte = digits_arrays(seed, test_fraction)
    if split == "train":
        x, y = xtr, ytr
    elif split == "test":
        x, y = xte, yte
    else:
        raise ValueError(f"digits split must be 'train' or 'test', got {split!r}")
    return (x.astype(np.float32) / 16.0), y.astype(np.int32)
