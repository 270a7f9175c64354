"""Configs of `jaxlab dmf`: `get_config("smoke" | "default" | "paper")`.

One flat dataclass serves the four actions (`spe`, `sweep`, `completion`, `evaluate`);
every knob is a field, e.g. `jaxlab dmf spe --config.rank=3 --config.depth=3`.
Stage-detector thresholds are reconstructions (the paper states none): see
`jaxlab.dmf.stages`.
"""

from __future__ import annotations

import dataclasses

from jaxlab.core.config import variants


@dataclasses.dataclass
class DMFConfig:
    """Everything a `jaxlab dmf` run depends on.

    Problem (spe, sweep):
      n: matrix size (square targets); rank: target rank R.
      singular_values: sigma* of the target (empty: (10, 5, 2) for R = 3, 10 * 2^-(k-1)
        otherwise; with `ranks` in a sweep, the first R of the default law).
      observation: "full", "completion" (uniform `num_observations` entries) or "sensing"
        (`num_observations` Gaussian measurements A_i ~ N(0, 1/n^2)).
      target_file: optional `.npy` `[n, n]` target (overrides the generated one).
      entries_file: optional completion entries, CSV `row,col,value` (0-based) or
        MovieLens `u.data` (tab-separated, 1-based ids); the target is then unknown off the
        observed entries.
    Model and optimisation:
      depth: N; init_scale: end-to-end scale (per-layer std init_scale^(1/N)/sqrt(n));
      init_kind: gaussian / orthogonal / identity; optimizer: gd / group_rmsprop / rmsprop;
      lr, steps, log_every; loss_reduction: "" (default: half_sum under full observation,
      mean otherwise), "half_sum" or "mean"; seed.
    Stage detector (reconstruction, see `jaxlab.dmf.stages`):
      theta, plateau_tol, dip_prominence, min_dwell, min_plateau_frac.
    Curvature: hessian_points (Lanczos lambda_min evaluated at that many points along the
      run, 0: none), lanczos_iters.
    Sweep (stage count vs R, depth, init scale): ranks, depths, sweep_lrs (one per depth),
      sweep_init_scales, claim_init_scales (the "small init" per depth of the claim table
      and of `escape`), seeds, sweep_steps, sweep_log_every.
    Completion (Arora et al. 2019 anchor): completion_n, completion_rank,
      completion_observations, completion_depths, completion_init_scales, completion_lr,
      completion_steps, completion_optimizer, completion_stop_loss (Arora et al.'s stopping
      train loss: the error and effective rank at the first log point below it are
      reported beside the final ones), nuclear_lambdas, nuclear_iters.
    """

    seed: int = 0
    n: int = 20
    rank: int = 3
    singular_values: tuple[float, ...] = ()
    observation: str = "full"
    num_observations: int = 200
    target_file: str = ""
    entries_file: str = ""
    depth: int = 3
    init_scale: float = 1e-4
    init_kind: str = "gaussian"
    optimizer: str = "gd"
    lr: float = 3e-3
    steps: int = 7000
    log_every: int = 5
    loss_reduction: str = ""
    theta: float = 0.5
    plateau_tol: float = 0.02
    dip_prominence: float = 0.5
    min_dwell: int = 3
    min_plateau_frac: float = 0.1
    hessian_points: int = 70
    lanczos_iters: int = 64
    ranks: tuple[int, ...] = (1, 2, 3, 4, 5)
    depths: tuple[int, ...] = (2, 3, 4)
    sweep_lrs: tuple[float, ...] = (2e-3, 3e-3, 3e-3)
    sweep_init_scales: tuple[float, ...] = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1)
    claim_init_scales: tuple[float, ...] = (1e-6, 1e-4, 1e-3)
    seeds: int = 20
    sweep_steps: int = 30000
    sweep_log_every: int = 20
    completion_n: int = 100
    completion_rank: int = 5
    completion_observations: tuple[int, ...] = (2000, 5000)
    completion_depths: tuple[int, ...] = (2, 3, 4)
    completion_init_scales: tuple[float, ...] = (1e-3, 1e-4)
    completion_lr: float = 1e-2
    completion_steps: int = 10000
    completion_optimizer: str = "group_rmsprop"
    completion_stop_loss: float = 1e-6
    nuclear_lambdas: int = 30
    nuclear_iters: int = 100


def _default() -> DMFConfig:
    return DMFConfig()


def _smoke() -> DMFConfig:
    return DMFConfig(n=8, rank=2, singular_values=(5.0, 2.0), depth=2, init_scale=1e-4, lr=1e-2, steps=1500,
                     log_every=5, hessian_points=4, lanczos_iters=32, ranks=(1, 2), depths=(2,),
                     sweep_lrs=(1e-2,), sweep_init_scales=(1e-4, 1e-1), claim_init_scales=(1e-4,), seeds=2, sweep_steps=1500,
                     sweep_log_every=5, completion_n=12, completion_rank=2, completion_observations=(80,),
                     completion_depths=(2,), completion_init_scales=(1e-3,), completion_lr=1e-2,
                     completion_steps=500, nuclear_lambdas=5, nuclear_iters=20)


def _paper() -> DMFConfig:
    # Arora et al.'s budget: up to 1e6 iterations for completion (stop at loss 1e-6 is
    # not applied inside the scan; the run simply continues), 100 seeds per sweep cell.
    return DMFConfig(seeds=100, sweep_steps=100000, completion_steps=1000000,
                     completion_init_scales=(1e-3, 1e-4, 1e-5, 1e-6), completion_lr=1e-3)


def get_config(variant: str = "default") -> DMFConfig:
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
