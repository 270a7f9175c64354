"""CoditT5's encoded training pairs as a TFDS dataset (array_record), keyed by a fingerprint.

Each training stage (`pretrain`, `finetune-plan`, `finetune-plain`) reads its (source ids, target
ids) pairs through `stage_pairs`, which prepares them once with the `CoditExamples` builder and
then reads them with `as_data_source()` (no TensorFlow: the features are variable-length int32
`Tensor`s, `src [S]` and `labels [T]`, in generation order, `disable_shuffling=True`)::

    sources = stage_pairs(config, "pretrain", tok, lambda split: training.pretrain_pairs(...))
    sources["train"][i] == (src ids, label ids)          # int32 arrays, as in memory

The dataset lives under `data_dir` (default `$JAXLAB_DATA_DIR`, else `~/.cache/jaxlab/tfds`) in
`codit_examples/<stage>_<fingerprint>/`. The fingerprint hashes everything the pairs depend on:
the config fields of `FINGERPRINT_FIELDS`, the tokenizer's digest (its vocabulary), the size and
modification time of the user files named by `corpus_path` and `task_path`, the interpreter's
version and standard-library path (the embedded corpus), and the source of the modules that build
and encode the pairs; so a changed setting is prepared again instead of read stale, and settings
that do not touch the data (learning rates, beam width, ...) share one copy.

Why no Grain: `data.Buckets` draws each step's batch as a pure function of (seed, step) (a length
bucket, then indices with replacement inside it) and reads those records by random access; a Grain
`MapDataset` over the same source would only wrap `source[i]` (its shuffle and batch transforms
do not express length-bucketed sampling) and `core.train.fit` already prefetches `batch_fn` on a
host thread. The data source is used directly.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import itertools
import json
import pathlib
import sys
import sysconfig
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

__all__ = ["CoditExamples", "ExamplesConfig", "PairSource", "fingerprint", "stage_pairs", "FINGERPRINT_FIELDS",
           "STAGES", "SPLITS"]

STAGES = ("pretrain", "finetune-plan", "finetune-plain")
SPLITS = ("train", "valid")
#: config fields that determine a stage's pairs (with the tokenizer and the files they name)
FINGERPRINT_FIELDS = {
    "pretrain": ("seed", "corpus", "corpus_path", "max_files", "max_code_tokens", "max_examples",
                 "pretrain_objective", "quirk_len1_delete"),
    "finetune": ("seed", "corpus", "corpus_path", "max_files", "max_code_tokens", "max_examples", "task",
                 "task_path"),
}


@dataclasses.dataclass
class ExamplesConfig(tfds.core.BuilderConfig):
    """One stage's pairs; `make(split) -> [(src ids, label ids), ...]` is called only when preparing."""

    stage: str = "pretrain"
    make: Callable[[str], Sequence[tuple[Sequence[int], Sequence[int]]]] | None = None


class CoditExamples(tfds.core.GeneratorBasedBuilder):
    """Encoded CoditT5 training pairs (train and valid splits) of one stage and fingerprint."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="CoditT5 (source ids, target ids) pairs; ids of the run's tokenizer.",
            features=tfds.features.FeaturesDict({
                "src": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                "labels": tfds.features.Tensor(shape=(None,), dtype=np.int32),
            }),
            disable_shuffling=True)

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local
        make = self.builder_config.make
        if make is None:
            raise RuntimeError(f"{self.data_dir}: not prepared, and no example maker was given")
        out = {}
        for split in SPLITS:  # TFDS refuses empty splits: an empty one is left out (read back as [])
            pairs = iter(make(split))
            first = next(pairs, None)
            if first is not None:
                out[split] = self._generate_examples(itertools.chain([first], pairs))
        return out

    def _generate_examples(self, pairs):
        for i, (src, labels) in enumerate(pairs):
            yield i, {"src": np.asarray(src, np.int32), "labels": np.asarray(labels, np.int32)}


class PairSource:
    """Random access to a prepared split as `(src, labels)` int32 array pairs (`source[i]`, slices,
    iteration in chunks)."""

    def __init__(self, source, chunk: int = 1024):
        self.source, self.chunk = source, chunk

    def __len__(self) -> int:
        return len(self.source)

    def _pairs(self, indices: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        recs = self.source.__getitems__(list(indices)) if indices else []
        return [(r["src"], r["labels"]) for r in recs]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._pairs(range(len(self))[i])
        r = self.source[int(i)]
        return r["src"], r["labels"]

    def __iter__(self):
        for lo in range(0, len(self), self.chunk):
            yield from self._pairs(range(lo, min(lo + self.chunk, len(self))))


def _file_stats(path: str) -> list:
    out = []
    for p in sorted(pathlib.Path(path).parent.glob(glob.escape(pathlib.Path(path).name) + "*")) if path else []:
        st = p.stat()
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out


def _code_digest() -> str:
    from jaxlab.coditt5 import corruption, data, editplan, tokenizer, training

    h = hashlib.sha256()
    for mod in (corruption, data, editplan, tokenizer, training):
        h.update(pathlib.Path(mod.__file__).read_bytes())
    return h.hexdigest()


def fingerprint(config, stage: str, tok) -> str:
    """A 16-hex-digit hash of everything `stage`'s pairs depend on (see the module docstring)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    fields = FINGERPRINT_FIELDS["pretrain" if stage == "pretrain" else "finetune"]
    key = {"stage": stage, "version": str(CoditExamples.VERSION), "tokenizer": [tok.kind, tok.digest()],
           "config": {f: getattr(config, f) for f in fields},
           "files": {"corpus": _file_stats(config.corpus_path),
                     "task": _file_stats(config.task_path) if stage != "pretrain" else []},
           "python": [sys.version, sysconfig.get_paths()["stdlib"]], "code": _code_digest()}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_pairs(config, stage: str, tok, make: Callable[[str], Sequence], data_dir: str | pathlib.Path | None = None,
                ) -> dict[str, PairSource | list]:
    """`{"train", "valid"}` -> `PairSource` of `stage`'s pairs (`[]` for a split without pairs), prepared
    with `make(split)` the first time their fingerprint is seen and read from `data_dir` afterwards."""
    from jaxlab.data import builders

    name = f"{stage.replace('-', '_')}_{fingerprint(config, stage, tok)}"
    data_dir = pathlib.Path(data_dir or builders.default_data_dir()).expanduser()
    with builders._quiet_tfds():
        builder = CoditExamples(data_dir=str(data_dir), file_format="array_record",
                                config=ExamplesConfig(name=name, stage=stage, make=make))
        if not builder.is_prepared():
            print(f"jaxlab: preparing coditt5 {stage} pairs once; cached in {builder.data_dir}",
                  file=sys.stderr, flush=True)
            builder.download_and_prepare()
        sources = builder.as_data_source()
    return {s: PairSource(sources[s]) if s in sources else [] for s in SPLITS}
