"""Two studies of the discrete dynamics: learning rates up to GD's stability limit, and
the escape-time law in the initialisation scale.

`stability_*` (action `stability`): for each depth, a reference run at the depth's small
lr measures lambda_max of the Hessian at `hessian_points` points along the run (Lanczos);
the stability limit is lr* = 2 / max lambda_max. Then `seeds` runs at each
`stability_fractions` x lr*, each for `stability_flow_time / lr` steps (the same
gradient-flow time, logged at `stability_log_points` points), report the detected stages,
the escape steps x lr of every mode, and the end point (loss, gradient norm, lambda_min,
lambda_max x lr / 2, balancedness ||W_{i+1}^T W_{i+1} - W_i W_i^T||_F summed over i).

`law_*` (action `init_law`): escape step of each mode (sigma_k(W) first >= theta
sigma_k*) over a log grid of init scales, `seeds` runs per scale, the same init direction
for every scale of a seed. Depth >= 3: per seed, the least-squares slope of log t_k on
log init_scale; the exponent is the mean slope over seeds with a 95% Student-t interval,
against the gradient-flow law -(1 - 2/N). Depth 2 (no power law: t_k ~ ln(1/sigma_0)):
the escape step predicted from the initial factors with no fitted parameter,

    s_k0 = ||W_1(0) v_k* + W_2(0)^T u_k*||^2 / 4,   t_k = ln(sigma_k*/s_k0 - 1) / (2 ln(1 + lr sigma_k*)),

the linearisation of x = W_1 v_k*, y = W_2^T u_k* (x + y grows by 1 + lr sigma_k* per
step, u_k*^T W v_k* = <x, y> -> |x + y|^2 / 4) joined to the logistic growth of a
balanced mode (sigma reaches sigma*/2 when e^{2 sigma* t} = sigma*/s_0 - 1).
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np
import scipy.stats

from jaxlab.dmf import data, dynamics, hessian, models, spe, stages

__all__ = ["stability_limit", "stability_unit", "law_scales", "law_unit", "fit_exponent", "predict_depth2"]


def _key(config, stream, *fold):
    key = jax.random.fold_in(jax.random.key(config.seed), stream)
    for x in fold:
        key = jax.random.fold_in(key, x)
    return key


def target(config):
    return models.low_rank_target(_key(config, data.TARGET_STREAM, config.rank), config.n, config.rank,
                                  data.spectrum(config.singular_values, config.rank, config.spectrum_ratio))


def _small(config, depth):
    i = list(config.depths).index(depth)
    return config.claim_init_scales[i], config.sweep_lrs[i]


def stability_limit(config, tgt, depth: int) -> dict:
    """lambda_max along a reference run (depth's small init and lr, seed 0): its maximum
    and the limit lr* = 2 / max lambda_max."""
    init, lr = _small(config, depth)
    fs = models.init_factors(_key(config, data.RUNS_STREAM, 0), tuple(tgt.shape), depth, init)
    steps = int(math.ceil(config.stability_flow_time[list(config.stability_depths).index(depth)] / lr))
    points = max(config.hessian_points, 2)
    seg = max(steps // points, 1)
    kh = _key(config, data.HESSIAN_STREAM, depth)
    lam, state = [], None
    for i in range(points + 1):
        _, hi, _ = hessian.hessian_extremes(fs, tgt, key=jax.random.fold_in(kh, i), num_iters=config.lanczos_iters)
        lam.append(float(hi))
        tr = dynamics.train(fs, tgt, lr=lr, steps=seg, log_every=seg, opt_state=state)
        fs, state = tr.factors, tr.opt_state
    return {"depth": depth, "reference_lr": lr, "init_scale": init, "lambda_max_along_run": lam,
            "lambda_max": max(lam), "lr_limit": 2.0 / max(lam)}


def _balance(fs) -> float:
    return float(sum(np.linalg.norm(fs[i + 1].T @ fs[i + 1] - fs[i] @ fs[i].T) for i in range(len(fs) - 1)))


def _escape_steps(sv, step, s_star, theta):
    out = []
    for k in range(len(s_star)):
        hit = np.nonzero(sv[:, k] >= theta * s_star[k])[0]
        out.append(int(step[hit[0]]) if hit.size else None)
    return out


def stability_unit(config, tgt, depth: int, lr: float, fraction: float) -> dict:
    """`seeds` runs at one lr: stages, escape steps x lr and the end point of each."""
    init, _ = _small(config, depth)
    flow = config.stability_flow_time[list(config.stability_depths).index(depth)]
    steps = int(math.ceil(flow / lr))
    every = max(steps // config.stability_log_points, 1)
    t0 = time.perf_counter()
    out = dynamics.sweep(_key(config, data.RUNS_STREAM), tgt, depth=depth, seeds=config.seeds, init_scales=[init],
                         lrs=[lr], steps=steps, log_every=every, devices=config.num_devices or None).to_numpy()
    wall = time.perf_counter() - t0
    tn = np.asarray(tgt)
    s_star = np.linalg.svd(tn, compute_uv=False)[: config.rank]
    runs = []
    for s in range(config.seeds):
        one = out.select(s, 0, 0)
        found = stages.detect_stages(one, tn, **spe.detect_kwargs(config))
        fs = [np.asarray(f) for f in one.factors]
        finite = bool(np.all(np.isfinite(one.loss)) and all(np.all(np.isfinite(f)) for f in fs))
        row = {"seed": s, "status": found.status, "num_stages": len(found),
               "escape_steps": _escape_steps(one.singular_values, one.step, s_star, config.theta), "finite": finite}
        if finite:
            end = spe.end_point_of(fs, tgt, None, None, None, config.lanczos_iters, config.endpoint_grad_tol,
                                   config.endpoint_curvature_tol, _key(config, data.ENDPOINT_STREAM, depth, s))
            row |= {"end_point": end, "sharpness_x_lr_over_2": end["lambda_max"] * lr / 2,
                    "balance": _balance(fs), "test_error": float(one.test_error[-1])}
        runs.append(row)
    return {"depth": depth, "lr": lr, "fraction_of_limit": fraction, "steps": steps, "log_every": every,
            "init_scale": init, "runs": runs, "wall_time_s": wall}


def law_scales(config, depth: int) -> list[float]:
    top = config.law_init_top[list(config.law_depths).index(depth)]
    p = config.law_init_points
    return [float(top * 10 ** (-config.law_init_decades * i / max(p - 1, 1))) for i in range(p)]


def predict_depth2(factors0, tgt, lr: float, rank: int) -> list[float]:
    """Depth-2 escape steps from the initial factors (module docstring), no fit."""
    u, s, vt = np.linalg.svd(np.asarray(tgt, np.float64))
    w1, w2 = (np.asarray(f, np.float64) for f in factors0)
    out = []
    for k in range(rank):
        s0 = np.sum((w1 @ vt[k] + w2.T @ u[:, k]) ** 2) / 4
        out.append(float(np.log(s[k] / s0 - 1) / (2 * np.log1p(lr * s[k]))))
    return out


def law_unit(config, tgt, depth: int) -> dict:
    """Escape steps `[seeds, scales, R]` (null: not reached) at every init scale of `depth`,
    and for depth 2 the predicted steps."""
    i = list(config.law_depths).index(depth)
    scales, lr = law_scales(config, depth), config.law_lrs[i]
    steps = config.law_steps[i]
    t0 = time.perf_counter()
    out = dynamics.sweep(_key(config, data.RUNS_STREAM), tgt, depth=depth, seeds=config.seeds, init_scales=scales,
                         lrs=[lr], steps=steps, log_every=config.sweep_log_every,
                         devices=config.num_devices or None).to_numpy()
    wall = time.perf_counter() - t0
    s_star = np.linalg.svd(np.asarray(tgt), compute_uv=False)[: config.rank]
    esc = [[_escape_steps(out.singular_values[s, j, 0], out.step[s, j, 0], s_star, config.theta)
            for j in range(len(scales))] for s in range(config.seeds)]
    res = {"depth": depth, "lr": lr, "steps": steps, "init_scales": scales, "escape_steps": esc,
           "log_every": config.sweep_log_every, "wall_time_s": wall}
    if depth == 2:
        shape = tuple(tgt.shape)
        res["predicted_steps"] = [[predict_depth2(models.init_factors(jax.random.fold_in(
            _key(config, data.RUNS_STREAM), s), shape, 2, sc), tgt, lr, config.rank) for sc in scales]
            for s in range(config.seeds)]
    return res


def fit_exponent(init_scales, escape_steps, mode: int) -> dict:
    """Per-seed least-squares slope of log t (mode `mode`) on log init scale (seeds with
    every scale reached); mean, 95% t interval over seeds, and the pooled slope."""
    x = np.log(np.asarray(init_scales, np.float64))
    slopes, pooled_x, pooled_y = [], [], []
    for seed in escape_steps:
        t = [row[mode] for row in seed]
        if any(v is None or v <= 0 for v in t):
            continue
        y = np.log(np.asarray(t, np.float64))
        slopes.append(float(np.polyfit(x, y, 1)[0]))
        pooled_x.append(x)
        pooled_y.append(y)
    if not slopes:
        return {"mode": mode + 1, "seeds": 0, "exponent": None, "ci95": None, "pooled": None}
    m = float(np.mean(slopes))
    half = (float(scipy.stats.t.ppf(0.975, len(slopes) - 1) * np.std(slopes, ddof=1) / np.sqrt(len(slopes)))
            if len(slopes) > 1 else float("nan"))
    pooled = float(np.polyfit(np.concatenate(pooled_x), np.concatenate(pooled_y), 1)[0])
    return {"mode": mode + 1, "seeds": len(slopes), "exponent": m, "ci95": [m - half, m + half], "pooled": pooled}
