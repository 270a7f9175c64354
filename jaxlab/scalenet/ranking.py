"""How well the super-supernet ranks sub-networks (spec check 7).

`rank_study` draws `rank.num_archs` sub-networks with the hierarchical sampler (all
scaling stages), scores each with inherited weights (`supernet.make_scorer`: left + right
logits, BN batch statistics, the first `search.eval_batch` validation images) and
retrains each from scratch with the `retrain` settings (`retrain.train_member`, one
resumable run in `rank/arch<i>/`, tested on the test split). `rank_statistics` gives
Kendall's tau-b between the two accuracies and, as the baseline any ranking must beat,
between MACs and the retrained accuracy: sub-networks of larger scaling stages are both
bigger and better, so a supernet that only knew their size would already rank them. The
95% intervals resample the architectures (bootstrap, paired for the difference).
"""

from __future__ import annotations

import pathlib

import numpy as np
from scipy import stats

from jaxlab.core import workdir as workdir_lib
from jaxlab.scalenet import retrain as retrain_lib
from jaxlab.scalenet import sampler as sampler_lib
from jaxlab.scalenet import supernet as supernet_lib
from jaxlab.scalenet.configs import ScaleNetConfig
from jaxlab.scalenet.data import Data
from jaxlab.scalenet.space import Space

__all__ = ["RANK_STREAM", "BOOTSTRAP_STREAM", "probe_archs", "rank_statistics", "rank_study"]

RANK_STREAM = 7        # default_rng([seed, RANK_STREAM]): the sub-networks of the study
BOOTSTRAP_STREAM = 8   # default_rng([seed, BOOTSTRAP_STREAM]): the bootstrap resamples


def probe_archs(cfg: ScaleNetConfig, space: Space) -> tuple[dict, np.ndarray, dict]:
    """`rank.num_archs` hierarchically sampled sub-networks: `(archs [n, ...], r [n], info)`."""
    return sampler_lib.sample_batch(space, np.random.default_rng([cfg.seed, RANK_STREAM]), cfg.rank.num_archs)


def _tau(a, b) -> float:
    t = stats.kendalltau(a, b).statistic
    return float(t) if np.isfinite(t) else float("nan")


def rank_statistics(inherited, retrained, macs, *, bootstrap: int = 2000, seed: int = 0) -> dict:
    """Kendall's tau-b (with its two-sided p-value) of inherited against retrained
    accuracy and of MACs against retrained accuracy, each with a 95% bootstrap interval
    over the architectures, and the paired bootstrap interval of their difference."""
    a, y, m = (np.asarray(v, np.float64) for v in (inherited, retrained, macs))
    if not len(a) == len(y) == len(m) or len(a) < 3:
        raise ValueError(f"rank_statistics needs >= 3 architectures with all three values, got "
                         f"{len(a)}, {len(y)}, {len(m)}")
    rng = np.random.default_rng([seed, BOOTSTRAP_STREAM])
    boot = np.array([[_tau(a[i], y[i]), _tau(m[i], y[i])]
                     for i in (rng.integers(0, len(a), len(a)) for _ in range(bootstrap))])
    out = {}
    for j, (name, x) in enumerate((("inherited", a), ("macs", m))):
        res = stats.kendalltau(x, y)
        lo, hi = np.nanpercentile(boot[:, j], [2.5, 97.5])
        out[f"tau_{name}"] = float(res.statistic)
        out[f"p_{name}"] = float(res.pvalue)
        out[f"tau_{name}_ci"] = [float(lo), float(hi)]
    d = boot[:, 0] - boot[:, 1]
    lo, hi = np.nanpercentile(d, [2.5, 97.5])
    out["tau_difference"] = out["tau_inherited"] - out["tau_macs"]
    out["tau_difference_ci"] = [float(lo), float(hi)]
    out["num_archs"] = len(a)
    return out


def rank_study(cfg: ScaleNetConfig, space: Space, net, params, data: Data, workdir: pathlib.Path) -> dict:
    """Scores and retrains the probe architectures; returns `{"rows", **rank_statistics}`.
    Each retraining resumes in `workdir/rank/arch<i>/`."""
    archs, res, info = probe_archs(cfg, space)
    score = supernet_lib.make_scorer(cfg, space, net, params, data)
    rows = []
    for i in range(len(res)):
        arch = {k: np.asarray(v[i]) for k, v in archs.items()}
        one = {k: v[None] for k, v in arch.items() if k != "side"}
        inherited = float(score(one, int(res[i]))[0])
        _, trained = retrain_lib.train_member(cfg, space, arch, int(res[i]), data,
                                              workdir_lib.stage_dir(workdir, f"rank/arch{i:02d}"))
        rows.append({"arch": i, "stage": int(info["stage"][i]), "d": float(info["d"][i]), "w": float(info["w"][i]),
                     "r": int(res[i]), "base": np.asarray(info["base"][i]).tolist(), "inherited_accuracy": inherited,
                     "retrained_accuracy": trained["test_accuracy"], "macs": trained["macs"],
                     "retrain_steps": trained["steps"]})
    st = rank_statistics([r["inherited_accuracy"] for r in rows], [r["retrained_accuracy"] for r in rows],
                         [r["macs"] for r in rows], bootstrap=cfg.rank.bootstrap, seed=cfg.seed)
    return {"rows": rows, **st, "inherited_images": int(cfg.search.eval_batch),
            "test_images": int(cfg.data.num_test)}
