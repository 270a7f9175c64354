"""Atomic, verified, resumable checkpoints on top of orbax's `CheckpointManager`.

A checkpoint holds a pytree (a train state as a state dict). Orbax writes each step into
a temporary directory and renames it when complete, so a killed process never leaves a
half-written step that looks finished; such leftovers are reported with a warning and
ignored. Deleting a step is made just as atomic: orbax renames it into `<directory>/.deleted/`
(one `rename`), and jaxlab empties that folder afterwards, so a kill in the middle of a
deletion never leaves a step directory that lists as finished but holds half its files.

Integrity: once orbax has finalised a step, `save` writes `<step>/jaxlab_manifest.json`
with the SHA-256 and size of every file of the step (and a small `meta` dict, e.g. the
training time so far). `restore` recomputes them first and raises `CorruptCheckpointError`
naming the step and the first bad file, so flipped or truncated bytes are never restored
silently. `restore_newest_intact` walks back from the latest step to the newest one that
verifies and restores, warning about each bad step (training moves those aside into
`<workdir>/corrupt-checkpoints/`, never deleting them).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxlab.core.errors import JaxlabError

__all__ = [
    "CheckpointError",
    "CorruptCheckpointError",
    "CheckpointManager",
    "abstract_like",
    "MANIFEST",
]

log = logging.getLogger(__name__)

MANIFEST = "jaxlab_manifest.json"
TRASH = ".deleted"
_CHUNK = 1 << 20
# What orbax leaves in every finished step of a single default item: the step's commit
# marker and the item's metadata. A finished step that lacks one was cut short by
# something other than a save (an older jaxlab's non-atomic delete, a user's `rm -r`).
_REQUIRED = ("commit_success.txt", "default/_METADATA")


class CheckpointError(JaxlabError, RuntimeError):
    """A checkpoint directory exists but cannot be read back."""


class CorruptCheckpointError(CheckpointError):
    """A finished checkpoint's files do not match the checksums written when it was saved."""

    def __init__(self, step: int, path: pathlib.Path, why: str):
        self.step, self.path = step, path
        super().__init__(f"checkpoint step {step} in {path} is corrupt: {why}")


def abstract_like(tree: Any) -> Any:
    """`jax.ShapeDtypeStruct`s (with shardings where known) for every leaf of `tree`."""

    def one(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        x = np.asarray(x)
        return jax.ShapeDtypeStruct(x.shape, x.dtype)

    return jax.tree.map(one, tree)


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(step_dir: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(step_dir: pathlib.Path, meta: dict | None = None) -> None:
    """Records size and SHA-256 of every file under a finished step directory."""
    files = {str(p.relative_to(step_dir)): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in _files(step_dir)}
    body = json.dumps({"files": files, "meta": meta or {}}, indent=1, sort_keys=True)
    tmp = step_dir / f".{MANIFEST}.tmp"
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, step_dir / MANIFEST)


def read_manifest(step_dir: pathlib.Path) -> dict | None:
    path = step_dir / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return {"files": None, "error": str(e)}


def verify(step: int, step_dir: pathlib.Path) -> dict:
    """Checks a step against its manifest; returns the manifest's `meta`.

    Raises:
      CorruptCheckpointError: a file orbax writes into every finished step is missing,
        a file of the manifest is missing or has another size or another hash, or the
        manifest itself is unreadable.
    A step without a manifest (saved by an older jaxlab, or killed between orbax's
    commit and the manifest) restores with a warning.
    """
    for rel in _REQUIRED:
        if not (step_dir / rel).is_file():
            raise CorruptCheckpointError(step, step_dir, f"{rel} is missing (the step is incomplete, e.g. a "
                                                         "deletion was interrupted)")
    manifest = read_manifest(step_dir)
    if manifest is None:
        warnings.warn(f"checkpoint step {step} in {step_dir} has no {MANIFEST}; restoring it "
                      "without an integrity check", RuntimeWarning, stacklevel=3)
        return {}
    if manifest.get("files") is None:
        raise CorruptCheckpointError(step, step_dir, f"{MANIFEST} is unreadable ({manifest.get('error')})")
    for rel, want in manifest["files"].items():
        p = step_dir / rel
        if not p.is_file():
            raise CorruptCheckpointError(step, step_dir, f"{rel} is missing")
        size = p.stat().st_size
        if size != want["size"]:
            raise CorruptCheckpointError(step, step_dir, f"{rel} has {size} bytes, {want['size']} were saved")
        if _sha256(p) != want["sha256"]:
            raise CorruptCheckpointError(step, step_dir, f"{rel} does not match its SHA-256 from the save")
    return dict(manifest.get("meta") or {})


class CheckpointManager:
    """Saves, verifies and restores pytrees by step under `directory`.

    Args:
      directory: where steps are written (created if missing).
      max_to_keep: how many finished steps to keep (older ones are deleted).
    """

    def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CheckpointError(f"cannot create checkpoint directory {self.directory}: {e}") from None
        self._warn_unfinished()
        self._empty_trash()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False, todelete_subdir=TRASH)
        try:
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        except Exception as e:
            raise CheckpointError(f"cannot open checkpoint directory {self.directory}: {e}") from e

    def _warn_unfinished(self) -> None:
        """Warns about, and (process 0) removes, the temporary directories of interrupted
        saves: they hold no finished state, and orbax may take a leftover one for the step
        when the resumed run saves that step again."""
        for p in sorted(self.directory.iterdir()):
            if p.is_dir() and not re.fullmatch(r"\d+", p.name) and "tmp" in p.name and re.match(r"\d+", p.name):
                warnings.warn(
                    f"skipping unfinished checkpoint {p} (a save was interrupted); "
                    "resuming from the last finished step", RuntimeWarning, stacklevel=3)
                if jax.process_index() == 0:
                    shutil.rmtree(p, ignore_errors=True)

    def _empty_trash(self) -> None:
        """Removes the steps orbax moved into `TRASH` (they are no longer steps: a kill
        while removing them leaves nothing that looks like a checkpoint)."""
        trash = self.directory / TRASH
        if trash.is_dir() and jax.process_index() == 0:
            shutil.rmtree(trash, ignore_errors=True)

    def step_dir(self, step: int) -> pathlib.Path:
        return self.directory / str(int(step))

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, tree: Any, *, meta: dict | None = None) -> None:
        """Saves `tree` as step `step` (synchronously), then writes its manifest.

        A step of that number left by an earlier, interrupted segment (one that a resumed
        run did not restore from) is replaced: the run being saved is the one that counts.
        """
        self._empty_trash()  # orbax renames deleted steps into it and will not overwrite a folder there
        if int(step) in self._manager.all_steps() and jax.process_index() == 0:
            warnings.warn(f"replacing checkpoint step {int(step)} in {self.directory} left by an interrupted run",
                          RuntimeWarning, stacklevel=2)
            self._manager.delete(int(step))
        self._manager.save(int(step), args=ocp.args.StandardSave(tree), force=True)
        self._manager.wait_until_finished()
        if jax.process_index() == 0:
            write_manifest(self.step_dir(step), meta)
            self._empty_trash()
        if jax.process_count() > 1:
            from jaxlab.core import distributed

            distributed.sync(f"jaxlab-checkpoint-manifest-{int(step)}")

    def meta(self, step: int) -> dict:
        """The `meta` dict saved with `step` (empty when it has no manifest)."""
        manifest = read_manifest(self.step_dir(step)) or {}
        return dict(manifest.get("meta") or {})

    def restore(self, step: int | None, target: Any) -> Any:
        """Verifies and restores step `step` (latest if None) into the structure of `target`.

        `target` may hold arrays or `jax.ShapeDtypeStruct`s; restored leaves take its
        shapes, dtypes and shardings.

        Raises:
          CorruptCheckpointError: the files differ from those saved.
          CheckpointError: no finished step, or the step does not fit `target`.
        """
        if step is None:
            step = self.latest_step()
            if step is None:
                raise CheckpointError(f"no finished checkpoint in {self.directory}")
        verify(int(step), self.step_dir(step))
        abstract = abstract_like(target)
        try:
            return self._manager.restore(int(step), args=ocp.args.StandardRestore(abstract))
        except Exception as e:
            raise CheckpointError(
                f"checkpoint step {step} in {self.step_dir(step)} is finished but cannot be "
                f"restored into the expected structure ({type(e).__name__}: {str(e)[:300]}). "
                "It belongs to a different model or config; use a new --workdir or --force."
            ) from e

    def restore_newest_intact(self, target: Any, *, move_aside: pathlib.Path | None = None
                              ) -> tuple[Any, int] | tuple[None, None]:
        """Restores the newest step that verifies, walking back past corrupt ones.

        Each corrupt step is reported with a warning naming it; with `move_aside` it is
        moved into that directory (never deleted). A step that is intact but does not
        fit `target` is an error, not skipped: it means a different config.

        Returns `(tree, step)`, or `(None, None)` when there is no finished step.
        """
        for step in reversed(self.all_steps()):
            try:
                return self.restore(step, target), step
            except CorruptCheckpointError as e:
                where = ""
                if move_aside is not None and jax.process_index() == 0:
                    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                    dest = pathlib.Path(move_aside) / f"{step}-{stamp}"
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(self.step_dir(step)), str(dest))
                    self._manager.reload()
                    where = f"; moved to {dest}"
                warnings.warn(f"{e}; using an older checkpoint{where}", RuntimeWarning, stacklevel=2)
                if jax.process_count() > 1:
                    from jaxlab.core import distributed

                    distributed.sync(f"jaxlab-checkpoint-aside-{step}")
                    self._manager.reload()
        return None, None

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
