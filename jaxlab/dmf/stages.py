"""Saddle-point-escaping (SPE) stages of a DMF trajectory (reconstruction of spec 2.4).

A stage k (k = 1..R) is the stretch where gradient descent sits near a rank-(k-1)
critical point (loss plateau L_{k-1}, small gradient) before it escapes along the next
singular direction of the residual and the k-th singular value of W switches on.

`detect_stages` counts stages with two detectors that must agree:

1. Singular-value activations: mode k is active from the first log point where
   sigma_k(W) >= theta sigma_k* stays true for `min_dwell` log points (theta = 0.5;
   without a target, sigma_k* is replaced by the final sigma_k(W) of the learned modes).
2. Loss plateaus: before the first activation the loss must sit within `plateau_tol`
   (2%) of L_0, and between activations k and k+1 within 2% of L_k for `min_dwell`
   log points and at least `min_plateau_frac` (10%) of the steps between the two
   activations, *and* the gradient norm must show a dip there (a local minimum of
   log10 ||grad|| with prominence >= `dip_prominence` decades, `scipy.signal.find_peaks`).
   L_k = 1/2 sum_{i>k} sigma_i*^2 under full observation (`plateau_levels`); for
   completion/sensing pass the best rank-k fit losses as `levels`
   (`models.best_rank_k_losses`, what the `spe` action does), or leave None to take the
   loss at the gradient dip as the level (which checks the trajectory against itself).

If a plateau between two activations is missing, the two stages are reported as
*merged* (the stage is left out of the list and named in `Stages.merged`); if a dip is
there but the loss is not at the expected level, as *ill-separated*. The detector never
guesses a stage it did not see. All thresholds are arguments (and config fields of the
CLI), documented as reconstructions: the paper does not state them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.signal

from jaxlab.dmf import models

__all__ = ["Stage", "Stages", "detect_stages", "escape_alignment", "stage_results"]


class Stage(NamedTuple):
    """One SPE stage.

    start: first step of the plateau (the trajectory is near the saddle from here).
    end: step at which the next singular value activates (the escape).
    rank: rank of the critical point the stage sits near (k - 1 for the k-th stage).
    loss: median training loss on the plateau.
    """

    start: int
    end: int
    rank: int
    loss: float


class Stages(list):
    """A list of `Stage`s with the detector's verdict.

    status: "ok" (every one of the R modes was reached through its own plateau),
      "merged" (some consecutive stages had no plateau between them),
      "ill-separated" (a dip but no plateau at the expected level, or activations out of order),
      "incomplete" (some mode never activated: the run is too short),
      "diverged" (non-finite loss).
    expected: R, the number of stages the target implies.
    activations: step at which each mode activated (None if never).
    merged: ranks k of the missing rank-k plateaus.
    plateaus: (first, last) log indices of each reported stage's plateau.
    message: a sentence explaining the status.
    """

    def __init__(self, stages=(), *, status="ok", expected=0, activations=(), merged=(), plateaus=(), message=""):
        super().__init__(stages)
        self.status = status
        self.expected = expected
        self.activations = list(activations)
        self.merged = list(merged)
        self.plateaus = list(plateaus)
        self.message = message

    @property
    def ok(self) -> bool:
        return self.status == "ok" and len(self) == self.expected

    def __repr__(self):
        return (f"Stages({list.__repr__(self)}, status={self.status!r}, expected={self.expected}, "
                f"message={self.message!r})")


def _runs(flags: np.ndarray):
    """(start, stop) index pairs of maximal runs of True."""
    f = np.concatenate([[False], flags.astype(bool), [False]])
    d = np.diff(f.astype(np.int8))
    return list(zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]))


def _activation(x: np.ndarray, thr: float, dwell: int) -> int | None:
    above = x >= thr
    for a, b in _runs(above):
        if b - a >= dwell or b == len(x):
            return int(a)
    return None


def _single_run(traj):
    t = traj.to_numpy() if hasattr(traj, "to_numpy") else traj
    if np.ndim(t.loss) != 1:
        raise ValueError(f"detect_stages takes one run; got loss of shape {np.shape(t.loss)} "
                         "(use traj.select(...) on a sweep)")
    return t


def detect_stages(
    trajectory,
    target=None,
    *,
    theta: float = 0.5,
    plateau_tol: float = 0.02,
    dip_prominence: float = 0.5,
    min_dwell: int = 3,
    min_plateau_frac: float = 0.1,
    levels: Sequence[float] | None = None,
) -> Stages:
    """Detects the SPE stages of one logged run (see the module docstring).

    Args:
      trajectory: a `Trajectory` of one run (`sweep(...).select(s, i, j)` for a sweep).
      target: the `[n, m]` target M* (gives sigma* and, under full observation, L_k).
      theta: activation threshold as a fraction of sigma_k*.
      plateau_tol: relative band around L_k that counts as "on the plateau".
      dip_prominence: required prominence (decades) of a gradient-norm dip at a saddle.
      min_dwell: log points a plateau / an activation must last.
      min_plateau_frac: a plateau must also last this fraction of its stage (steps from
        the previous activation to the next one); shorter ones count as merged.
      levels: plateau losses L_0..L_{R-1} (overrides the full-observation formula).

    Returns:
      `Stages` (a list of `Stage(start, end, rank, loss)` with `.status`, `.ok`, ...).
    """
    t = _single_run(trajectory)
    steps = np.asarray(t.step)
    loss = np.asarray(t.loss, np.float64)
    gnorm = np.asarray(t.grad_norm, np.float64)
    sv = np.asarray(t.singular_values, np.float64)
    if not np.all(np.isfinite(loss)):
        bad = int(steps[np.argmin(np.isfinite(loss))])
        return Stages([], status="diverged", expected=0, message=f"the loss is not finite from step {bad} on")
    if target is not None:
        s_star = np.linalg.svd(np.asarray(target, np.float64), compute_uv=False)
        R = int(np.sum(s_star > 1e-8 * s_star[0])) if s_star[0] > 0 else 0
        thr = theta * s_star[:R]
        if levels is None and t.observation == "full":
            levels = models.plateau_levels(target, t.reduction)
    else:
        init, final = sv[0], sv[-1]
        learned = (final >= 1e-2 * final[0]) & (final >= 100.0 * np.maximum(init, 1e-300))
        R = int(np.argmin(learned)) if not learned.all() else len(learned)
        thr = theta * final[:R]
    if levels is not None:
        levels = np.asarray(levels, np.float64)
        if levels.shape[0] < R:
            raise ValueError(f"levels has {levels.shape[0]} entries, need R = {R}")

    acts = [_activation(sv[:, k], thr[k], min_dwell) for k in range(R)]
    act_steps = [None if a is None else int(steps[a]) for a in acts]
    logg = np.log10(np.maximum(gnorm, 1e-300))
    dips, _ = scipy.signal.find_peaks(-logg, prominence=dip_prominence)

    stages, plateaus, merged, problems = [], [], [], []
    status = "ok"
    for k in range(R):  # stage k+1 sits near the rank-k critical point
        lo = 0 if k == 0 else acts[k - 1]
        hi = acts[k]
        if lo is None or hi is None:
            status = "incomplete"
            problems.append(f"mode {k + 1} never reached {theta} sigma*_{k + 1}")
            break
        if hi < lo:
            status = "ill-separated"
            problems.append(f"mode {k + 1} activated before mode {k}")
            break
        window = np.arange(lo, hi + 1)
        if k == 0:
            has_dip = bool(np.max(logg[: hi + 1]) - logg[0] >= dip_prominence)
            dip_idx = 0
        else:
            inside = dips[(dips > lo) & (dips <= hi)]
            has_dip = inside.size > 0
            dip_idx = int(inside[np.argmin(logg[inside])]) if has_dip else None
        if levels is not None:
            level = levels[k]
        elif has_dip:
            level = loss[dip_idx]
        else:
            level = None
        run = None
        if level is not None:
            band = np.abs(loss[window] - level) <= plateau_tol * abs(level)
            need = min_plateau_frac * (steps[hi] - steps[lo])
            runs = [(lo + a, lo + b) for a, b in _runs(band)
                    if b - a >= min_dwell and steps[lo + b - 1] - steps[lo + a] >= need]
            if runs:
                run = max(runs, key=lambda r: r[1] - r[0])
        if run is not None and has_dip:
            a, b = run
            stages.append(Stage(int(steps[a]), int(steps[hi]), k, float(np.median(loss[a:b]))))
            plateaus.append((int(a), int(b - 1)))
        elif run is None and (not has_dip or level is not None
                              and np.any(np.abs(loss[window] - level) <= plateau_tol * abs(level))):
            merged.append(k)
            problems.append(f"no (long enough) plateau near rank {k}: stages {k} and {k + 1} merged")
            if status == "ok":
                status = "merged"
        else:
            what = "a gradient dip but no loss plateau" if run is None else "a loss plateau but no gradient dip"
            lvl = f" at L_{k} = {level:.6g}" if levels is not None else ""
            problems.append(f"{what}{lvl} near rank {k}")
            if status == "ok":
                status = "ill-separated"
    msg = "; ".join(problems) if problems else f"{len(stages)} stages, as expected from rank {R}"
    return Stages(stages, status=status, expected=R, activations=act_steps, merged=merged, plateaus=plateaus,
                  message=msg)


def escape_alignment(trajectory, target, stages: Stages | None = None, **detect_kwargs) -> np.ndarray:
    """`[R]` alignment of each plateau's gradient direction with the next target pair.

    At the middle of the plateau of the stage near the rank-k critical point, the top
    singular pair (u, v) of -dl/dW; returns |<u, u*>| |<v, v*>| with the (k+1)-th target
    pair (1 = aligned) per stage, NaN for stages that were not detected. Needs a
    trajectory from `train(..., track_escape=True)`.

    Under full observation this is close to a tautology: on a rank-k plateau -dl/dW =
    M* - W is the target's residual, whose top pair *is* the next target pair once the
    first k modes are fitted. It says nothing about the dynamics; the escape direction of
    the saddle is the Hessian's negative-curvature eigenvector (`jaxlab.dmf.spe.dips`,
    `jaxlab.dmf.hessian.escape_direction`).
    """
    t = _single_run(trajectory)
    if t.grad_u is None:
        raise ValueError("escape_alignment needs train(..., track_escape=True): the trajectory has no grad_u/grad_v")
    if stages is None:
        stages = detect_stages(t, target, **detect_kwargs)
    u, s, vt = np.linalg.svd(np.asarray(target, np.float64))
    R = int(np.sum(s > 1e-8 * s[0]))
    out = np.full(R, np.nan)
    for st, (a, b) in zip(stages, stages.plateaus):
        i = (a + b) // 2
        k = st.rank
        out[k] = abs(np.dot(np.asarray(t.grad_u[i]), u[:, k])) * abs(np.dot(np.asarray(t.grad_v[i]), vt[k]))
    return out


def stage_results(traj, target, found: Stages) -> dict:
    """The JSON record of detected stages: status, counts, the stages, activations and the
    (gradient-based) `escape_alignment` per stage (null where undefined)."""
    align = escape_alignment(traj, target, found)
    return {"status": found.status, "num_stages": len(found), "expected_stages": found.expected,
            "stages": [s._asdict() for s in found], "activations": found.activations,
            "gradient_alignment": [None if np.isnan(x) else float(x) for x in align]}
