"""Data of ViTAS runs: procedural 16x16 images (`jaxlab.data.synthetic`), scikit-learn's digits
upsampled to 16x16, or an ImageNet-style
class folder (`root/{train,val}/<class>/<image>.{JPEG,png}`) read through the TFDS builder of
`jaxlab.vitas.folder` (val/ is the test split; the validation split is held out of train/)."""

from __future__ import annotations

import functools

import numpy as np

from jaxlab.data import synthetic
from jaxlab.vitas.configs import VitasConfig

__all__ = ["splits", "STREAM_ABOVE_BYTES"]

HOLDOUT_STREAM = 31
STREAM_ABOVE_BYTES = 2 << 30  # data.stream="auto": stream a folder whose train/ decoded exceeds this


@functools.lru_cache(maxsize=4)
def _procedural(n_train, n_val, n_test, res, classes, seed):
    make = lambda n, start: synthetic.make_images(n, resolution=res, num_classes=classes, seed=seed, start=start)
    tr = make(n_train, 0)
    va = make(n_val, n_train)
    te = make(n_test, n_train + n_val)
    return {"train": tr, "val": va, "test": te}


@functools.lru_cache(maxsize=4)
def _digits(res: int, num_val: int, seed: int) -> dict:
    """scikit-learn's 8x8 digits (stratified 75/25 split of `jaxlab.data.digits`, seed 0), each
    pixel repeated to `res x res` (nearest upsampling), grey replicated to RGB, values / 16.
    `num_val` training images (drawn with `(seed, HOLDOUT_STREAM)`) are the validation split."""
    from jaxlab.data import digits

    xtr, ytr, xte, yte = digits.digits_arrays(0, 0.25)
    k = res // 8
    up = lambda a: np.repeat(np.repeat(a.astype(np.float32) / 16.0, k, 1), k, 2).repeat(3, -1)
    perm = np.random.default_rng([seed, HOLDOUT_STREAM]).permutation(len(ytr))
    va, tr = np.sort(perm[:num_val]), np.sort(perm[num_val:])
    x, y = up(xtr), ytr.astype(np.int32)
    return {"train": (x[tr], y[tr]), "val": (x[va], y[va]), "test": (up(xte), yte.astype(np.int32))}


def splits(config: VitasConfig) -> dict:
    """`{"train", "val", "test"}` -> `(images float32 [N, R, R, 3] in [0, 1], labels int32 [N])`."""
    d, s = config.data, config.space
    if d.source == "procedural":
        return _procedural(d.num_train, d.num_val, d.num_test, s.image_size, s.num_classes, d.seed)
    if d.source == "digits":
        return _digits(s.image_size, d.num_val, d.seed)
    return _folder(d.folder, s.image_size, s.num_classes, d.num_val, d.seed, d.stream)


def _folder(root: str, size: int, num_classes: int, num_val: int, seed: int, stream: str = "auto") -> dict:
    """Class folder: `num_val` images held out of train/ (the search's validation split, drawn with
    `(seed, HOLDOUT_STREAM)`), the rest trains; val/ is the test split. Streamed (`SplitImages`
    views of train and test) when `stream` is "on", or "auto" and train/ decoded exceeds
    `STREAM_ABOVE_BYTES`."""
    from jaxlab.core.config import ConfigError
    from jaxlab.vitas import folder

    builder = folder.build(root, size)
    classes = builder.builder_config.classes
    if len(classes) != num_classes:
        raise ConfigError(f"config field 'space.num_classes' is {num_classes} but {root}/train has "
                          f"{len(classes)} class folders")
    y = folder.split_labels(builder, "train")
    if num_val >= len(y):
        raise ConfigError(f"config field 'data.num_val' = {num_val} leaves no training images of the "
                          f"{len(y)} in {root}/train")
    perm = np.random.default_rng([seed, HOLDOUT_STREAM]).permutation(len(y))
    va, tr = np.sort(perm[:num_val]), np.sort(perm[num_val:])
    if stream == "off" or (stream == "auto" and len(y) * size * size * 3 * 4 <= STREAM_ABOVE_BYTES):
        x = folder.load_split(builder, "train")[0]
        return {"train": (x[tr], y[tr]), "val": (x[va], y[va]), "test": folder.load_split(builder, "val")}
    # streamed: train and test rows are read per batch / chunk; the small validation split is held
    return {"train": (folder.SplitImages(builder, "train", tr), y[tr]),
            "val": (folder.SplitImages(builder, "train", va)[:], y[va]),
            "test": (folder.SplitImages(builder, "val"), folder.split_labels(builder, "val"))}


def batch_indices(n: int, batch: int, seed: int, stream: int, step: int) -> np.ndarray:
    """Rows of training batch `step`: a pure function of `(seed, stream, step)`."""
    return np.random.default_rng([seed, stream, step]).integers(0, n, batch)
