"""Grain input pipelines with random access by step.

`batches(source, batch_size, seed)` returns a Grain `MapDataset` that is shuffled (a new
permutation every epoch, a pure function of `seed`), repeated, batched and sharded by
process. Indexing it by step number gives that step's batch, so the training loop's
`batch_fn(step)` is `lambda s: ds[s]`: deterministic, and identical after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["ArraySource", "batches", "batch_fn"]


class ArraySource:
    """A random-access source over equal-length arrays: `source[i] == {k: a[i]}`."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"ArraySource arrays must have equal lengths, got {lengths}")
        self._arrays = dict(arrays)
        self._len = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self._arrays.items()}


def batches(
    source: Any,
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    repeat: bool = True,
    drop_remainder: bool = True,
    transform: Callable[[dict], dict] | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
):
    """A Grain `MapDataset` of batches from a random-access `source`.

    Args:
      source: anything with `__len__` and `__getitem__` (a TFDS `as_data_source()`
        split, an `ArraySource`, ...).
      batch_size: global batch size; each process gets `batch_size / process_count`.
      seed: shuffle seed.
      shuffle, repeat, drop_remainder: as named.
      transform: per-example function applied before batching.
      process_index, process_count: default to `jax.process_index()/process_count()`;
        each process reads a disjoint shard of the records.
    """
    import grain

    if process_index is None or process_count is None:
        import jax

        process_index, process_count = jax.process_index(), jax.process_count()
    if batch_size % process_count:
        raise ValueError(f"batch_size {batch_size} is not divisible by {process_count} processes")
    ds = grain.MapDataset.source(source)
    if process_count > 1:
        ds = ds[process_index::process_count]
    if shuffle:
        ds = ds.seed(seed).shuffle()
    if repeat:
        ds = ds.repeat(None)
    if transform is not None:
        ds = ds.map(transform)
    return ds.batch(batch_size // process_count, drop_remainder=drop_remainder)


def batch_fn(dataset) -> Callable[[int], Any]:
    """`step -> batch` for `jaxlab.core.train.fit` from a repeated batched dataset."""
    return lambda step: dataset[int(step)]
