"""jaxlab.dmf: discrete-gradient dynamics of deep matrix factorization and its
saddle-point-escaping (SPE) stages (Cao et al., arXiv:2212.14150; model and protocol of
Arora et al., NeurIPS 2019).

    import jax, jaxlab.dmf as dmf
    with jax.enable_x64(True):
        key = jax.random.key(0)
        target = dmf.low_rank_target(key, 20, 3)               # sigma* = (10, 5, 2)
        factors = dmf.init_factors(key, 20, depth=2, init_scale=1e-6)
        traj = dmf.train(factors, target, lr=2e-3, steps=4000, log_every=5)
        stages = dmf.detect_stages(traj, target)                # 3 stages, status "ok"
"""

from jaxlab.dmf.baselines import (
    MinNuclearNorm,
    min_nuclear_norm_completion,
    nuclear_norm_completion,
    nuclear_norm_sensing,
    soft_threshold_svd,
)
from jaxlab.dmf.dynamics import Trajectory, advance, sweep, train
from jaxlab.dmf.hessian import (
    dense_hessian,
    end_to_end_directions,
    escape_direction,
    hessian_extremes,
    hessian_min_eig,
    hvp,
    lanczos,
    lanczos_eigh,
)
from jaxlab.dmf.models import (
    arora_target,
    best_rank_k_losses,
    end_to_end,
    init_factors,
    loss_fn,
    low_rank_target,
    plateau_levels,
)
from jaxlab.dmf.optim import group_rmsprop, make_optimizer
from jaxlab.dmf.stages import Stage, Stages, detect_stages, escape_alignment
from jaxlab.dmf.threads import single_threaded_lapack


def load(workdir):
    """A finished or interrupted `jaxlab dmf` run as `jaxlab.core.actions.Loaded`
    (see `jaxlab.dmf.run.load`)."""
    from jaxlab.dmf import run

    return run.load(workdir)


__all__ = [
    "Trajectory", "Stage", "Stages",
    "low_rank_target", "arora_target", "init_factors", "end_to_end", "loss_fn", "plateau_levels", "best_rank_k_losses",
    "train", "sweep", "advance", "detect_stages", "escape_alignment",
    "hessian_min_eig", "hessian_extremes", "hvp", "lanczos", "lanczos_eigh", "dense_hessian",
    "end_to_end_directions", "escape_direction",
    "group_rmsprop", "make_optimizer",
    "min_nuclear_norm_completion", "MinNuclearNorm", "nuclear_norm_completion", "nuclear_norm_sensing",
    "soft_threshold_svd", "single_threaded_lapack", "load",
]
