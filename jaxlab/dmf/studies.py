"""The multi-run studies of `jaxlab dmf`: the stage-count phase diagram (`sweep`), escape
times (`escape`) and Arora et al.'s completion anchor (`completion`).

Each study is a grid of units (a depth x rank cell, a depth x optimizer pair, an
observation count x depth pair); a unit runs its seeds x init scales x lrs as one
`dynamics.sweep` call (sharded over `num_devices` devices). `cached(path, compute)`
keeps each finished unit as a JSON file, so a killed study rerun with the same config
redoes only the missing units, and every unit's numbers are those read back from its
file (strict JSON: a NaN of a diverged run is null), whether computed now or before.

Call the units inside `jax.enable_x64(True)`. Keys: `jax.random.key(config.seed)` folded
with the named streams of `jaxlab.dmf.data`.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import distributed
from jaxlab.core import workdir as workdir_lib
from jaxlab.dmf import baselines, data, dynamics, models, spe, stages

__all__ = ["effective_rank", "cached", "claim_init", "phase_cell", "claim", "escape_lrs", "escape_unit",
           "nuclear_unit", "completion_unit"]


def effective_rank(s) -> float | None:
    """Roy & Vetterli's effective rank exp(H(p)), p = s / sum(s) (Arora et al.'s measure);
    None for non-finite singular values (a diverged run)."""
    s = np.asarray(s, np.float64)
    if not np.all(np.isfinite(s)) or np.sum(s) <= 0:
        return None
    p = s[s > 0] / np.sum(s)
    return float(np.exp(-np.sum(p * np.log(p))))


def _svdvals(w) -> np.ndarray | None:
    w = np.asarray(w)
    return np.linalg.svd(w, compute_uv=False) if np.all(np.isfinite(w)) else None


def cached(path: pathlib.Path, compute: Callable[[], object]):
    """The JSON in `path` if a previous attempt finished this unit, else `compute()`
    written there (strict, atomic) and read back."""
    if not path.exists():
        workdir_lib.write_json(path, compute())
        distributed.sync(f"jaxlab-dmf-{path.name}")  # process 0 wrote it; the others read it
    return json.loads(path.read_text(encoding="utf-8"))


def _key(config, stream: int, *fold: int):
    key = jax.random.fold_in(jax.random.key(config.seed), stream)
    for x in fold:
        key = jax.random.fold_in(key, x)
    return key


def claim_init(config, depth: int) -> float:
    """The sweep init scale closest (in log) to the 'small init' of `depth`
    (`claim_init_scales`, aligned with `depths`)."""
    small = config.claim_init_scales[list(config.depths).index(depth)]
    return min(config.sweep_init_scales, key=lambda x: abs(np.log(x / small)))


def phase_cell(config, depth: int, lr: float, rank: int, n: int | None = None) -> list[dict]:
    """Stage-count cells of one (depth, R) at size n (default `config.n`): `seeds` runs per
    init scale, each judged by `stages.detect_stages` (success: status "ok", i.e. R
    separated stages). The target key folds in R (and n when n != config.n)."""
    n = config.n if n is None else n
    tkey = _key(config, data.TARGET_STREAM, rank) if n == config.n else _key(config, data.TARGET_STREAM, rank, n)
    target = models.low_rank_target(tkey, n, rank,
                                     data.spectrum(config.singular_values, rank, config.spectrum_ratio))
    t0 = time.perf_counter()
    out = dynamics.sweep(_key(config, data.RUNS_STREAM), target, depth=depth, seeds=config.seeds,
                         init_scales=config.sweep_init_scales, lrs=[lr], steps=config.sweep_steps,
                         log_every=config.sweep_log_every, optimizer=config.optimizer,
                         devices=config.num_devices or None).to_numpy()
    wall = time.perf_counter() - t0
    tn, cells = np.asarray(target), []
    for i, s in enumerate(config.sweep_init_scales):
        found = [stages.detect_stages(out.select(seed, i, 0), tn, **spe.detect_kwargs(config))
                 for seed in range(config.seeds)]
        statuses = [st.status for st in found]
        cells.append({"n": n, "depth": depth, "rank": rank, "init_scale": s, "lr": lr,
                      "success_rate": float(np.mean([x == "ok" for x in statuses])),
                      "mean_stages": float(np.mean([len(st) for st in found])),
                      "status_counts": {k: statuses.count(k) for k in sorted(set(statuses))},
                      "sweep_wall_time_s": wall})
    return cells


def claim(config, cells: list[dict], n: int | None = None) -> dict:
    """{"depth<d>": {"R<r>": success rate at the depth's small init}} of the phase diagram
    at size n (default `config.n`)."""
    n = config.n if n is None else n
    rate = lambda d, r: next(c["success_rate"] for c in cells if c.get("n", config.n) == n and c["depth"] == d
                             and c["rank"] == r and c["init_scale"] == claim_init(config, d))
    return {f"depth{d}": {f"R{r}": rate(d, r) for r in config.ranks} for d in config.depths}


def escape_lrs(config, depth_lr: float, optimizer: str) -> list[float]:
    """The escape study's lr grid: `escape_lr_factors` times the depth's lr for gd, times
    `escape_normalised_lr` for the normalised optimizers (lr is a step length there)."""
    base = depth_lr if optimizer == "gd" else config.escape_normalised_lr
    return [base * f for f in config.escape_lr_factors]


def escape_target(config):
    target = models.low_rank_target(_key(config, data.TARGET_STREAM, config.rank), config.n, config.rank,
                                    data.spectrum(config.singular_values, config.rank, config.spectrum_ratio))
    return target, np.linalg.svd(np.asarray(target), compute_uv=False)[: config.rank]


def escape_unit(config, target, s_star, depth: int, depth_lr: float, optimizer: str) -> list[dict]:
    """Mean step at which each sigma_k(W) first reaches theta sigma_k*, per lr, over `seeds`
    runs from the depth's small init; `finite_loss` false marks a diverged lr."""
    lrs = escape_lrs(config, depth_lr, optimizer)
    init = config.claim_init_scales[list(config.depths).index(depth)]
    out = dynamics.sweep(_key(config, data.RUNS_STREAM), target, depth=depth, seeds=config.seeds,
                         init_scales=[init], lrs=lrs, steps=config.sweep_steps, log_every=config.sweep_log_every,
                         optimizer=optimizer, devices=config.num_devices or None).to_numpy()
    rows = []
    for j, lr in enumerate(lrs):
        sv = out.singular_values[:, 0, j]  # [S, T, n]
        t = np.full((config.seeds, config.rank), np.nan)
        for s in range(config.seeds):
            for k in range(config.rank):
                hit = np.nonzero(sv[s, :, k] >= config.theta * s_star[k])[0]
                if hit.size:
                    t[s, k] = out.step[s, 0, j, hit[0]]
        mean = np.full(config.rank, np.nan)
        seen = np.any(np.isfinite(t), 0)
        mean[seen] = np.nanmean(t[:, seen], 0)
        rows.append({"depth": depth, "optimizer": optimizer, "lr": lr, "init_scale": init,
                     "escape_steps": mean.tolist(), "escape_steps_x_lr": (mean * lr).tolist(),
                     "finite_loss": bool(np.all(np.isfinite(out.loss[:, 0, j])))})
    return rows


def _problem_fold(problem: int) -> tuple[int, ...]:
    return () if problem == 0 else (problem,)  # problem 0 keeps the keys of single-problem runs


def completion_problem(config, observations: int, problem: int = 0):
    """Problem `problem` of the completion study: Arora et al.'s target and `observations`
    uniformly drawn entries, each problem with its own target and entries."""
    fold = _problem_fold(problem)
    target = models.arora_target(_key(config, data.COMPLETION_TARGET_STREAM, *fold), config.completion_n,
                                 config.completion_rank)
    return target, data.random_mask(_key(config, data.MASK_STREAM, observations, *fold), target.shape, observations)


def nuclear_unit(config, target, mask, observations: int, problem: int = 0) -> dict:
    """Minimum-nuclear-norm completion on the same entries (the convex baseline), solved by
    `baselines.min_nuclear_norm_completion` to the relative duality gap `nuclear_tol`."""
    tn, t0 = np.asarray(target), time.perf_counter()
    sol = baselines.min_nuclear_norm_completion(tn, np.asarray(mask), tol=config.nuclear_tol,
                                                max_iters=config.nuclear_max_iters)
    s = _svdvals(sol.z)
    return {"observations": observations, "problem": problem, "method": "nuclear norm", "depth": None,
            "init_scale": None, "seed": None, "test_error": float(np.linalg.norm(sol.z - tn) / np.linalg.norm(tn)),
            "effective_rank": None if s is None else effective_rank(s),
            "train_loss": float(np.sum(np.asarray(mask) * (sol.z - tn) ** 2) / observations),
            "nuclear_norm": sol.nuclear_norm, "dual_bound": sol.dual_bound, "rel_gap": sol.rel_gap,
            "solver_iterations": sol.iterations, "converged": sol.converged, "wall_time_s": time.perf_counter() - t0}


def completion_unit(config, target, mask, observations: int, depth: int, problem: int = 0) -> dict:
    """DMF at every completion init scale x `completion_seeds` seeds (one vmapped call; one
    row per run, `seed` naming it; curves of seed 0): final test error, effective
    rank and train loss, and the same at Arora et al.'s stopping point (the first log
    point with train loss <= completion_stop_loss); plus the curves for the figure
    (problem 0); `completion_log_points` log points per run."""
    tn, t0 = np.asarray(target), time.perf_counter()
    out = dynamics.sweep(_key(config, data.RUNS_STREAM, *_problem_fold(problem)), target, depth=depth,
                         seeds=config.completion_seeds,
                         init_scales=config.completion_init_scales, lrs=[config.completion_lr],
                         steps=config.completion_steps,
                         log_every=max(config.completion_steps // config.completion_log_points, 1),
                         optimizer=config.completion_optimizer, mask=mask,
                         devices=config.num_devices or None).to_numpy()
    wall = time.perf_counter() - t0
    rows, curves = [], []
    for (seed, i), s in zip(np.ndindex(config.completion_seeds, len(config.completion_init_scales)),
                            list(config.completion_init_scales) * config.completion_seeds):
        one = out.select(seed, i, 0)
        w = np.asarray(models.end_to_end([jnp.asarray(f) for f in one.factors]))
        hit = np.nonzero(one.loss <= config.completion_stop_loss)[0]
        k = int(hit[0]) if hit.size else None
        sv = _svdvals(w)
        rows.append({"observations": observations, "problem": problem, "method": "DMF", "depth": depth,
                     "init_scale": s, "seed": seed,
                     "test_error": float(np.linalg.norm(w - tn) / np.linalg.norm(tn)),
                     "effective_rank": None if sv is None else effective_rank(sv),
                     "train_loss": float(np.sum(np.asarray(mask) * (w - tn) ** 2) / observations),
                     "stop_step": None if k is None else int(one.step[k]),
                     "test_error_at_stop": None if k is None else float(one.test_error[k]),
                     "effective_rank_at_stop": None if k is None else effective_rank(one.singular_values[k]),
                     "finite_loss": bool(np.all(np.isfinite(one.loss))),
                     "wall_time_s": wall / len(config.completion_init_scales) / config.completion_seeds})
        if seed == 0 and problem == 0:
            curves.append({"observations": observations, "depth": depth, "init_scale": s, "step": one.step,
                           "loss": one.loss, "test_error": one.test_error})
    return {"rows": rows, "curves": curves}
