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
    plain data-parallel step wants. In a multi-process run the mesh spans the devices
    of every process, so `num_devices` must be None (or all of them).
    """
    devices = jax.devices()
    n = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices={n} but {len(devices)} devices are available")
    if jax.process_count() > 1 and n != len(devices):
        from jaxlab.core.config import ConfigError

        raise ConfigError(
            f"loop.num_devices={n}: a run of {jax.process_count()} processes trains on all "
            f"{len(devices)} devices of its processes; set --config.loop.num_devices=0")
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
    """Places every array of `batch` with its leading axis split across `data`.

    In a run of P processes, `batch` is this process's part of the global batch (rows
    `[p*B/P, (p+1)*B/P)`, as `jaxlab.data.pipeline.batches` yields them) and the result is
    the global array of B rows; scalars are taken as equal on every process.
    """
    sharding = data_sharding(mesh)
    processes = jax.process_count()

    def put(x):
        if processes == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
            x = np.asarray(x) if not isinstance(x, jax.Array) else x
            if x.ndim == 0:
                return jax.device_put(x, replicated(mesh))
            check_batch_divisible(x.shape[0], mesh)
            return jax.device_put(x, sharding)
        x = np.asarray(x)
        if x.ndim == 0:
            return jax.make_array_from_process_local_data(replicated(mesh), x, x.shape)
        check_batch_divisible(x.shape[0] * processes, mesh)
        return jax.make_array_from_process_local_data(sharding, x, (x.shape[0] * processes, *x.shape[1:]))

    return jax.tree.map(put, batch)


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    """Places every leaf of `tree` on all devices of the mesh.

    In a multi-process run, leaves held by this process alone (an initial state, a
    restored checkpoint) go through host memory: every process holds the same values,
    and XLA:CPU has no cross-host device transfers.
    """
    sharding = replicated(mesh)
    if jax.process_count() > 1:
        def put(x):
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                return jax.device_put(x, sharding)
            if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                data = jax.device_put(np.asarray(jax.random.key_data(x)), sharding)
                return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
            return jax.device_put(np.asarray(x), sharding)

        return jax.tree.map(put, tree)
    return jax.device_put(tree, sharding)


def host_info() -> dict:
    return {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "devices": jax.device_count(),
    }
