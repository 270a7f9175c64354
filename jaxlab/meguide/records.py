"""What a MeGuide run records beside `fit`'s metrics, so that its summary is the same
after a resume or a rerun of a finished run.

* `PaddingLog`: the padding budgets (node rows, edge rows) of the batches the run trained
  on, each with the first step that used it, in `workdir/padding_budgets.json`. A budget
  is a compile of the step. Batches are a pure function of (seed, step), so the steps a
  resumed run repeats add nothing new, and a rerun of a finished run, which trains no
  step, reads the same file.
* `setup_times`: the data loading and sampler setup times of the run's first segment,
  in `workdir/setup_times.json`.
"""

from __future__ import annotations

import json
import pathlib

from jaxlab.core import workdir as workdir_lib

__all__ = ["PaddingLog", "setup_times", "PADDING_FILE", "SETUP_FILE"]

PADDING_FILE = "padding_budgets.json"
SETUP_FILE = "setup_times.json"


def _read(path: pathlib.Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise workdir_lib.WorkdirError(f"{path}: not valid JSON ({e}); move the run aside with --force") from None


class PaddingLog:
    """The padding budgets of a run's batches, kept on disk over all its segments."""

    def __init__(self, workdir: str | pathlib.Path):
        self.path = pathlib.Path(workdir) / PADDING_FILE
        rows = (_read(self.path) or {}).get("budgets", [])
        self.first_step = {(int(n), int(e)): int(s) for n, e, s in rows}

    def record(self, step: int, batch) -> None:
        """Notes the budget of `batch` (a padded GraphsTuple) used at `step`; writes the
        file when the budget is new (or seen earlier than before)."""
        key = (int(batch.nodes["x"].shape[0]), int(batch.senders.shape[0]))
        if key in self.first_step and self.first_step[key] <= step:
            return
        self.first_step[key] = int(step)
        rows = sorted([n, e, s] for (n, e), s in self.first_step.items())
        workdir_lib.write_json(self.path, {"budgets": rows})

    def count(self, num_steps: int) -> int:
        """Distinct budgets used by steps 0 .. num_steps - 1."""
        return sum(1 for s in self.first_step.values() if s < num_steps)


def setup_times(workdir: str | pathlib.Path, measured: dict) -> dict:
    """The setup times of the run's first segment: `measured` when none are recorded
    yet (then written to `workdir/setup_times.json`), else the recorded ones."""
    path = pathlib.Path(workdir) / SETUP_FILE
    old = _read(path)
    if old is not None:
        return old
    workdir_lib.write_json(path, measured)
    return measured
