"""Datasets for MH-UI: scikit-learn's digits (bundled) and CIFAR-10 python batches.

Both return `(images float32 [N, H, W, C] in [0, 1], labels int32 [N])`.

CIFAR-10 "python version" files (`data_batch_1` ... `data_batch_5`, `test_batch`) are
pickled dicts with `b"data"`: uint8 `[N, 3072]` (1024 red, then 1024 green, then 1024
blue values of a 32x32 image, row-major) and `b"labels"`: N ints in 0..9.
"""

from __future__ import annotations

import pathlib
import pickle

import numpy as np

__all__ = ["load_cifar10_batch", "load_cifar10", "load_dataset", "CIFAR10_TRAIN_FILES", "CIFAR10_TEST_FILES"]

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)


def _field(d: dict, name: str, path: pathlib.Path):
    for key in (name.encode(), name):
        if key in d:
            return d[key]
    raise ValueError(f"{path}: CIFAR-10 batch has no '{name}' entry (keys: {sorted(map(str, d))[:8]})")


def load_cifar10_batch(path: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch file as `(uint8 [N, 32, 32, 3], int32 [N])`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 batch file {path} does not exist")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise ValueError(f"{path}: not a CIFAR-10 python batch (cannot unpickle: {e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: CIFAR-10 batch must be a pickled dict, got {type(d).__name__}")
    data = np.asarray(_field(d, "data", path))
    labels = np.asarray(_field(d, "labels", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: field 'data' must be uint8 [N, 3072], got {data.dtype} {list(data.shape)}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise ValueError(f"{path}: field 'labels' must hold {data.shape[0]} labels, got shape {list(labels.shape)}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must be in 0..9, got range {labels.min()}..{labels.max()}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int32)


def load_cifar10(directory: str | pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 `split` ("train": data_batch_1..5, "test": test_batch) as float32 in [0, 1]."""
    directory = pathlib.Path(directory)
    if split == "train":
        names = CIFAR10_TRAIN_FILES
    elif split == "test":
        names = CIFAR10_TEST_FILES
    else:
        raise ValueError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
    if not directory.is_dir():
        raise FileNotFoundError(
            f"CIFAR-10 directory {directory} does not exist (config field 'data.cifar_dir'); it must hold "
            f"the python batches {', '.join(CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES)}")
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory}: missing CIFAR-10 batch files {missing}")
    parts = [load_cifar10_batch(directory / n) for n in names]
    x = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    y = np.concatenate([p[1] for p in parts])
    return x, y


def load_dataset(cfg) -> dict[str, np.ndarray]:
    """`{"x_train", "y_train", "x_test", "y_test", "num_classes"}` for a `DataConfig`."""
    if cfg.dataset == "digits":
        from jaxlab.data.digits import load_digits

        xtr, ytr = load_digits("train", seed=cfg.split_seed)
        xte, yte = load_digits("test", seed=cfg.split_seed)
    elif cfg.dataset == "cifar10":
        xtr, ytr = load_cifar10(cfg.cifar_dir, "train")
        xte, yte = load_cifar10(cfg.cifar_dir, "test")
    else:
        raise ValueError(f"config field 'data.dataset' must be 'digits' or 'cifar10', got {cfg.dataset!r}")
    if cfg.num_eval:
        xte, yte = xte[: cfg.num_eval], yte[: cfg.num_eval]
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte, "num_classes": 10}
