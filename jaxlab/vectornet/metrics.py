"""Displacement metrics of trajectory forecasting (Argoverse conventions), in NumPy and JAX.

Shapes: predictions `[N, K, T, 2]` (K guesses) or `[N, T, 2]`, ground truth `[N, T, 2]`,
optional validity `[N, T]` (Argoverse 2 focal tracks may end early). At 10 Hz, DE@t s is
the displacement at step index `10 t - 1`.

    ADE   = mean_t ||y_hat_t - y_t||        FDE = ||y_hat_T - y_T||  (last valid step)
    minFDE = min_k FDE_k,  minADE = ADE of the guess with the minimum FDE (Argoverse)
    miss   = minFDE > threshold (2.0 m on the leaderboards)

With a probability per guess (`probs [N, K]`, normalised to sum 1 over the K guesses as the
Argoverse 1 evaluation does), p of the min-FDE guess gives the probabilistic variants:

    p-minADE/p-minFDE = minADE/minFDE + min(-log p, -log 0.05)     (Argoverse 1)
    brier-minADE/brier-minFDE = minADE/minFDE + (1 - p)^2           (Argoverse 2)
    p-miss = 1 if missed else 1 - p                                 (Argoverse 1's p-MR)

Against av2 0.3.6 (`av2.datasets.motion_forecasting.eval.metrics`, checked in
`tests/vectornet/test_av2_oracle.py`): av2's `compute_ade`/`compute_fde`/`compute_is_missed_prediction`
return one value per guess `[K]` for one actor and take no validity mask. Our minFDE is the min of
av2's FDEs and our miss is "every guess missed"; our minADE is av2's ADE of the min-FDE guess, which
can exceed the min of av2's ADEs (av2 leaves the choice of guess to the caller). With a mask, ours
equals av2 on the valid steps only (mean over them, FDE at the last one).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["displacement_metrics", "numpy_metrics", "STEPS_PER_SECOND", "LOW_PROB"]

STEPS_PER_SECOND = 10
LOW_PROB = 0.05  # Argoverse 1's floor of p in p-minADE/p-minFDE


def displacement_metrics(pred, truth, valid=None, *, miss_threshold: float = 2.0, probs=None, xp=jnp) -> dict:
    """Per-scene metrics `{ade, fde, de1, de2, de3, miss}` (each `[N]`), minimum over K guesses.

    `pred` is `[N, T, 2]` (K = 1) or `[N, K, T, 2]`; `valid [N, T]` masks missing ground
    truth (FDE at the last valid step; DE@t is NaN-free: 0 where step t is not valid).
    With `probs [N, K]` (non-negative, normalised here), also `p_ade`, `p_fde`, `p_miss`,
    `brier_ade` and `brier_fde` (module docstring).
    """
    if pred.ndim == 3:
        pred = pred[:, None]
    n, _, t, _ = pred.shape
    valid = xp.ones((n, t), bool) if valid is None else xp.asarray(valid, bool)
    d = xp.sqrt(xp.sum((pred - truth[:, None]) ** 2, axis=-1))  # [N, K, T]
    vf = valid[:, None].astype(d.dtype)
    count = xp.maximum(xp.sum(vf, axis=-1), 1.0)
    ade = xp.sum(d * vf, axis=-1) / count  # [N, K]
    last = t - 1 - xp.argmax(valid[:, ::-1], axis=-1)  # last valid index [N]
    fde = xp.take_along_axis(d, xp.broadcast_to(last[:, None, None], d.shape[:2] + (1,)), axis=-1)[..., 0]
    best = xp.argmin(fde, axis=-1)  # [N]
    pick = lambda a: xp.take_along_axis(a, best[:, None], axis=-1)[:, 0]
    out = {"ade": pick(ade), "fde": pick(fde)}
    out["miss"] = (out["fde"] > miss_threshold).astype(d.dtype)
    if probs is not None:
        probs = xp.asarray(probs, d.dtype)
        if probs.shape != d.shape[:2]:
            raise ValueError(f"probs must be [N, K] = {tuple(d.shape[:2])}, got {tuple(probs.shape)}")
        p = pick(probs / xp.sum(probs, axis=-1, keepdims=True))
        neg_log = xp.minimum(-xp.log(p), -np.log(LOW_PROB))
        out.update(p_ade=out["ade"] + neg_log, p_fde=out["fde"] + neg_log, brier_ade=out["ade"] + (1 - p) ** 2,
                   brier_fde=out["fde"] + (1 - p) ** 2, p_miss=xp.where(out["miss"] > 0, 1.0, 1 - p))
    db = xp.take_along_axis(d, best[:, None, None], axis=1)[:, 0]  # [N, T]
    for sec in (1, 2, 3):
        i = sec * STEPS_PER_SECOND - 1
        if i < t:
            out[f"de{sec}"] = db[:, i] * valid[:, i]
    return out


def numpy_metrics(pred, truth, valid=None, *, miss_threshold: float = 2.0, probs=None) -> dict:
    """`displacement_metrics` with NumPy arrays (host side)."""
    return displacement_metrics(np.asarray(pred, np.float64), np.asarray(truth, np.float64),
                                None if valid is None else np.asarray(valid), miss_threshold=miss_threshold,
                                probs=None if probs is None else np.asarray(probs, np.float64), xp=np)
