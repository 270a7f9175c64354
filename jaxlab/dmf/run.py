"""Actions of `jaxlab dmf`: `spe`, `sweep`, `escape`, `completion` and `evaluate`.

Each action runs in float64 (it enables `jax.enable_x64` itself) and writes into its
workdir `config.json`, `figures/*.png` and `summary.json` (plus `metrics.jsonl` and
`trajectory.npz` for `spe`).

    jaxlab dmf spe --config.rank=3 --config.depth=3 --workdir runs/spe
    jaxlab dmf sweep --workdir runs/sweep            # stage count vs R x depth x init
    jaxlab dmf escape --workdir runs/escape          # escape time vs lr, depth, optimizer
    jaxlab dmf completion --workdir runs/completion  # Arora et al. 2019 anchor
    jaxlab dmf evaluate --workdir runs/spe

`sweep`, `escape` and `completion` run their seeds x init scales x lrs as one
`dynamics.sweep` call, whose run axis is sharded over all of `jax.devices()`. A CPU host
has one device unless asked for more before JAX starts; `JAX_NUM_CPU_DEVICES=k` (read
by jax's `jax_num_cpu_devices` option) gives k, each running its share of the runs on its
own thread, e.g. on a 2-core machine

    JAX_NUM_CPU_DEVICES=2 jaxlab dmf sweep --workdir runs/sweep

The numbers do not depend on the device count; `summary.json` records it (`devices`).
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import workdir as workdir_lib
from jaxlab.dmf import baselines, data, dynamics, hessian, models, stages
from jaxlab.dmf.configs import DMFConfig
from jaxlab.dmf.threads import single_threaded_lapack

__all__ = ["spe", "sweep", "escape", "completion", "evaluate", "load", "effective_rank", "ACTIONS"]


def effective_rank(s) -> float:
    """Roy & Vetterli's effective rank exp(H(p)), p = s / sum(s) (Arora et al.'s measure)."""
    s = np.asarray(s, np.float64)
    p = s[s > 0] / np.sum(s)
    return float(np.exp(-np.sum(p * np.log(p))))


def _spectrum(config: DMFConfig, rank: int) -> tuple:
    if config.singular_values:
        if len(config.singular_values) < rank:
            raise ValueError(f"config.singular_values has {len(config.singular_values)} values, need rank={rank}")
        return tuple(config.singular_values[:rank])
    return models.geometric_singular_values(rank) if rank == 3 else tuple(10.0 * 0.5**k for k in range(rank))


def _detect_kwargs(config: DMFConfig) -> dict:
    return dict(theta=config.theta, plateau_tol=config.plateau_tol, dip_prominence=config.dip_prominence,
                min_dwell=config.min_dwell, min_plateau_frac=config.min_plateau_frac)


def _problem(config: DMFConfig, key):
    """(target, mask, measurements) of the configured observation model (float64)."""
    kt, ko = jax.random.split(key)
    mask = measurements = None
    if config.entries_file:
        rows, cols, vals = data.load_entries(config.entries_file)
        target, mask = data.entries_to_matrix(rows, cols, vals)
        return jnp.asarray(target), jnp.asarray(mask), None
    if config.target_file:
        target = jnp.asarray(data.load_target(config.target_file))
    else:
        target = models.low_rank_target(kt, config.n, config.rank, _spectrum(config, config.rank))
    if config.observation == "completion":
        mask = data.random_mask(ko, target.shape, config.num_observations)
    elif config.observation == "sensing":
        measurements = data.random_sensing(ko, target, config.num_observations)
    elif config.observation != "full":
        raise ValueError(f"config.observation must be full, completion or sensing, got {config.observation!r}")
    return target, mask, measurements


def _concat(trajs):
    t = [x.to_numpy() for x in trajs]
    cat = lambda *xs: np.concatenate(xs) if xs[0] is not None else None
    return dynamics.Trajectory(
        step=cat(*[x.step for x in t]), loss=cat(*[x.loss for x in t]), grad_norm=cat(*[x.grad_norm for x in t]),
        singular_values=cat(*[x.singular_values for x in t]), test_error=cat(*[x.test_error for x in t]),
        factors=t[-1].factors, opt_state=None, grad_u=cat(*[x.grad_u for x in t]), grad_v=cat(*[x.grad_v for x in t]),
        reduction=t[0].reduction, observation=t[0].observation)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_staircase(traj, levels, hess_steps, hess_vals, st, title, path=None):
    """Loss (log) with L_k, sigma_k(W), ||grad|| and lambda_min over steps."""
    plt = _plt()
    fig, ax = plt.subplots(1, 4, figsize=(17, 3.4))
    step = np.asarray(traj.step)
    ax[0].semilogy(step, traj.loss, "k")
    for k, lv in enumerate(levels if levels is not None else []):
        ax[0].axhline(lv, ls="--", lw=0.8, color=f"C{k}", label=f"L_{k}")
    for s in st:
        ax[0].axvspan(s.start, s.end, color=f"C{s.rank}", alpha=0.12)
    ax[0].set_title("loss (shaded: detected stages)")
    if levels is not None:
        ax[0].legend(fontsize=7)
    r = max(len(levels) if levels is not None else 3, 1)
    for k in range(min(r + 2, traj.singular_values.shape[1])):
        ax[1].semilogy(step, traj.singular_values[:, k], label=f"sigma_{k + 1}")
    ax[1].set_title("singular values of W")
    ax[1].legend(fontsize=7)
    ax[2].semilogy(step, traj.grad_norm, "k")
    ax[2].set_title("||grad|| (factors)")
    if len(hess_steps):
        ax[3].plot(hess_steps, hess_vals, "o-", ms=3)
        ax[3].axhline(0, color="gray", lw=0.6)
    ax[3].set_title("Hessian lambda_min (Lanczos)")
    for a in ax:
        a.set_xlabel("step")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def spe(config: DMFConfig, workdir) -> dict:
    """One run: the SPE staircase, its stages, escape alignment and curvature."""
    workdir = workdir_lib.prepare(workdir, config)
    from jaxlab.core.metrics import MetricWriter

    with jax.enable_x64(True):
        key = jax.random.PRNGKey(config.seed)
        kp, ki, kh = jax.random.split(key, 3)
        target, mask, meas = _problem(config, kp)
        fs0 = models.init_factors(ki, tuple(target.shape), config.depth, config.init_scale, config.init_kind)
        red = config.loss_reduction or None
        kw = dict(mask=mask, measurements=meas, lr=config.lr, optimizer=config.optimizer, loss_reduction=red)
        p = max(config.hessian_points, 1)
        seg = max(config.log_every, (config.steps // p) // config.log_every * config.log_every)
        fs, os, done, parts, h_steps, h_vals = fs0, None, 0, [], [], []
        t0 = time.perf_counter()
        while done < config.steps:
            n_steps = min(seg, config.steps - done)
            if config.hessian_points:
                h_steps.append(done)
                h_vals.append(float(hessian.hessian_min_eig(fs, target, mask, key=jax.random.fold_in(kh, done),
                                                            num_iters=config.lanczos_iters, measurements=meas, loss_reduction=red)))
            tr = dynamics.train(fs, target, steps=n_steps, log_every=config.log_every, track_escape=True,
                                opt_state=os, start_step=done, **kw)
            fs, os, done = tr.factors, tr.opt_state, done + n_steps
            parts.append(tr)
        wall = time.perf_counter() - t0
        traj = _concat(parts)
        st = stages.detect_stages(traj, target, **_detect_kwargs(config))
        align = stages.escape_alignment(traj, target, st)
        levels = models.plateau_levels(target, traj.reduction) if traj.observation == "full" else None
        # lambda_min exactly at each stage's gradient dip (factors recomputed from the init)
        dips = []
        for s, (a, b) in zip(st, st.plateaus):
            i = a + int(np.argmin(traj.grad_norm[a:b + 1])) if s.rank > 0 else 0
            step_i = int(traj.step[i])
            f_i = dynamics.advance(fs0, target, steps=step_i, **kw)
            lam = float(hessian.hessian_min_eig(f_i, target, mask, key=kh, num_iters=config.lanczos_iters,
                                                measurements=meas, loss_reduction=red))
            dips.append({"rank": s.rank, "step": step_i, "grad_norm": float(traj.grad_norm[i]), "lambda_min": lam})
    writer = MetricWriter(workdir)
    r = st.expected or config.rank
    for i in range(len(traj.step)):
        writer.write(int(traj.step[i]), {"loss": float(traj.loss[i]), "grad_norm": float(traj.grad_norm[i]),
                                         "test_error": float(traj.test_error[i]),
                                         **{f"sigma_{k + 1}": float(traj.singular_values[i, k]) for k in range(min(r + 1, traj.singular_values.shape[1]))}})
    writer.close()
    np.savez(workdir / "trajectory.npz", step=traj.step, loss=traj.loss, grad_norm=traj.grad_norm,
             singular_values=traj.singular_values, test_error=traj.test_error, grad_u=traj.grad_u, grad_v=traj.grad_v,
             target=np.asarray(target), hessian_step=np.asarray(h_steps), hessian_min_eig=np.asarray(h_vals),
             reduction=traj.reduction, observation=traj.observation)
    title = (f"n={target.shape[0]} R={r} depth={config.depth} init={config.init_scale:g} lr={config.lr:g} "
             f"{config.optimizer}: {len(st)} stages ({st.status})")
    fig = plot_staircase(traj, levels, h_steps, h_vals, st, title)
    workdir_lib.save_figure(fig, workdir, "staircase")
    results = {
        "status": st.status, "num_stages": len(st), "expected_stages": st.expected, "message": st.message,
        "stages": [s._asdict() for s in st], "activations": st.activations, "merged": st.merged,
        "plateau_levels": None if levels is None else [float(x) for x in levels],
        "escape_alignment": [None if np.isnan(x) else float(x) for x in align],
        "dips": dips, "final_loss": float(traj.loss[-1]),
        "final_test_error": float(traj.test_error[-1]), "train_wall_time_s": wall,
        "hessian_min_eig_at_init": h_vals[0] if h_vals else None,
    }
    workdir_lib.write_summary(workdir, results, config, seed=config.seed)
    return results


def _claim_init(config: DMFConfig, d: int) -> float:
    """The 'small init' of depth d (config.claim_init_scales, aligned with config.depths)."""
    if len(config.claim_init_scales) != len(config.depths):
        raise ValueError(f"config.claim_init_scales needs one init scale per depth in config.depths={config.depths}")
    return config.claim_init_scales[list(config.depths).index(d)]


def sweep(config: DMFConfig, workdir) -> dict:
    """Stage count vs rank R x depth x init scale, `seeds` runs per cell, one compiled
    vmapped call per (depth, R), sharded over all devices (see the module docstring)."""
    workdir = workdir_lib.prepare(workdir, config)
    if len(config.sweep_lrs) != len(config.depths):
        raise ValueError(f"config.sweep_lrs needs one lr per depth in config.depths={config.depths}")
    cells, t_total = [], 0.0
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(config.seed)
        for d, lr in zip(config.depths, config.sweep_lrs):
            for r in config.ranks:
                target = models.low_rank_target(jax.random.fold_in(key, r), config.n, r, _spectrum(config, r))
                t0 = time.perf_counter()
                out = dynamics.sweep(key, target, depth=d, seeds=config.seeds, init_scales=config.sweep_init_scales,
                                     lrs=[lr], steps=config.sweep_steps, log_every=config.sweep_log_every,
                                     optimizer=config.optimizer)
                out = out.to_numpy()
                wall = time.perf_counter() - t0
                t_total += wall
                tn = np.asarray(target)
                for i, s in enumerate(config.sweep_init_scales):
                    statuses, counts = [], []
                    for seed in range(config.seeds):
                        st = stages.detect_stages(out.select(seed, i, 0), tn, **_detect_kwargs(config))
                        statuses.append(st.status)
                        counts.append(len(st))
                    cells.append({"depth": d, "rank": r, "init_scale": s, "lr": lr,
                                  "success_rate": float(np.mean([x == "ok" for x in statuses])),
                                  "mean_stages": float(np.mean(counts)),
                                  "status_counts": {k: statuses.count(k) for k in sorted(set(statuses))},
                                  "sweep_wall_time_s": wall})
                print(f"depth {d} R {r}: {wall:.1f}s; success " +
                      ", ".join(f"{c['init_scale']:g}:{c['success_rate']:.2f}" for c in cells[-len(config.sweep_init_scales):]), flush=True)
    workdir_lib.write_json(workdir / "cells.json", cells)
    _plot_phase(cells, config, workdir)
    claim = {f"depth{d}": {f"R{r}": next(c["success_rate"] for c in cells if c["depth"] == d and c["rank"] == r
                                          and c["init_scale"] == min(config.sweep_init_scales, key=lambda x: abs(np.log(x / _claim_init(config, d)))))
                           for r in config.ranks} for d in config.depths}
    results = {"claim_success": claim, "claim_init_scales": {f"depth{d}": min(config.sweep_init_scales, key=lambda x: abs(np.log(x / _claim_init(config, d)))) for d in config.depths},
               "num_runs": len(cells) * config.seeds, "sweep_wall_time_s": t_total, "devices": jax.device_count()}
    workdir_lib.write_summary(workdir, results, config, seed=config.seed)
    return results


def _plot_phase(cells, config, workdir):
    plt = _plt()
    fig, ax = plt.subplots(1, len(config.depths), figsize=(4.6 * len(config.depths), 3.6), squeeze=False)
    for j, d in enumerate(config.depths):
        cell = lambda r, s: next(c for c in cells if c["depth"] == d and c["rank"] == r and c["init_scale"] == s)
        grid = np.array([[cell(r, s)["success_rate"] for s in config.sweep_init_scales] for r in config.ranks])
        mostly = [[max(cell(r, s)["status_counts"].items(), key=lambda kv: kv[1])[0] for s in config.sweep_init_scales]
                  for r in config.ranks]
        im = ax[0, j].imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        ax[0, j].set_xticks(range(len(config.sweep_init_scales)), [f"{s:g}" for s in config.sweep_init_scales], fontsize=7)
        ax[0, j].set_yticks(range(len(config.ranks)), [str(r) for r in config.ranks])
        for (a, b), v in np.ndenumerate(grid):
            tag = {"ok": "", "merged": "\nmerged", "incomplete": "\nslow", "ill-separated": "\nill-sep.", "diverged": "\ndiverged"}[mostly[a][b]]
            ax[0, j].text(b, a, f"{v:.2f}{tag}", ha="center", va="center", fontsize=6.5, color="w" if v < 0.5 else "k")
        ax[0, j].set_xlabel("init scale")
        ax[0, j].set_ylabel("target rank R")
        ax[0, j].set_title(f"depth {d}", fontsize=10)
    fig.suptitle("fraction of seeds with detected stages == R (tag: most common failure)", fontsize=10)
    fig.colorbar(im, ax=ax.ravel().tolist())
    workdir_lib.save_figure(fig, workdir, "phase_diagram")


def escape(config: DMFConfig, workdir) -> dict:
    """Escape (activation) times vs learning rate and depth, for GD, GroupRMSprop and RMSProp.

    For each depth and lr in `config.sweep_lrs`-scaled grid (0.25x..2x the depth's lr),
    `seeds` runs of the rank-`rank` target; reports the mean step at which each
    sigma_k(W) first reaches theta sigma_k*, and steps x lr (constant if GD follows the
    gradient flow) against the depth-2 law t_k = ln(sigma_k*/sigma_0) / (2 sigma_k* lr).
    """
    workdir = workdir_lib.prepare(workdir, config)
    rows = []
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(config.seed)
        target = models.low_rank_target(jax.random.fold_in(key, config.rank), config.n, config.rank, _spectrum(config, config.rank))
        s_star = np.linalg.svd(np.asarray(target), compute_uv=False)[: config.rank]
        for d, lr0 in zip(config.depths, config.sweep_lrs):
            init = _claim_init(config, d)
            for opt in ("gd", "group_rmsprop", "rmsprop"):
                lrs = [lr0 * f for f in (0.25, 0.5, 1.0, 2.0)]
                if opt != "gd":  # normalised steps: lr is a step length, not a gradient multiplier
                    lrs = [1e-3 * f for f in (0.25, 0.5, 1.0, 2.0)]
                out = dynamics.sweep(key, target, depth=d, seeds=config.seeds, init_scales=[init], lrs=lrs,
                                     steps=config.sweep_steps, log_every=config.sweep_log_every, optimizer=opt).to_numpy()
                for j, lr in enumerate(lrs):
                    sv = out.singular_values[:, 0, j]  # [S, T, n]
                    t = np.full((config.seeds, config.rank), np.nan)
                    for s in range(config.seeds):
                        for k in range(config.rank):
                            hit = np.nonzero(sv[s, :, k] >= config.theta * s_star[k])[0]
                            if hit.size:
                                t[s, k] = out.step[s, 0, j, hit[0]]
                    rows.append({"depth": d, "optimizer": opt, "lr": lr, "init_scale": init,
                                 "escape_steps": np.nanmean(t, 0).tolist(),
                                 "escape_steps_x_lr": (np.nanmean(t, 0) * lr).tolist(),
                                 "finite_loss": bool(np.all(np.isfinite(out.loss[:, 0, j])))})
                print(f"depth {d} {opt}: " + "; ".join(f"lr {r['lr']:g}: {np.round(r['escape_steps'], 0).tolist()}" for r in rows[-len(lrs):]), flush=True)
    workdir_lib.write_json(workdir / "escape.json", rows)
    plt = _plt()
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.4))
    for a, opt in zip(ax, ("gd", "group_rmsprop", "rmsprop")):
        for d in config.depths:
            rr = [r for r in rows if r["depth"] == d and r["optimizer"] == opt]
            for k in range(config.rank):
                a.loglog([r["lr"] for r in rr], [r["escape_steps"][k] for r in rr], "o-", color=f"C{d}",
                         alpha=1 - 0.25 * k, label=f"depth {d}" if k == 0 else None)
        a.set_xlabel("learning rate")
        a.set_ylabel("escape step of sigma_k (k = 1..R, fading)")
        a.set_title(opt)
        a.legend(fontsize=7)
    fig.tight_layout()
    workdir_lib.save_figure(fig, workdir, "escape_time")
    results = {"rows": rows}
    workdir_lib.write_summary(workdir, results, config, seed=config.seed)
    return results


def completion(config: DMFConfig, workdir) -> dict:
    """Arora et al. (2019) matrix completion anchor: test error and effective rank of DMF
    at each depth and init scale against nuclear-norm minimisation (soft-impute)."""
    workdir = workdir_lib.prepare(workdir, config)
    rows = []
    curves = {}
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(config.seed)
        target = models.arora_target(jax.random.fold_in(key, 1), config.completion_n, config.completion_rank)
        tn = np.asarray(target)
        log_every = max(config.completion_steps // 500, 1)
        for m in config.completion_observations:
            mask = data.random_mask(jax.random.fold_in(key, 1000 + m), target.shape, m)
            t0 = time.perf_counter()
            z = np.asarray(baselines.nuclear_norm_completion(target, mask, num_lambdas=config.nuclear_lambdas,
                                                             iters=config.nuclear_iters))
            rows.append({"observations": m, "method": "nuclear norm", "depth": None, "init_scale": None,
                         "test_error": float(np.linalg.norm(z - tn) / np.linalg.norm(tn)),
                         "effective_rank": effective_rank(np.linalg.svd(z, compute_uv=False)),
                         "train_loss": float(np.sum(np.asarray(mask) * (z - tn) ** 2) / m),
                         "wall_time_s": time.perf_counter() - t0})
            for d in config.completion_depths:
                t0 = time.perf_counter()
                out = dynamics.sweep(jax.random.fold_in(key, 2), target, depth=d, seeds=1,
                                     init_scales=config.completion_init_scales, lrs=[config.completion_lr],
                                     steps=config.completion_steps, log_every=log_every, optimizer=config.completion_optimizer,
                                     mask=mask).to_numpy()
                wall = time.perf_counter() - t0
                for i, s in enumerate(config.completion_init_scales):
                    one = out.select(0, i, 0)
                    w = np.asarray(models.end_to_end([jnp.asarray(f) for f in one.factors]))
                    # Arora et al. stop at train loss <= 1e-6: the first log point below it
                    hit = np.nonzero(one.loss <= config.completion_stop_loss)[0]
                    k = int(hit[0]) if hit.size else None
                    rows.append({"observations": m, "method": "DMF", "depth": d, "init_scale": s,
                                 "test_error": float(np.linalg.norm(w - tn) / np.linalg.norm(tn)),
                                 "effective_rank": effective_rank(np.linalg.svd(w, compute_uv=False)),
                                 "train_loss": float(np.sum(np.asarray(mask) * (w - tn) ** 2) / m),
                                 "stop_step": None if k is None else int(one.step[k]),
                                 "test_error_at_stop": None if k is None else float(one.test_error[k]),
                                 "effective_rank_at_stop": None if k is None else effective_rank(one.singular_values[k]),
                                 "wall_time_s": wall / len(config.completion_init_scales)})
                    curves[(m, d, s)] = (one.step, one.loss, one.test_error)
                print(f"obs {m} depth {d}: {wall:.1f}s; " + ", ".join(
                    f"init {r['init_scale']:g}: err {r['test_error']:.3g} erank {r['effective_rank']:.2f}" for r in rows[-len(config.completion_init_scales):]), flush=True)
    workdir_lib.write_json(workdir / "completion.json", rows)
    plt = _plt()
    obs = list(config.completion_observations)
    fig, ax = plt.subplots(1, len(obs), figsize=(5.5 * len(obs), 3.6), squeeze=False)
    for a, m in zip(ax[0], obs):
        for (mm, d, s), (st, lo, te) in curves.items():
            if mm == m:
                a.loglog(np.maximum(st, 1), te, color=f"C{d}", ls="-" if s == config.completion_init_scales[0] else "--",
                         label=f"depth {d}, init {s:g}")
        nn = next(r for r in rows if r["observations"] == m and r["method"] == "nuclear norm")
        a.axhline(nn["test_error"], color="k", ls=":", label="nuclear norm")
        a.set_xlabel("step")
        a.set_ylabel("||W - M*||_F / ||M*||_F")
        a.set_title(f"completion {config.completion_n}x{config.completion_n}, rank {config.completion_rank}, {m} entries")
        a.legend(fontsize=7)
    fig.tight_layout()
    workdir_lib.save_figure(fig, workdir, "completion")
    results = {"rows": rows, "steps": config.completion_steps}
    workdir_lib.write_summary(workdir, results, config, seed=config.seed)
    return results


def load(workdir) -> dict:
    """{"config", "summary", "trajectory" (spe runs: a Trajectory), "target"} of a run."""
    workdir = pathlib.Path(workdir)
    config = workdir_lib.load_config(workdir, DMFConfig)
    out: dict[str, Any] = {"config": config, "summary": None, "trajectory": None, "target": None}
    if (workdir / "summary.json").exists():
        out["summary"] = workdir_lib.read_summary(workdir)
    if (workdir / "trajectory.npz").exists():
        z = np.load(workdir / "trajectory.npz")
        out["trajectory"] = dynamics.Trajectory(step=z["step"], loss=z["loss"], grad_norm=z["grad_norm"],
                                                singular_values=z["singular_values"], test_error=z["test_error"],
                                                factors=None, grad_u=z["grad_u"], grad_v=z["grad_v"],
                                                reduction=str(z["reduction"]), observation=str(z["observation"]))
        out["target"] = z["target"]
        out["hessian"] = (z["hessian_step"], z["hessian_min_eig"])
    return out


def evaluate(config: Any, workdir) -> dict:
    """Re-detects the stages of a saved `spe` trajectory (with the given config's
    thresholds) and redraws its figure; for other runs returns the saved summary."""
    workdir = pathlib.Path(workdir)
    run = load(workdir)
    cfg = config if isinstance(config, DMFConfig) else run["config"]
    if run["trajectory"] is None:
        if run["summary"] is None:
            raise workdir_lib.WorkdirError(f"{workdir} holds no summary.json or trajectory.npz yet")
        return {k: v for k, v in run["summary"].items() if k not in ("rows",)}
    traj, target = run["trajectory"], run["target"]
    st = stages.detect_stages(traj, target, **_detect_kwargs(cfg))
    align = stages.escape_alignment(traj, target, st)
    levels = models.plateau_levels(target, traj.reduction) if traj.observation == "full" else None
    fig = plot_staircase(traj, levels, *run["hessian"], st, f"evaluate: {len(st)} stages ({st.status})")
    workdir_lib.save_figure(fig, workdir, "staircase_evaluate")
    results = {"status": st.status, "num_stages": len(st), "expected_stages": st.expected,
               "stages": [s._asdict() for s in st], "activations": st.activations,
               "escape_alignment": [None if np.isnan(x) else float(x) for x in align]}
    workdir_lib.write_json(workdir / "evaluation.json", results)
    return results


def _lapack_single_threaded(fn):
    """Runs an action with single-threaded CPU LAPACK (see `jaxlab.dmf.threads`)."""
    import functools

    @functools.wraps(fn)
    def wrapped(config, workdir):
        with single_threaded_lapack():
            return fn(config, workdir)

    return wrapped


evaluate.read_only = True

ACTIONS = {name: _lapack_single_threaded(fn) for name, fn in
           {"spe": spe, "sweep": sweep, "escape": escape, "completion": completion, "evaluate": evaluate}.items()}
ACTIONS["evaluate"].read_only = True
