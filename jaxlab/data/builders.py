"""TFDS builders for jaxlab's local datasets, stored as array_record.

Both builders generate their examples locally (nothing is downloaded), store uint8
`Tensor` features (not `tfds.features.Image`, which needs TensorFlow) and are read with
`as_data_source()`, which gives random-access sources that Grain consumes directly:

    builder = build("jaxlab_digits")
    source = builder.as_data_source()["train"]     # source[i] == {"image": ..., "label": ...}

Importing this module imports `tensorflow_datasets`; the rest of jaxlab does not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import pathlib
import sys
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from jaxlab.data import digits as digits_lib
from jaxlab.data import synthetic

__all__ = ["JaxlabDigits", "JaxlabSynthetic", "SyntheticConfig", "build", "default_data_dir"]


def default_data_dir() -> pathlib.Path:
    """Where prepared datasets are cached: `$JAXLAB_DATA_DIR`, else `~/.cache/jaxlab/tfds`."""
    env = os.environ.get("JAXLAB_DATA_DIR")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "jaxlab" / "tfds"


class JaxlabDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 digits, stratified 75/25 train/test split (seed 0)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Handwritten digits bundled with scikit-learn, as uint8 [8, 8, 1] in 0..16.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=digits_lib.NUM_CLASSES),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local
        return {"train": self._generate_examples("train"), "test": self._generate_examples("test")}

    def _generate_examples(self, split):
        xtr, ytr, xte, yte = digits_lib.digits_arrays(0, 0.25)
        x, y = (xtr, ytr) if split == "train" else (xte, yte)
        for i in range(len(y)):
            yield i, {"image": x[i], "label": int(y[i])}


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
    """Resolution, classes and size of a procedural image dataset."""

    resolution: int = 32
    num_classes: int = 10
    num_textures: int = 2
    train_size: int = 5000
    test_size: int = 1000
    seed: int = 0


class JaxlabSynthetic(tfds.core.GeneratorBasedBuilder):
    """Procedural shapes x textures (see `jaxlab.data.synthetic`), uint8 RGB."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release."}
    BUILDER_CONFIGS: ClassVar[list[SyntheticConfig]] = [
        SyntheticConfig(name=f"r{r}", description=f"{r}x{r} pixels", resolution=r)
        for r in (16, 24, 32, 48, 64)
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        r = self.builder_config.resolution
        return self.dataset_info_from_configs(
            description="Procedural images whose fine-texture classes need resolution.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(r, r, 3), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=self.builder_config.num_classes),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        c = self.builder_config
        return {
            "train": self._generate_examples(0, c.train_size),
            "test": self._generate_examples(c.train_size, c.test_size),
        }

    def _generate_examples(self, start: int, size: int):
        c = self.builder_config
        for lo in range(0, size, 512):
            n = min(512, size - lo)
            x, y = synthetic.make_images(n, resolution=c.resolution, num_classes=c.num_classes,
                                         num_textures=c.num_textures, seed=c.seed, start=start + lo)
            x = np.round(x * 255).astype(np.uint8)
            for i in range(n):
                yield start + lo + i, {"image": x[i], "label": int(y[i])}


_BUILDERS = {"jaxlab_digits": JaxlabDigits, "jaxlab_synthetic": JaxlabSynthetic}


def build(name: str, data_dir: str | pathlib.Path | None = None, config: str | SyntheticConfig | None = None):
    """Prepares (once) and returns the builder `name`, stored as array_record.

    The first call generates the examples and writes them under `data_dir` (default
    `default_data_dir()`), saying so in one line on stderr; TFDS's own messages (which
    speak of a download although nothing is downloaded) and progress bars are silenced.
    Later calls find the prepared files and print nothing.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(_BUILDERS)}")
    kwargs = {"data_dir": str(data_dir or default_data_dir()), "file_format": "array_record"}
    if config is not None:
        kwargs["config"] = config
    with _quiet_tfds():
        builder = _BUILDERS[name](**kwargs)
        if not builder.is_prepared():
            print(f"jaxlab: preparing dataset {builder.name} once, from local data; cached in "
                  f"{builder.data_dir} (set $JAXLAB_DATA_DIR to move the cache)", file=sys.stderr, flush=True)
            builder.download_and_prepare()
    return builder


@contextlib.contextmanager
def _quiet_tfds():
    """Silences TFDS while it prepares a local dataset: its progress bars (through
    `tfds.display_progress_bar`), its absl warnings, and the "Downloading and preparing
    ... Unknown size" / "downloaded and prepared" lines it prints to stdout; all restored
    afterwards. Errors still propagate."""
    from tensorflow_datasets.core.utils import tqdm_utils

    was_active = getattr(tqdm_utils, "_active", True)
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    tfds.display_progress_bar(False)
    absl_logger.setLevel(logging.ERROR)  # e.g. "Variant folder ... has no dataset_info.json" mid-preparation
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.display_progress_bar(was_active)
        absl_logger.setLevel(level)
