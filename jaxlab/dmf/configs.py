"""Configs of `jaxlab dmf`: `get_config("smoke" | "default" | "paper")`.

One flat dataclass serves the seven actions (`spe`, `sweep`, `escape`, `completion`,
`stability`, `init-law`, `evaluate`); every knob is a field, e.g. `jaxlab dmf spe --config.rank=3 --config.depth=3`.
Stage-detector thresholds are reconstructions (the paper states none): see
`jaxlab.dmf.stages`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxlab.core.config import (
    ConfigError,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    variants,
)

Observation = Literal["full", "completion", "sensing"]
InitKind = Literal["gaussian", "orthogonal", "identity"]
Optimizer = Literal["gd", "group_rmsprop", "rmsprop"]
Reduction = Literal["", "half_sum", "mean"]


@dataclasses.dataclass
class DMFConfig:
    """Everything a `jaxlab dmf` run depends on.

    Problem (spe, sweep):
      n: matrix size (square targets); rank: target rank R.
      singular_values: sigma* of the target (empty: the law 10 * spectrum_ratio^(k-1), except
        (10, 5, 2) for R = 3 with ratio 0.5 -- also in the sweep's R = 3 cells; with `ranks`
        in a sweep, the first R of `singular_values`).
      spectrum_ratio: ratio of the default geometric law (0.5; `paper` 0.8 so that R = 20
        stays resolvable: sigma*_20 = 0.14).
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
      Why `steps`/`log_every` and no `loop: LoopConfig`: DMF does not train with
      `core.train.fit`. It integrates full-batch gradient dynamics in float64 as one
      jitted `lax.scan` (`jaxlab.dmf.dynamics`): no minibatches, no evaluation set and no
      per-step host loop, and `sweep` vmaps thousands of such runs in one call. A run is
      cheap to recompute and deterministic; `spe` keeps its segments (and the sweeps
      their cells) on disk so that a killed run resumes with identical results.
    Stage detector (reconstruction, see `jaxlab.dmf.stages`):
      theta, plateau_tol, dip_prominence, min_dwell, min_plateau_frac.
    Curvature: hessian_points (Lanczos lambda_min evaluated at that many points along the
      run, 0: none), lanczos_iters.
    End point (every spe run, every stability run): endpoint_grad_tol, endpoint_curvature_tol
      (a second-order critical point: gradient norm <= endpoint_grad_tol and lambda_min >=
      -endpoint_curvature_tol * lambda_max; reconstruction, the paper states no tolerance).
    Plateau levels of completion/sensing: fit_restarts (starts of the alternating least
      squares for the best rank-k fit, `models.best_rank_k_losses`).
    Sweep (stage count vs R, depth, init scale): ranks, depths, sweep_lrs (one per depth),
      sweep_init_scales, claim_init_scales (the "small init" per depth of the claim table
      and of `escape`), seeds, sweep_steps, sweep_log_every, num_devices (devices the
      runs of a sweep are sharded over, 0: all), sweep_sizes (matrix sizes of the sweep;
      empty: n alone).
    Stability (lr up to GD's limit 2 / lambda_max, action `stability`): stability_depths,
      stability_fractions (lrs as fractions of the measured limit), stability_flow_time
      (one per depth: every run gets flow_time / lr steps), stability_log_points.
    Init law (escape time vs init scale, action `init-law`): law_depths, law_init_top,
      law_init_decades, law_init_points (per depth, init scales from law_init_top down
      law_init_decades decades in law_init_points log-spaced values), law_lrs, law_steps.
    Escape (escape time vs lr, depth, optimizer): escape_optimizers; escape_lr_factors
      (the lr grid: these multiples of the depth's `sweep_lrs` entry for gd, of
      `escape_normalised_lr` for rmsprop/group_rmsprop, whose normalised steps make lr a
      step length rather than a gradient multiplier).
    Completion (Arora et al. 2019 anchor): completion_n, completion_rank,
      completion_observations, completion_depths, completion_init_scales, completion_lr,
      completion_steps, completion_optimizer, completion_stop_loss (Arora et al.'s stopping
      train loss: the error and effective rank at the first log point below it are
      reported beside the final ones), completion_seeds (initialisations per cell on one
      target and mask), completion_problems (independent targets and masks per entry
      count; intervals cover both), completion_log_points (log points per run).
      Baseline: minimum-nuclear-norm completion solved by ADMM to the certified relative
      duality gap nuclear_tol (at most nuclear_max_iters iterations; the rows record the
      gap reached and `converged`).

    Divergence (a non-finite loss): a single `spe` run stops with
    `jaxlab.core.train.NonFiniteError` (the CLI prints "stopped: ..." and exits 1). In
    `sweep`, `escape` and `completion` a diverging learning rate is a finding, not a
    failure: it is reported per run (stage status "diverged", `finite_loss: false`,
    null errors) and the action finishes.
    """

    seed: int = 0
    n: PositiveInt = 20
    rank: PositiveInt = 3
    singular_values: tuple[PositiveFloat, ...] = ()
    spectrum_ratio: PositiveFloat = 0.5
    observation: Observation = "full"
    num_observations: PositiveInt = 200
    target_file: str = ""
    entries_file: str = ""
    depth: PositiveInt = 3
    init_scale: PositiveFloat = 1e-4
    init_kind: InitKind = "gaussian"
    optimizer: Optimizer = "gd"
    lr: PositiveFloat = 3e-3
    steps: PositiveInt = 7000
    log_every: PositiveInt = 5
    loss_reduction: Reduction = ""
    theta: Probability = 0.5
    plateau_tol: PositiveFloat = 0.02
    dip_prominence: NonNegativeFloat = 0.5
    min_dwell: PositiveInt = 3
    min_plateau_frac: Probability = 0.1
    hessian_points: NonNegativeInt = 70
    lanczos_iters: PositiveInt = 64
    ranks: tuple[PositiveInt, ...] = (1, 2, 3, 4, 5)
    depths: tuple[PositiveInt, ...] = (2, 3, 4)
    sweep_lrs: tuple[PositiveFloat, ...] = (2e-3, 3e-3, 3e-3)
    sweep_init_scales: tuple[PositiveFloat, ...] = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1)
    claim_init_scales: tuple[PositiveFloat, ...] = (1e-6, 1e-4, 1e-3)
    seeds: PositiveInt = 20
    sweep_steps: PositiveInt = 30000
    sweep_log_every: PositiveInt = 20
    num_devices: NonNegativeInt = 0
    sweep_sizes: tuple[PositiveInt, ...] = ()
    escape_optimizers: tuple[Optimizer, ...] = ("gd", "group_rmsprop", "rmsprop")
    escape_lr_factors: tuple[PositiveFloat, ...] = (0.25, 0.5, 1.0, 2.0)
    escape_normalised_lr: PositiveFloat = 1e-3
    completion_n: PositiveInt = 100
    completion_rank: PositiveInt = 5
    completion_observations: tuple[PositiveInt, ...] = (2000, 5000)
    completion_depths: tuple[PositiveInt, ...] = (2, 3, 4)
    completion_init_scales: tuple[PositiveFloat, ...] = (1e-3, 1e-4)
    completion_lr: PositiveFloat = 1e-2
    completion_steps: PositiveInt = 10000
    completion_optimizer: Optimizer = "group_rmsprop"
    completion_stop_loss: NonNegativeFloat = 1e-6
    nuclear_tol: PositiveFloat = 1e-6
    nuclear_max_iters: PositiveInt = 20000
    completion_seeds: PositiveInt = 1
    completion_problems: PositiveInt = 1
    completion_log_points: PositiveInt = 500
    endpoint_grad_tol: PositiveFloat = 1e-4
    endpoint_curvature_tol: PositiveFloat = 1e-3
    fit_restarts: PositiveInt = 3
    stability_depths: tuple[PositiveInt, ...] = (2, 3)
    stability_fractions: tuple[PositiveFloat, ...] = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1)
    stability_flow_time: tuple[PositiveFloat, ...] = (8.0, 25.0)
    stability_log_points: PositiveInt = 1000
    law_depths: tuple[PositiveInt, ...] = (2, 3, 4)
    law_init_top: tuple[PositiveFloat, ...] = (1e-4, 1e-3, 1e-2)
    law_init_decades: PositiveFloat = 3.0
    law_init_points: PositiveInt = 7
    law_lrs: tuple[PositiveFloat, ...] = (2e-3, 6e-3, 6e-3)
    law_steps: tuple[PositiveInt, ...] = (4000, 11000, 22000)

    def validate(self) -> None:
        """Cross-field rules (each error names the field)."""
        if self.singular_values and len(self.singular_values) < self.rank:
            raise ConfigError(f"config field 'singular_values' has {len(self.singular_values)} values, "
                              f"need at least rank={self.rank}")
        if self.rank > self.n:
            raise ConfigError(f"config field 'rank' must be <= n={self.n}, got {self.rank}")
        if max(self.ranks, default=0) > min(self.sweep_sizes or (self.n,)):
            raise ConfigError(f"config field 'ranks' must be <= n={min(self.sweep_sizes or (self.n,))} "
                              f"(n, or the smallest of sweep_sizes), got {self.ranks}")
        if self.completion_rank > self.completion_n:
            raise ConfigError(f"config field 'completion_rank' must be <= completion_n={self.completion_n}")
        if self.observation == "completion" and self.num_observations > self.n * self.n:
            raise ConfigError(f"config field 'num_observations' must be <= n^2={self.n * self.n} for completion, "
                              f"got {self.num_observations}")
        if any(m > self.completion_n**2 for m in self.completion_observations):
            raise ConfigError(f"config field 'completion_observations' must be <= completion_n^2="
                              f"{self.completion_n**2}, got {self.completion_observations}")
        for name in ("sweep_lrs", "claim_init_scales"):
            if len(getattr(self, name)) != len(self.depths):
                raise ConfigError(f"config field '{name}' needs one value per depth in depths={self.depths}, "
                                  f"got {getattr(self, name)}")
        for name in ("ranks", "depths", "sweep_init_scales", "escape_optimizers", "escape_lr_factors",
                     "completion_observations", "completion_depths", "completion_init_scales"):
            if not getattr(self, name):
                raise ConfigError(f"config field '{name}' needs at least one value")
        for name, depths in (("stability_flow_time", self.stability_depths), ("law_init_top", self.law_depths),
                             ("law_lrs", self.law_depths), ("law_steps", self.law_depths)):
            if len(getattr(self, name)) != len(depths):
                raise ConfigError(f"config field '{name}' needs one entry per depth in {depths}, "
                                  f"got {getattr(self, name)}")
        if self.target_file and self.entries_file:
            raise ConfigError("config fields 'target_file' and 'entries_file' exclude each other")


def _default() -> DMFConfig:
    return DMFConfig()


def _smoke() -> DMFConfig:
    return DMFConfig(n=8, rank=2, singular_values=(5.0, 2.0), depth=2, init_scale=1e-5, lr=1e-2, steps=800,
                     log_every=5, hessian_points=4, lanczos_iters=32, ranks=(1, 2), depths=(2,),
                     sweep_lrs=(1e-2,), sweep_init_scales=(1e-5, 1e-1), claim_init_scales=(1e-5,), seeds=2,
                     sweep_steps=800, sweep_log_every=5, escape_lr_factors=(0.5, 1.0, 2.0), completion_n=12,
                     completion_rank=2, completion_observations=(80,), completion_depths=(2,),
                     completion_init_scales=(1e-3,), completion_lr=1e-2, completion_steps=500,
                     completion_seeds=2, stability_depths=(2,), stability_fractions=(0.5, 1.1),
                     stability_flow_time=(8.0,), stability_log_points=200, law_depths=(2, 3),
                     law_init_top=(1e-4, 1e-3), law_init_decades=1.0, law_init_points=3, law_lrs=(1e-2, 1e-2),
                     law_steps=(800, 1500))


def _paper() -> DMFConfig:
    # For accelerators (validated by the tests, not run on the CPU): the stage-count sweep
    # at n = 100..1000, R up to 20 (sigma*_k = 10 * 0.8^(k-1): sigma*_20 = 0.14), 100
    # seeds per cell at each depth's small init; Arora et al.'s completion budget (lr 1e-3,
    # up to 1e6 iterations; the stop at train loss 1e-6 is read off the log, the scan runs
    # on), 1k-5k observations, 10 initialisations per cell.
    return DMFConfig(seeds=100, sweep_sizes=(100, 300, 1000), ranks=(1, 2, 5, 10, 20), spectrum_ratio=0.8,
                     sweep_init_scales=(1e-6, 1e-4, 1e-3), sweep_steps=200000, sweep_log_every=100,
                     completion_steps=1000000, completion_observations=(1000, 2000, 3000, 4000, 5000),
                     completion_init_scales=(1e-3, 1e-4, 1e-5, 1e-6), completion_lr=1e-3, completion_seeds=10)


def get_config(variant: str = "default") -> DMFConfig:
    """The DMF config for `variant` in {"smoke", "default", "paper"}."""
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
