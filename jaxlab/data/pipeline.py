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

    Element `s` is step `s`'s batch. With P processes, process p's element `s` holds rows
    `[p*B/P, (p+1)*B/P)` of the global batch `s` that one process would read, and only
    those records are read: the global batches, and so the training, do not depend on
    the number of processes.

    Args:
      source: anything with `__len__` and `__getitem__` (a TFDS `as_data_source()`
        split, an `ArraySource`, ...).
      batch_size: global batch size B; each process gets `B / process_count` rows.
      seed: shuffle seed (the same on every process).
      shuffle, repeat, drop_remainder: as named (without `repeat`, a run of several
        processes keeps whole global batches only, so every process gets as many).
      transform: per-example function applied before batching.
      process_index, process_count: default to `jax.process_index()/process_count()`.
    """
    import grain

    if process_index is None or process_count is None:
        import jax

        process_index, process_count = jax.process_index(), jax.process_count()
    if batch_size % process_count:
        raise ValueError(f"batch_size {batch_size} is not divisible by {process_count} processes")
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.seed(seed).shuffle()
    if repeat:
        ds = ds.repeat(None)
    if transform is not None:
        ds = ds.map(transform)
    if process_count == 1:
        return ds.batch(batch_size, drop_remainder=drop_remainder)
    # Global batch s is made of the per-process batches s*P, ..., s*P + P - 1.
    ds = ds.batch(batch_size // process_count, drop_remainder=drop_remainder or not repeat)
    if not repeat:
        ds = ds[: len(ds) // process_count * process_count]
    return ds[process_index::process_count]


def batch_fn(dataset) -> Callable[[int], Any]:
    """`step -> batch` for `jaxlab.core.train.fit` from a repeated batched dataset."""
    return lambda step: dataset[int(step)]
