"""Actions of `jaxlab dmf`: `spe`, `sweep`, `escape`, `completion` and `evaluate`.

Each action runs in float64 (inside `jax.enable_x64(True)`, with single-threaded CPU
LAPACK, see `jaxlab.dmf.threads`) and writes into its workdir `config.json`,
`figures/*.png` and its section of `summary.json` (plus `metrics.jsonl` and
`trajectory.npz` for `spe`).

    jaxlab dmf spe --config.rank=3 --config.depth=3 --workdir runs/spe
    jaxlab dmf sweep --workdir runs/sweep            # stage count vs R x depth x init
    jaxlab dmf escape --workdir runs/escape          # escape time vs lr, depth, optimizer
    jaxlab dmf completion --workdir runs/completion  # Arora et al. 2019 anchor
    jaxlab dmf evaluate --workdir runs/spe

`sweep`, `escape` and `completion` run their seeds x init scales x lrs as `dynamics.sweep`
calls whose run axis is sharded over `config.num_devices` devices (0: all of
`jax.devices()`). A CPU host has one device unless asked for more before JAX starts;
`JAX_NUM_CPU_DEVICES=k` gives k, each running its share of the runs on its own thread:

    JAX_NUM_CPU_DEVICES=2 jaxlab dmf sweep --workdir runs/sweep

The numbers do not depend on the device count. A killed action rerun with the same
command resumes: `spe` from its last finished segment (`spe_segments/`), the studies
from their finished units (`*_cells/`), with the same results as an uninterrupted run.
A diverging `spe` run stops with `NonFiniteError` (exit 1); in the studies a diverging
lr is reported as such (see `DMFConfig`).
"""

from __future__ import annotations

import functools
import pathlib

import jax
import numpy as np

from jaxlab.core import actions
from jaxlab.core import workdir as workdir_lib
from jaxlab.core.progress import progress
from jaxlab.dmf import laws, report, stages, studies
from jaxlab.dmf import spe as spe_lib
from jaxlab.dmf.configs import DMFConfig
from jaxlab.dmf.threads import float64_action

__all__ = ["spe", "sweep", "escape", "completion", "stability", "init_law", "evaluate", "load", "ACTIONS"]


@actions.action
@float64_action
def spe(config: DMFConfig, workdir: pathlib.Path) -> dict:
    """One run: the SPE staircase, its stages, escape directions, curvature and end point.

    Trains `steps` updates in `hessian_points` segments with lambda_min of the Hessian
    before each (`jaxlab.dmf.spe`), detects the stages against the best rank-k fit
    levels, evaluates at each stage's gradient dip lambda_min and the alignment of the
    negative-curvature eigenvector (mapped to W) with the next target pair and with the
    trajectory's exit (`spe.dips`), and reports the end point (loss, gradient norm,
    lambda_min, lambda_max). A non-finite loss stops the run (`NonFiniteError`).
    """
    result = spe_lib.run(config, workdir / "spe_segments")
    traj, target = result.trajectory, np.asarray(result.target)
    levels = spe_lib.fit_levels(config, target, result.mask, result.measurements, traj.reduction)
    found = stages.detect_stages(traj, target, levels=levels, **spe_lib.detect_kwargs(config))
    spe_lib.save(workdir, result, (found.expected or config.rank) + 1)
    title = (f"n={target.shape[0]} R={found.expected or config.rank} depth={config.depth} "
             f"init={config.init_scale:g} lr={config.lr:g} {config.optimizer}: {len(found)} stages ({found.status})")
    report.plot_staircase(workdir, "staircase", traj, levels, result.hessian_steps, result.hessian_values, found,
                          title)
    results = {
        **stages.stage_results(traj, target, found), "message": found.message, "merged": found.merged,
        "plateau_levels": None if levels is None else [float(x) for x in levels],
        "dips": spe_lib.dips(config, result, found), "end_point": spe_lib.end_point(config, result),
        "final_test_error": float(traj.test_error[-1]), "train_wall_time_s": result.wall_time_s,
        "hessian_min_eig_at_init": result.hessian_values[0] if result.hessian_values else None,
    }
    return workdir_lib.update_summary(workdir, "spe", results, config, seed=config.seed)


@actions.action
@float64_action
def sweep(config: DMFConfig, workdir: pathlib.Path) -> dict:
    """Stage count vs target rank R x depth x init scale (the phase diagram), `seeds` runs per cell.

    One vmapped, sharded `dynamics.sweep` call per (depth, R); writes `cells.json` and
    `figures/phase_diagram.png`; the summary holds the success rate at each depth's
    small init (`claim_init_scales`).
    """
    cells, wall = [], 0.0
    sizes = config.sweep_sizes or (config.n,)
    units = [(n, d, lr, r) for n in sizes for d, lr in zip(config.depths, config.sweep_lrs) for r in config.ranks]
    for n, d, lr, r in progress(units, desc="dmf sweep (n, depth, R)"):
        name = f"depth{d}_rank{r}.json" if n == config.n else f"n{n}_depth{d}_rank{r}.json"
        unit = studies.cached(workdir / "sweep_cells" / name,
                              functools.partial(studies.phase_cell, config, d, lr, r, n))
        cells += unit
        wall += unit[0]["sweep_wall_time_s"]
    workdir_lib.write_json(workdir / "cells.json", cells)
    report.plot_phase(workdir, cells, config)
    results = {"claim_success": studies.claim(config, cells, sizes[0]),
               "claim_success_by_n": {f"n{n}": studies.claim(config, cells, n) for n in sizes},
               "claim_init_scales": {f"depth{d}": studies.claim_init(config, d) for d in config.depths},
               "num_runs": len(cells) * config.seeds, "sweep_wall_time_s": wall,
               "devices": config.num_devices or jax.device_count()}
    return workdir_lib.update_summary(workdir, "sweep", results, config, seed=config.seed)


@actions.action
@float64_action
def escape(config: DMFConfig, workdir: pathlib.Path) -> dict:
    """Escape (activation) times vs learning rate and depth, for each optimizer of `escape_optimizers`.

    For each depth and each lr of the grid (`escape_lr_factors`), `seeds` runs of the
    rank-`rank` target from the depth's small init: the mean step at which each
    sigma_k(W) first reaches theta sigma_k*, and steps x lr (constant if GD follows the
    gradient flow; the depth-2 law is t_k = ln(sigma_k*/sigma_0) / (2 sigma_k* lr)).
    """
    target, s_star = studies.escape_target(config)
    rows = []
    units = [(d, lr, opt) for d, lr in zip(config.depths, config.sweep_lrs) for opt in config.escape_optimizers]
    for d, lr, opt in progress(units, desc="dmf escape (depth, optimizer)"):
        rows += studies.cached(workdir / "escape_cells" / f"depth{d}_{opt}.json",
                               functools.partial(studies.escape_unit, config, target, s_star, d, lr, opt))
    workdir_lib.write_json(workdir / "escape.json", rows)
    report.plot_escape(workdir, rows, config)
    return workdir_lib.update_summary(workdir, "escape", {"rows": rows}, config, seed=config.seed)


@actions.action
@float64_action
def completion(config: DMFConfig, workdir: pathlib.Path) -> dict:
    """Arora et al. (2019) matrix completion: DMF vs minimum-nuclear-norm completion.

    For each entry count and each of `completion_problems` targets and masks: test error
    and effective rank of DMF at each depth and init scale (`completion_seeds` inits) and
    of the certified nuclear-norm minimiser, on the same entries; writes `completion.json`,
    `completion.md` (per-cell table and the error-vs-entries table), `figures/completion.png`
    (curves over steps) and `figures/completion_curve.png` (error vs observed entries).
    """
    rows, curves = [], []
    units = [(m, p, d) for m in config.completion_observations for p in range(config.completion_problems)
             for d in (0, *config.completion_depths)]
    for m, p, d in progress(units, desc="dmf completion (entries, problem, depth)"):
        target, mask = studies.completion_problem(config, m, p)
        name = f"obs{m}" + (f"_problem{p}" if p else "") + ("_nuclear" if d == 0 else f"_depth{d}")
        if d == 0:
            rows.append(studies.cached(workdir / "completion_cells" / f"{name}.json",
                                       functools.partial(studies.nuclear_unit, config, target, mask, m, p)))
            continue
        unit = studies.cached(workdir / "completion_cells" / f"{name}.json",
                              functools.partial(studies.completion_unit, config, target, mask, m, d, p))
        rows += unit["rows"]
        curves += unit["curves"]
    workdir_lib.write_json(workdir / "completion.json", rows)
    report.plot_completion(workdir, rows, curves, config)
    report.plot_completion_curve(workdir, rows, config)
    table, curve = report.completion_table(rows), report.completion_curve_table(rows)
    (workdir / "completion.md").write_text(table + "\n" + curve, encoding="utf-8")
    results = {"rows": rows, "steps": config.completion_steps, "table": table, "curve_table": curve,
               "wall_time_s": sum(r["wall_time_s"] for r in rows)}
    return workdir_lib.update_summary(workdir, "completion", results, config, seed=config.seed)


@actions.action
@float64_action
def stability(config: DMFConfig, workdir: pathlib.Path) -> dict:
    """Learning rates up to GD's measured stability limit 2 / lambda_max (`jaxlab.dmf.laws`):
    stages, escape steps x lr and end points per lr; `stability.json`, `figures/stability.png`."""
    tgt, units = laws.target(config), []
    for d in progress(config.stability_depths, desc="dmf stability (depth)"):
        lim = studies.cached(workdir / "stability_cells" / f"depth{d}_limit.json",
                             functools.partial(laws.stability_limit, config, tgt, d))
        for f in config.stability_fractions:
            units.append(studies.cached(workdir / "stability_cells" / f"depth{d}_frac{f:g}.json",
                                        functools.partial(laws.stability_unit, config, tgt, d, f * lim["lr_limit"], f))
                         | {"limit": lim})
    workdir_lib.write_json(workdir / "stability.json", units)
    table = report.stability_table(units, config.rank)
    (workdir / "stability.md").write_text(table, encoding="utf-8")
    report.plot_stability(workdir, units, config)
    return workdir_lib.update_summary(workdir, "stability", {"table": table}, config, seed=config.seed)


@actions.action
@float64_action
def init_law(config: DMFConfig, workdir: pathlib.Path) -> dict:
    """Escape time vs init scale (`jaxlab.dmf.laws`): fitted exponents with 95% intervals at
    depth >= 3, the no-fit prediction at depth 2; `init_law.json`, `figures/init_law.png`."""
    tgt = laws.target(config)
    units = [studies.cached(workdir / "law_cells" / f"depth{d}.json", functools.partial(laws.law_unit, config, tgt, d))
             for d in progress(config.law_depths, desc="dmf init_law (depth)")]
    fits = [{"depth": u["depth"], "theory": -(1 - 2 / u["depth"]),
             **laws.fit_exponent(u["init_scales"], u["escape_steps"], k)}
            for u in units if u["depth"] >= 3 for k in range(config.rank)]
    workdir_lib.write_json(workdir / "init_law.json", {"units": units, "fits": fits})
    table = report.law_table(units, fits)
    (workdir / "init_law.md").write_text(table, encoding="utf-8")
    report.plot_law(workdir, units, config)
    return workdir_lib.update_summary(workdir, "init_law", {"fits": fits, "table": table}, config, seed=config.seed)


def load(workdir: str | pathlib.Path) -> actions.Loaded:
    """A finished or interrupted run: config, no Linen model (DMF's model is its list of
    factors), state = the final factors of an `spe` run (None for the studies), step =
    the updates they had, extras = {"summary" (None before any action finished),
    "trajectory", "target", "hessian": (steps, lambda_min)} (the last three: `spe` runs)."""
    workdir = pathlib.Path(workdir)
    config = workdir_lib.load_config(workdir, DMFConfig)
    summary = workdir_lib.read_summary(workdir) if (workdir / "summary.json").exists() else None
    saved = spe_lib.load_trajectory(workdir)
    if saved is None:
        return actions.Loaded(config, None, None, 0, {"summary": summary})
    extras = {"summary": summary, "trajectory": saved["trajectory"], "target": saved["target"],
              "hessian": saved["hessian"]}
    return actions.Loaded(config, None, saved["factors"], config.steps, extras)


@actions.action(read_only=True)
@float64_action
def evaluate(config: DMFConfig, workdir: pathlib.Path) -> dict:
    """Re-detects the stages of a saved `spe` run and redraws its figure (other runs: their summary).

    Uses the given config's detector thresholds (from Python; the CLI uses the run's
    own) and writes `evaluation.json` and `figures/staircase_evaluate.png`.
    """
    run = load(workdir)
    if "trajectory" not in run.extras:
        if run.extras["summary"] is None:
            raise workdir_lib.WorkdirError(f"{workdir} holds no summary.json or trajectory.npz yet")
        return {section: {k: v for k, v in res.items() if k != "rows"}
                for section, res in run.extras["summary"]["results"].items()}
    traj, target = run.extras["trajectory"], run.extras["target"]
    summary = (run.extras["summary"] or {}).get("results", {}).get("spe", {})
    levels = summary.get("plateau_levels")
    found = stages.detect_stages(traj, target, levels=levels, **spe_lib.detect_kwargs(config))
    report.plot_staircase(workdir, "staircase_evaluate", traj, levels, *run.extras["hessian"], found,
                          f"evaluate: {len(found)} stages ({found.status})")
    results = stages.stage_results(traj, target, found)
    workdir_lib.write_json(workdir / "evaluation.json", results)
    return results


ACTIONS = actions.collect(spe, sweep, escape, completion, stability, init_law, evaluate)
