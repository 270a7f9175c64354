"""Atomic, resumable checkpoints on top of orbax's `CheckpointManager`.

A checkpoint holds a pytree (usually `TrainState` fields as a state dict). Orbax writes
each step into a temporary directory and renames it when complete, so a killed process
never leaves a half-written step that looks finished. On open, such leftovers are
reported with a warning and ignored; a finished step that fails to restore raises
`CheckpointError` naming its directory.
"""

from __future__ import annotations

import logging
import pathlib
import re
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["CheckpointError", "CheckpointManager", "abstract_like"]

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint directory exists but cannot be read back."""


def abstract_like(tree: Any) -> Any:
    """`jax.ShapeDtypeStruct`s (with shardings where known) for every leaf of `tree`."""

    def one(x):
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        x = np.asarray(x)
        return jax.ShapeDtypeStruct(x.shape, x.dtype)

    return jax.tree.map(one, tree)


class CheckpointManager:
    """Saves and restores pytrees by step under `directory`.

    Args:
      directory: where steps are written (created if missing).
      max_to_keep: how many finished steps to keep (older ones are deleted).
      async_save: write in a background thread (call `wait()` before exiting).
    """

    def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 3, async_save: bool = False):
        self.directory = pathlib.Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._warn_unfinished()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            enable_async_checkpointing=async_save,
        )
        try:
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"cannot open checkpoint directory {self.directory}: {e}") from e

    def _warn_unfinished(self) -> None:
        for p in sorted(self.directory.iterdir()):
            if p.is_dir() and not re.fullmatch(r"\d+", p.name):
                m = re.match(r"(\d+)", p.name)
                if m and "tmp" in p.name:
                    warnings.warn(
                        f"skipping unfinished checkpoint {p} (a save was interrupted); "
                        "resuming from the last finished step", RuntimeWarning, stacklevel=3)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, tree: Any, *, force: bool = True) -> bool:
        """Saves `tree` as step `step`; returns whether a save happened."""
        return self._manager.save(int(step), args=ocp.args.StandardSave(tree), force=force)

    def restore(self, step: int | None, target: Any) -> Any:
        """Restores step `step` (latest if None) into the structure of `target`.

        `target` may hold arrays or `jax.ShapeDtypeStruct`s; restored leaves take its
        shapes, dtypes and shardings.
        """
        if step is None:
            step = self.latest_step()
            if step is None:
                raise CheckpointError(f"no finished checkpoint in {self.directory}")
        abstract = abstract_like(target)
        try:
            return self._manager.restore(int(step), args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # noqa: BLE001 - name the directory whatever orbax raised
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory / str(step)} is finished but cannot be "
                f"restored into the expected structure ({type(e).__name__}: {str(e)[:500]}). "
                "It may be corrupt or belong to a different config; use a new --workdir or --force."
            ) from e

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
