"""Checkpoint selection on the validation split (`config.select`).

Training evaluates the validation split every `loop.eval_every` steps (`fit`'s `eval_fn`) and
logs the focal target's ADE as `eval_ade` in `metrics.jsonl`; checkpoints are saved every
`loop.checkpoint_every` steps and the newest `loop.keep` of them stay on disk. With
`select="best_val"` a run is read back at

    step* = argmin_{s in kept checkpoints with a logged validation score} eval_ade(s)

(the earliest such step on ties; K = 1 guess, so minADE = ADE), so the test split is scored by a
checkpoint chosen without looking at it. With `select="last"` it is read at the newest intact
checkpoint, as before this field existed.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import Any

from jaxlab.core import train as train_lib

__all__ = ["METRIC", "validation_scores", "restore_selected", "check_schedule"]

METRIC = "eval_ade"


def validation_scores(workdir: str | pathlib.Path, metric: str = METRIC) -> dict[int, float]:
    """`{step: value}` of the finite validation `metric` logged in `workdir/metrics.jsonl`."""
    return train_lib.logged_values(workdir, metric)


def restore_selected(workdir: str | pathlib.Path, state: Any, select: str, *, keep: int = 3
                     ) -> tuple[Any, int, dict]:
    """Restores the checkpoint that `select` names into `state`'s structure.

    Args:
      workdir: the run directory.
      state: a state of the run's structure (e.g. `training.init_state(config)`).
      select: "best_val" (lowest logged validation ADE among the kept checkpoints, through
        `core.train.restore_best`: every kept step is verified first and a corrupt one is left
        out with a warning naming it) or "last" (newest intact).
      keep: `loop.keep` of the run.

    Returns:
      `(state, step, selection)`: `selection` records `select`, the chosen `step`, and for
      best_val the metric, its value at the step, the scores of every candidate checkpoint
      (`candidates`, keyed by step as a string) and the newest kept step. Without a kept
      checkpoint that has a validation score (an interrupted run whose evaluations fell
      between checkpoints) it falls back to the newest intact one, with a warning and
      `fallback` set.

    Raises:
      WorkdirError: the run holds no finished checkpoint.
      ValueError: an unknown `select`.
    """
    if select not in ("best_val", "last"):
        raise ValueError(f"select must be 'best_val' or 'last', got {select!r}")
    if select == "last":
        state, step = train_lib.load_state(workdir, state, keep=keep)
        return state, step, {"select": select, "step": step}
    state, step, info = train_lib.restore_best(workdir, state, METRIC, keep=keep)
    if info["fallback"]:
        return state, step, {"select": select, "step": step, "fallback": "last"}
    return state, step, {"select": select, "step": step, "metric": "val_ade", "val_ade": info["value"],
                         "candidates": {str(s): v for s, v in sorted(info["candidates"].items())},
                         "latest_step": info["latest_step"]}


def check_schedule(config) -> None:
    """Warns when `select="best_val"` but some checkpoints will have no validation score
    (`loop.checkpoint_every` not a multiple of `loop.eval_every`)."""
    loop = config.loop
    if config.select == "best_val" and loop.checkpoint_every and (
            not loop.eval_every or loop.checkpoint_every % loop.eval_every):
        warnings.warn(f"select=best_val: loop.checkpoint_every={loop.checkpoint_every} is not a multiple of "
                      f"loop.eval_every={loop.eval_every}, so only some checkpoints have a validation score "
                      "(the last step always has one)", RuntimeWarning, stacklevel=2)
