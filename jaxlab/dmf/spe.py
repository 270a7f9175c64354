"""One saddle-point-escaping (SPE) run: segmented training with the Hessian along the run.

`run(config, segments_dir)` trains the factors of `config`'s problem for `config.steps`
updates in `hessian_points` segments; before each segment it evaluates the smallest
Hessian eigenvalue lambda_min (Lanczos, `jaxlab.dmf.hessian`) at the current factors.
Each finished segment (its trajectory part, factors, optimizer state, lambda_min and
time) is saved in `segments_dir`, so a killed run rerun with the same config resumes at
the first missing segment and ends with the same numbers. `dips` revisits the gradient
minimum of each detected stage and evaluates lambda_min there.

A non-finite loss (or factors) stops the run with `jaxlab.core.train.NonFiniteError`
naming the step: a single diverging run is an error, not a result.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import time
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxlab.core.progress import progress
from jaxlab.core.train import NonFiniteError
from jaxlab.dmf import data, dynamics, hessian, models, optim

__all__ = ["SpeRun", "run", "fit_levels", "plan", "dips", "end_point", "end_point_of", "detect_kwargs", "concat",
           "save", "load_trajectory"]

_PARTS = ("step", "loss", "grad_norm", "singular_values", "test_error", "grad_u", "grad_v")


class SpeRun(NamedTuple):
    """trajectory: the whole run (factors: the final ones); target, mask, measurements:
    the problem; factors0: the initialization; hessian_steps/hessian_values: lambda_min
    before each segment (empty with hessian_points=0); wall_time_s: summed over segments
    (including the segments of earlier, killed attempts)."""

    trajectory: dynamics.Trajectory
    target: Any
    mask: Any
    measurements: Any
    factors0: list
    hessian_steps: list
    hessian_values: list
    wall_time_s: float


def detect_kwargs(config) -> dict:
    """The stage detector's thresholds from the config (see `jaxlab.dmf.stages`)."""
    return dict(theta=config.theta, plateau_tol=config.plateau_tol, dip_prominence=config.dip_prominence,
                min_dwell=config.min_dwell, min_plateau_frac=config.min_plateau_frac)


def plan(steps: int, log_every: int, hessian_points: int) -> list[tuple[int, int]]:
    """(first step, number of steps) of each segment: about `hessian_points` segments of
    a multiple of `log_every` steps each (one segment when hessian_points = 0)."""
    p = max(hessian_points, 1)
    seg = max(log_every, (steps // p) // log_every * log_every)
    return [(start, min(seg, steps - start)) for start in range(0, steps, seg)]


def concat(parts: list[dynamics.Trajectory]) -> dynamics.Trajectory:
    """One trajectory from consecutive segments (numpy; final factors of the last)."""
    t = [x.to_numpy() for x in parts]
    cat = {k: None if getattr(t[0], k) is None else np.concatenate([getattr(x, k) for x in t]) for k in _PARTS}
    return dynamics.Trajectory(**cat, factors=t[-1].factors, opt_state=None,
                               reduction=t[0].reduction, observation=t[0].observation)


def _check_finite(tr: dynamics.Trajectory, end_step: int) -> None:
    bad = np.nonzero(~np.isfinite(tr.loss))[0]
    if bad.size:
        raise NonFiniteError(int(tr.step[bad[0]]), "loss", float(tr.loss[bad[0]]))
    if not all(np.all(np.isfinite(f)) for f in tr.factors):
        raise NonFiniteError(end_step, "factors", "nan/inf")


def _write_npz(path: pathlib.Path, arrays: dict) -> None:
    """np.savez atomically (temporary file + rename): a killed run leaves no half segment."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _save_segment(path, tr, h_value, wall) -> None:
    arrays = {k: getattr(tr, k) for k in _PARTS if getattr(tr, k) is not None}
    arrays |= {f"factor_{i}": f for i, f in enumerate(tr.factors)}
    arrays |= {f"opt_{i}": x for i, x in enumerate(jax.tree.leaves(tr.opt_state))}
    _write_npz(path, arrays | {"hessian_min_eig": np.float64(np.nan if h_value is None else h_value),
                               "wall_time_s": np.float64(wall)})


def _load_segment(path, opt_treedef, reduction: str, observation: str):
    with np.load(path) as z:
        nf = sum(1 for k in z.files if k.startswith("factor_"))
        no = sum(1 for k in z.files if k.startswith("opt_"))
        tr = dynamics.Trajectory(
            **{k: z[k] if k in z.files else None for k in _PARTS},
            factors=[z[f"factor_{i}"] for i in range(nf)],
            opt_state=jax.tree.unflatten(opt_treedef, [z[f"opt_{i}"] for i in range(no)]),
            reduction=reduction, observation=observation)
        h = float(z["hessian_min_eig"])
        return tr, (None if np.isnan(h) else h), float(z["wall_time_s"])


def run(config, segments_dir: str | pathlib.Path | None = None, *, desc: str = "dmf spe") -> SpeRun:
    """The SPE run of `config` (call inside `jax.enable_x64(True)`); see the module docstring."""
    key = jax.random.key(config.seed)
    target, mask, meas = data.problem(config, jax.random.fold_in(key, data.PROBLEM_STREAM))
    fs0 = models.init_factors(jax.random.fold_in(key, data.INIT_STREAM), tuple(target.shape), config.depth,
                              config.init_scale, config.init_kind)
    kh = jax.random.fold_in(key, data.HESSIAN_STREAM)
    red = config.loss_reduction or None
    kw = dict(mask=mask, measurements=meas, lr=config.lr, optimizer=config.optimizer, loss_reduction=red)
    opt_treedef = jax.tree.structure(optim.make_optimizer(config.optimizer, config.lr).init(fs0))
    seg_dir = None if segments_dir is None else pathlib.Path(segments_dir)
    if seg_dir is not None:
        seg_dir.mkdir(parents=True, exist_ok=True)
    fs, opt_state, parts, h_steps, h_vals, wall = [np.asarray(f) for f in fs0], None, [], [], [], 0.0
    reduction = red or models.default_reduction(mask, meas)
    observation = "sensing" if meas is not None else ("completion" if mask is not None else "full")
    for start, n_steps in progress(plan(config.steps, config.log_every, config.hessian_points), desc=desc):
        path = None if seg_dir is None else seg_dir / f"segment_{start:09d}.npz"
        if path is not None and path.exists():
            tr, h, w = _load_segment(path, opt_treedef, reduction, observation)
        else:
            t0 = time.perf_counter()
            h = None
            if config.hessian_points:
                h = float(hessian.hessian_min_eig(fs, target, mask, key=jax.random.fold_in(kh, start),
                                                  num_iters=config.lanczos_iters, measurements=meas,
                                                  loss_reduction=red))
            tr = dynamics.train(fs, target, steps=n_steps, log_every=config.log_every, track_escape=True,
                                opt_state=opt_state, start_step=start, **kw).to_numpy()
            w = time.perf_counter() - t0
            _check_finite(tr, start + n_steps)
            if path is not None:
                if not path.exists():
                    _save_segment(path, tr, h, w)
                # what a resumed run reads back, so both take the same path from here
                tr, h, w = _load_segment(path, opt_treedef, reduction, observation)
        if h is not None:
            h_steps.append(start)
            h_vals.append(h)
        fs, opt_state, wall = tr.factors, tr.opt_state, wall + w
        parts.append(tr)
    return SpeRun(concat(parts), target, mask, meas, fs0, h_steps, h_vals, wall)


def _advance(config, result: SpeRun, step: int):
    return dynamics.advance(result.factors0, result.target, steps=step, mask=result.mask,
                            measurements=result.measurements, lr=config.lr, optimizer=config.optimizer,
                            loss_reduction=config.loss_reduction or None)


def _pair_alignment(u, v, u_star, v_star) -> float:
    return float(abs(np.dot(u, u_star)) * abs(np.dot(v, v_star)))


def dips(config, result: SpeRun, stages) -> list[dict]:
    """Curvature and escape direction at each stage's gradient dip (the factors there
    recomputed from the initialization with `dynamics.advance`).

    Per stage near the rank-k critical point: the step and gradient norm at the dip;
    lambda_min and lambda_max of the Hessian there (one Lanczos run) and its
    negative-curvature eigenvector V in factor space; V mapped to W
    (`hessian.escape_direction`: top singular pair of the second-order term D2) and its
    alignment |<u, u*>| |<v, v*>| with the next target pair (u*_{k+1}, v*_{k+1})
    (`hessian_alignment`); the direction the trajectory actually leaves the plateau,
    from the dip to the step halfway to the activation of mode k+1: the top singular
    pair of the change of W there, aligned with the target pair (`exit_alignment`) and
    with the Hessian's (`hessian_exit_alignment`); and the Hessian's Rayleigh quotient
    along the factor displacement over that stretch divided by lambda_min
    (`exit_curvature_ratio`: 1 = the trajectory leaves exactly along negative curvature
    as strong as lambda_min, 0 = along flat directions, < 0 = along positive curvature).
    """
    traj, out = result.trajectory, []
    kh = jax.random.fold_in(jax.random.key(config.seed), data.HESSIAN_STREAM)
    red = config.loss_reduction or None
    hk = dict(mask=result.mask, measurements=result.measurements, loss_reduction=red)
    u_star, _, vt_star = np.linalg.svd(np.asarray(result.target, np.float64))
    for s, (a, b) in zip(stages, stages.plateaus):
        i = a + int(np.argmin(traj.grad_norm[a:b + 1])) if s.rank > 0 else 0
        step_i = int(traj.step[i])
        f_i = _advance(config, result, step_i)
        lam, lam_max, vec = hessian.hessian_extremes(f_i, result.target, key=kh, num_iters=config.lanczos_iters, **hk)
        u, v = hessian.escape_direction(f_i, vec)
        k = s.rank
        row = {"rank": k, "step": step_i, "grad_norm": float(traj.grad_norm[i]), "lambda_min": float(lam),
               "lambda_max": float(lam_max),
               "hessian_alignment": _pair_alignment(u, v, u_star[:, k], vt_star[k])}
        act = stages.activations[k] if k < len(stages.activations) else None
        if act is not None and act > step_i + 1:
            exit_step = step_i + (act - step_i) // 2
            f_e = _advance(config, result, exit_step)
            dw = np.asarray(models.end_to_end(f_e)) - np.asarray(models.end_to_end(f_i))
            ue, _, vte = np.linalg.svd(dw)
            dth = [np.asarray(x) - np.asarray(y) for x, y in zip(f_e, f_i)]
            hd = hessian.hvp(f_i, result.target, dth, **hk)
            rq = sum(float(np.sum(x * np.asarray(y))) for x, y in zip(dth, hd)) / sum(float(np.sum(x * x))
                                                                                   for x in dth)
            row |= {"exit_step": exit_step,
                    "exit_alignment": _pair_alignment(ue[:, 0], vte[0], u_star[:, k], vt_star[k]),
                    "hessian_exit_alignment": _pair_alignment(ue[:, 0], vte[0], u, v),
                    "exit_curvature_ratio": rq / float(lam) if lam < 0 else None}
        out.append(row)
    return out


def end_point(config, result: SpeRun) -> dict:
    """Loss, gradient norm, lambda_min and lambda_max of the Hessian at the run's final
    factors, and whether that is a second-order critical point within the tolerances
    (gradient norm <= `endpoint_grad_tol`, lambda_min >= -`endpoint_curvature_tol` *
    lambda_max)."""
    return end_point_of(result.trajectory.factors, result.target, result.mask, result.measurements,
                        config.loss_reduction or None, config.lanczos_iters, config.endpoint_grad_tol,
                        config.endpoint_curvature_tol,
                        jax.random.fold_in(jax.random.key(config.seed), data.ENDPOINT_STREAM))


def end_point_of(factors, target, mask, measurements, loss_reduction, lanczos_iters, grad_tol, curvature_tol,
                 key) -> dict:
    """`end_point` for given factors (also used by the studies)."""
    fs = [jax.numpy.asarray(f) for f in factors]
    loss, g = jax.value_and_grad(models.loss_fn)(fs, target, mask, measurements, loss_reduction)
    gnorm = float(np.sqrt(sum(float(np.sum(np.asarray(x) ** 2)) for x in g)))
    lam, lam_max, _ = hessian.hessian_extremes(fs, target, mask, key=key, num_iters=lanczos_iters,
                                               measurements=measurements, loss_reduction=loss_reduction)
    lam, lam_max = float(lam), float(lam_max)
    return {"loss": float(loss), "grad_norm": gnorm, "lambda_min": lam, "lambda_max": lam_max,
            "second_order_critical": bool(gnorm <= grad_tol and lam >= -curvature_tol * abs(lam_max))}


def save(workdir: pathlib.Path, result: SpeRun, num_sigmas: int) -> None:
    """`trajectory.npz` (the whole run, target, final factors, lambda_min along the run)
    and `metrics.jsonl` (loss, grad_norm, test_error and the first `num_sigmas`
    singular values at each log point), both rewritten whole."""
    from jaxlab.core import metrics

    traj = result.trajectory
    arrays = {k: getattr(traj, k) for k in _PARTS}
    arrays |= {f"factor_{i}": f for i, f in enumerate(traj.factors)}
    _write_npz(workdir / "trajectory.npz", arrays | dict(
        target=np.asarray(result.target), hessian_step=np.asarray(result.hessian_steps, np.int64),
        hessian_min_eig=np.asarray(result.hessian_values, np.float64), reduction=traj.reduction,
        observation=traj.observation))
    path = workdir / "metrics.jsonl"
    path.unlink(missing_ok=True)
    k_max = min(num_sigmas, traj.singular_values.shape[1])
    with metrics.MetricWriter(workdir, tensorboard=False) as writer:
        for i in range(len(traj.step)):
            writer.write(int(traj.step[i]), {
                "loss": float(traj.loss[i]), "grad_norm": float(traj.grad_norm[i]),
                "test_error": float(traj.test_error[i]),
                **{f"sigma_{k + 1}": float(traj.singular_values[i, k]) for k in range(k_max)}})


def load_trajectory(workdir: pathlib.Path) -> dict | None:
    """{"trajectory", "target", "factors", "hessian": (steps, values)} from
    `trajectory.npz`, or None when the workdir has none."""
    path = pathlib.Path(workdir) / "trajectory.npz"
    if not path.exists():
        return None
    with np.load(path) as z:
        factors = [z[f"factor_{i}"] for i in range(sum(1 for k in z.files if k.startswith("factor_")))]
        traj = dynamics.Trajectory(**{k: z[k] for k in _PARTS}, factors=factors,
                                   reduction=str(z["reduction"]), observation=str(z["observation"]))
        return {"trajectory": traj, "target": z["target"], "factors": factors,
                "hessian": (z["hessian_step"], z["hessian_min_eig"])}


def fit_levels(config, target, mask, measurements, reduction):
    """Plateau levels L_0..L_{R-1}: the best rank-k fit losses (exact under full observation);
    None for user entries (`entries_file`: the target, hence R, is unknown off the entries)."""
    if config.entries_file:
        return None
    rank = int(np.sum(np.linalg.svd(np.asarray(target), compute_uv=False) > 1e-8 * np.abs(target).max()))
    return models.best_rank_k_losses(target, mask, measurements, reduction, max(rank, 1),
                                     restarts=config.fit_restarts, seed=config.seed)
