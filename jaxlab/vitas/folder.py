"""ImageNet-style class folders read through a TFDS builder (stored as array_record).

Layout (the only one accepted)::

    root/train/<class>/<image>.{JPEG,jpg,png}     classes = sorted names of train/'s folders
    root/val/<class>/<image>.{JPEG,jpg,png}       every class must also be a train class

Each image is decoded with Pillow, converted to RGB, resized (bicubic) so that its shorter side
is `image_size`, centre-cropped to `image_size x image_size` and stored as uint8 `[S, S, 3]`
with its class index. The prepared dataset lives under `$JAXLAB_DATA_DIR` (default
`~/.cache/jaxlab/tfds`) in a folder named by a hash of the file list (paths, sizes, mtimes)
and the image size, so a changed folder is prepared again. TFDS writes into a temporary
folder and renames it when complete: a failed preparation leaves no finished dataset.

`load_split` reads a split into memory; `SplitImages` is a read-only array-like view of a split
(`len`, `shape`, `x[rows]` and `x[i:j]` read and decode only those records from the array_record
files), for folders too large to hold decoded: ImageNet's 1.28M training images at 224 px are
770 GB as float32. Its labels are read once and cached beside the prepared dataset.

Errors (`DataFormatError`, naming the path and what was expected): a missing root or split
folder, no class folders, a class folder without images, a file that is not `.JPEG/.jpg/.png`,
an image Pillow cannot decode, a val class absent from train.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import sys
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from jaxlab.core.errors import DataFormatError

__all__ = ["IMAGE_SUFFIXES", "FolderConfig", "VitasClassFolder", "scan", "read_image", "build", "load_split",
           "SplitImages", "split_labels"]

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
SPLITS = ("train", "val")


def scan(root: str | pathlib.Path) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """`(classes, {split: [(path, label), ...]})` of a class-folder root, checked (see module doc)."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: no such folder; expected a class-folder root holding train/ and val/")
    for split in SPLITS:
        if not (root / split).is_dir():
            raise DataFormatError(f"{root / split}: missing; expected {root}/{split}/<class>/<image>.JPEG")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataFormatError(f"{root / 'train'}: no class folders; expected train/<class>/<image>.JPEG")
    index = {c: i for i, c in enumerate(classes)}
    files = {}
    for split in SPLITS:
        rows = []
        for cdir in sorted(p for p in (root / split).iterdir() if not p.name.startswith(".")):
            if not cdir.is_dir():
                raise DataFormatError(f"{cdir}: a file where a class folder was expected ({split}/<class>/<image>)")
            if cdir.name not in index:
                raise DataFormatError(f"{cdir}: class {cdir.name!r} has no folder in {root / 'train'}")
            images = sorted(p for p in cdir.iterdir() if not p.name.startswith("."))
            for p in images:
                if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
                    raise DataFormatError(f"{p}: not an image file; expected a .JPEG, .jpg or .png file")
            if not images:
                raise DataFormatError(f"{cdir}: class folder holds no images; expected .JPEG, .jpg or .png files")
            rows += [(str(p), index[cdir.name]) for p in images]
        if not rows:
            raise DataFormatError(f"{root / split}: no class folders; expected {split}/<class>/<image>.JPEG")
        files[split] = rows
    return classes, files


def read_image(path: str | pathlib.Path, size: int) -> np.ndarray:
    """uint8 `[size, size, 3]`: RGB, shorter side resized to `size` (bicubic), centre crop."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.Resampling.BICUBIC)
            left, top = (nw - size) // 2, (nh - size) // 2
            return np.asarray(im.crop((left, top, left + size, top + size)), np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataFormatError(f"{path}: not a readable JPEG/PNG image ({e})") from None


def _fingerprint(files: dict, size: int) -> str:
    h = hashlib.sha256(str(size).encode())
    for split in SPLITS:
        for path, label in files[split]:
            st = pathlib.Path(path).stat()
            h.update(f"{split}|{path}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
    """Image side, class names and the checked file list of one class folder."""

    image_size: int = 16
    classes: tuple = ()
    files: dict = dataclasses.field(default_factory=dict)


class VitasClassFolder(tfds.core.GeneratorBasedBuilder):
    """An ImageNet-style class folder (see the module docstring), uint8 RGB."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release."}

    def _info(self) -> tfds.core.DatasetInfo:
        c = self.builder_config
        return self.dataset_info_from_configs(
            description="ImageNet-style class folder, resized and centre-cropped.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(c.image_size, c.image_size, 3), dtype=np.uint8),
                "label": tfds.features.ClassLabel(names=list(c.classes)),
            }),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local
        return {s: self._generate_examples(s) for s in SPLITS}

    def _generate_examples(self, split):
        c = self.builder_config
        for i, (path, label) in enumerate(c.files[split]):
            yield i, {"image": read_image(path, c.image_size), "label": label}


def build(root: str | pathlib.Path, image_size: int, data_dir: str | pathlib.Path | None = None):
    """Prepares (once per folder content and size) and returns the TFDS builder of `root`."""
    from jaxlab.data import builders

    classes, files = scan(root)
    config = FolderConfig(name=f"s{image_size}_{_fingerprint(files, image_size)}", image_size=image_size,
                        classes=tuple(classes), files=files)
    data_dir = pathlib.Path(data_dir or builders.default_data_dir())
    with builders._quiet_tfds():
        builder = VitasClassFolder(data_dir=str(data_dir), config=config, file_format="array_record")
        if not builder.is_prepared():
            print(f"jaxlab: preparing class folder {root} once ({sum(len(v) for v in files.values())} images); "
                  f"cached in {builder.data_dir}", file=sys.stderr, flush=True)
            builder.download_and_prepare()
    return builder


def load_split(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """`(images float32 [N, S, S, 3] in [0, 1], labels int32 [N])` of a prepared split."""
    src = builder.as_data_source()[split]
    n = len(src)
    s = builder.builder_config.image_size
    x = np.empty((n, s, s, 3), np.uint8)
    y = np.empty(n, np.int32)
    for i in range(n):
        ex = src[i]
        x[i], y[i] = ex["image"], ex["label"]
    return x.astype(np.float32) / 255.0, y


def split_labels(builder, split: str) -> np.ndarray:
    """int32 `[N]` labels of a prepared split, read once and cached as `labels_<split>.npy` in the
    prepared dataset's folder."""
    cache = pathlib.Path(builder.data_dir) / f"labels_{split}.npy"
    if cache.exists():
        return np.load(cache)
    src = builder.as_data_source()[split]
    y = np.fromiter((src[i]["label"] for i in range(len(src))), np.int32, count=len(src))
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, y)
    tmp.replace(cache)  # never a half-written cache
    return y


class SplitImages:
    """Read-only array-like view of the images of a prepared split, optionally a subset `rows`:
    `len(v)`, `v.shape`, and `v[idx]` (an int array, a slice or an int) read and decode only the
    requested records, float32 `[k, S, S, 3]` in [0, 1], the values of `load_split`."""

    def __init__(self, builder, split: str, rows: np.ndarray | None = None):
        self._src = builder.as_data_source()[split]
        self._rows = np.arange(len(self._src)) if rows is None else np.asarray(rows, np.int64)
        s = builder.builder_config.image_size
        self.shape = (len(self._rows), s, s, 3)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, idx) -> np.ndarray:
        keys = self._rows[idx]
        if np.ndim(keys) == 0:
            return np.asarray(self._src[int(keys)]["image"], np.float32) / 255.0
        out = np.empty((len(keys),) + self.shape[1:], np.float32)
        for j, k in enumerate(keys.tolist()):
            out[j] = self._src[k]["image"]
        return out / 255.0
