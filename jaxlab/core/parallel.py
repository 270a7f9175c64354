"""Meshes and data-parallel shardings.

jaxlab's training steps are `jax.jit`-compiled with `NamedSharding`s over a 1-D mesh whose
axis is called `data`: parameters and optimizer state are replicated, batches are split
along their leading axis, and XLA inserts the gradient all-reduce. The same code runs on
one device, on 8 fake CPU devices (tests), on a GPU host or across TPU hosts (after
`jax.distributed.initialize()`).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "DATA",
    "make_mesh",
    "data_sharding",
    "replicated",
    "shard_batch",
    "replicate",
    "host_info",
    "check_batch_divisible",
]

DATA = "data"


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh over the first `num_devices` devices (all by default), axis `data`.

    The axis type is `Auto`: shardings are propagated by the compiler, which is what a
    plain data-parallel step wants.
    """
    devices = jax.devices()
    n = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices={n} but {len(devices)} devices are available")
    return jax.make_mesh((n,), (DATA,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:n])


def data_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading axis split over `data`, the rest replicated."""
    return NamedSharding(mesh, P(DATA))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_divisible(batch_size: int, mesh: jax.sharding.Mesh) -> None:
    from jaxlab.core.config import ConfigError

    n = mesh.shape[DATA]
    if batch_size % n:
        raise ConfigError(
            f"batch size {batch_size} is not divisible by the {n} devices of the mesh; "
            f"choose a multiple of {n}")


def shard_batch(batch: Any, mesh: jax.sharding.Mesh) -> Any:
    """Places every array of `batch` with its leading axis split across `data`."""
    sharding = data_sharding(mesh)

    def put(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim == 0:
            return jax.device_put(x, replicated(mesh))
        check_batch_divisible(x.shape[0], mesh)
        return jax.device_put(x, sharding)

    return jax.tree.map(put, batch)


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    """Places every leaf of `tree` on all devices of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def host_info() -> dict:
    return {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "devices": jax.device_count(),
    }
