"""Datasets for MH-UI: scikit-learn's digits (bundled), the procedural 32x32 colour images
of `jaxlab.data.synthetic` (10 shape x texture classes) and CIFAR-10 python batches.

Both return `(images float32 [N, H, W, C] in [0, 1], labels int32 [N])`.

CIFAR-10 "python version" files (`data_batch_1` ... `data_batch_5`, `test_batch`) are
pickled dicts with `b"data"`: uint8 `[N, 3072]` (1024 red, then 1024 green, then 1024
blue values of a 32x32 image, row-major) and `b"labels"`: N ints in 0..9. A malformed
batch raises `jaxlab.core.errors.DataFormatError` naming the file and the field.
"""

from __future__ import annotations

import pathlib
import pickle

import numpy as np

from jaxlab.core.errors import DataFormatError

__all__ = [
    "CIFAR10_TEST_FILES",
    "CIFAR10_TRAIN_FILES",
    "load_cifar10",
    "load_cifar10_batch",
    "load_cifar_batch",
    "load_dataset",
]

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)


def _field(d: dict, name: str, path: pathlib.Path):
    """`(value, key)` of entry `name` of a batch dict, under a bytes key (as CIFAR ships
    it) or a str key."""
    for key in (name.encode(), name):
        if key in d:
            return d[key], _key_name(key)
    keys = sorted(_key_name(k) for k in d)[:8]
    raise DataFormatError(f"{path}: CIFAR batch has no '{name}' entry (field {_key_name(name.encode())}; "
                          f"keys: {', '.join(keys)})")


def _key_name(key) -> str:
    """How an error names a dict key: b"labels" for bytes, "labels" for str."""
    if isinstance(key, bytes):
        return 'b"' + key.decode("latin1") + '"'
    return f'"{key}"' if isinstance(key, str) else repr(key)


def _short(v, width: int = 40) -> str:
    r = repr(v)
    return r if len(r) <= width else r[: width - 3] + "..."


def _labels(value, field: str, path: pathlib.Path, num_classes: int) -> np.ndarray:
    """A list (or 1-D integer array) of class ids in [0, num_classes) as int32 [N];
    anything else (floats, even whole ones, bools, strings, None, nested lists) raises."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise DataFormatError(f"{path}: field {field}: expected a list of N integers, got an array of shape "
                                  f"{list(value.shape)}")
        items = value.tolist() if value.dtype.kind not in "iu" else None
        arr = value if items is None else None
    elif isinstance(value, (list, tuple)):
        items, arr = value, None
    else:
        raise DataFormatError(f"{path}: field {field}: expected a list of integers, got {type(value).__name__}")
    if arr is None:
        i = next((i for i, v in enumerate(items)
                  if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_))), None)
        if i is not None:
            raise DataFormatError(f"{path}: field {field}: expected integers in [0, {num_classes}), "
                                  f"got {_short(items[i])} ({type(items[i]).__name__}) at index {i}")
        bad = next((i for i, v in enumerate(items) if not 0 <= v < num_classes), None)
        if bad is not None:
            raise DataFormatError(f"{path}: field {field}: expected integers in [0, {num_classes}), "
                                  f"got {_short(items[bad])} at index {bad}")
        return np.asarray(items, np.int32)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFormatError(f"{path}: field {field}: expected integers in [0, {num_classes}), "
                              f"got {arr[i]} at index {i}")
    return arr.astype(np.int32)


def load_cifar_batch(path: str | pathlib.Path, label_field: str = "labels",
                     num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch file as `(uint8 [N, 32, 32, 3], int32 [N])`.

    CIFAR-10 batches hold `b"labels"` (`num_classes=10`); CIFAR-100's `train` / `test`
    hold `b"fine_labels"` (100 classes) and `b"coarse_labels"` (20). Checked: the pickle
    is a dict, `b"data"` a uint8 `[N, 3072]` array, the labels N integers in
    `[0, num_classes)`. Raises `DataFormatError` naming the file and the field.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR batch file {path} does not exist")
    raw = path.read_bytes()  # unpickled from memory: a corrupt length cannot outgrow the file
    try:
        d = pickle.loads(raw, encoding="bytes")
    except Exception as e:  # anything a corrupt pickle raises
        raise DataFormatError(f"{path}: not a CIFAR python batch (cannot unpickle: {type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise DataFormatError(f"{path}: CIFAR batch must be a pickled dict, got {type(d).__name__}")
    data, data_key = _field(d, "data", path)
    value, label_key = _field(d, label_field, path)
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != 3072):
        got = (f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__)
        raise DataFormatError(f"{path}: field {data_key}: expected a uint8 [N, 3072] array "
                              f"(32x32 pixels, red then green then blue planes), got {got}")
    labels = _labels(value, label_key, path, num_classes)
    if labels.shape[0] != data.shape[0]:
        raise DataFormatError(f"{path}: field {label_key}: expected {data.shape[0]} labels "
                              f"(one a row of {data_key}), got {labels.shape[0]}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def load_cifar10_batch(path: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch file as `(uint8 [N, 32, 32, 3], int32 [N])` (see
    `load_cifar_batch`)."""
    return load_cifar_batch(path, "labels", 10)


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
    if cfg.dataset == "synthetic32":
        from jaxlab.data.synthetic import make_images

        n = cfg.synthetic_train_size
        xtr, ytr = make_images(n, resolution=32, seed=cfg.split_seed)
        xte, yte = make_images(cfg.synthetic_test_size, resolution=32, seed=cfg.split_seed, start=n)
    elif cfg.dataset == "digits":
        from jaxlab.data.digits import load_digits

        xtr, ytr = load_digits("train", seed=cfg.split_seed)
        xte, yte = load_digits("test", seed=cfg.split_seed)
    elif cfg.dataset == "cifar10":
        xtr, ytr = load_cifar10(cfg.cifar_dir, "train")
        xte, yte = load_cifar10(cfg.cifar_dir, "test")
    else:
        raise ValueError(f"config field 'data.dataset' must be 'digits', 'synthetic32' or 'cifar10', "
                         f"got {cfg.dataset!r}")
    if cfg.num_eval:
        xte, yte = xte[: cfg.num_eval], yte[: cfg.num_eval]
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte, "num_classes": 10}
