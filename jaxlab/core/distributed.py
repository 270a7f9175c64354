"""Several processes, one run: JAX's multi-controller runtime and who writes what.

Every process runs the same command (`jaxlab <method> <action> --distributed ...`);
`initialize` connects them through JAX's coordination service, after which
`jax.devices()` lists the devices of all processes and the engine's mesh spans them:

    process p of P        feeds rows [p*B/P, (p+1)*B/P) of every global batch of size B
                          (`parallel.shard_batch` assembles the global array;
                          `data.pipeline.batches` reads only those records)
    parameters            replicated over the global mesh, updated by the same jitted step
    checkpoints           written and restored collectively by orbax (each process writes
                          its own metadata inside a step; the SHA-256 manifest is process 0's)
    config.json, metrics.jsonl, segments.jsonl, summary.json, figures, evaluation.json
                          written by process 0 only (`is_primary`); the others wait at a
                          barrier (`sync`) where they would read them
    progress bars, stdout process 0 only

On one machine, N processes are started by hand with `--coordinator localhost:PORT
--num-processes N --process-id i` (CPU collectives go through gloo, JAX's default); on a
cluster, `--distributed` alone lets `jax.distributed.initialize` detect SLURM, Open MPI,
Cloud TPU or Kubernetes settings. XLA aborts the whole process when a peer or the
coordinator cannot be reached, so `initialize` runs a watchdog that fails first with an
error naming the address.
"""

from __future__ import annotations

import os
import sys
import threading

import jax

from jaxlab.core.errors import JaxlabError

__all__ = ["DistributedError", "initialize", "is_primary", "sync"]


class DistributedError(JaxlabError, RuntimeError):
    """The processes of a multi-process run could not be connected."""


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """A barrier over all processes (a no-op in a single-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout_s: float = 120.0) -> None:
    """Connects this process to the others of the run.

    Args:
      coordinator: `host:port` of process 0's coordination service; None lets JAX read
        `JAX_COORDINATOR_ADDRESS` or detect a cluster (SLURM, Open MPI, Cloud TPU, ...).
      num_processes, process_id: this run's process count and this process's index.
      timeout_s: how long to wait for every process to join.

    Raises:
      DistributedError: incomplete settings with no cluster to detect them from. When a
        peer or the coordinator does not answer within `timeout_s`, the process prints
        `jaxlab: error: ...` naming the address and exits with status 2: XLA would
        otherwise abort it with a C++ stack trace (or never return).
    """
    if (num_processes is None) != (process_id is None):
        raise DistributedError("--num-processes and --process-id go together")
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise DistributedError(f"--process-id {process_id} is not in [0, {num_processes})")
    address = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or "the detected coordinator"
    role = (f"process {process_id} of {num_processes}" if num_processes is not None else "this process")

    def give_up() -> None:
        print(f"jaxlab: error: {role} could not connect the run's processes through the coordinator at "
              f"{address} within {timeout_s:g} s (is every process started, with the same --coordinator "
              "and --num-processes, and is the port reachable?)", file=sys.stderr, flush=True)
        os._exit(2)

    watchdog = threading.Timer(timeout_s, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=int(timeout_s) + 30)
    except (ValueError, RuntimeError) as e:
        raise DistributedError(
            f"--distributed: {e} Give --coordinator HOST:PORT, --num-processes and --process-id, "
            "or run under a cluster JAX detects (SLURM, Open MPI, Cloud TPU)") from None
    finally:
        watchdog.cancel()
