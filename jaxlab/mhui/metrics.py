"""Detection metrics: AUROC and AUPR with adversarial inputs as the positive class.

Both are computed on the host in NumPy (they need a sort over the whole evaluation set).

AUROC is the Mann-Whitney statistic with ties counted one half:

    AUROC = P(s_pos > s_neg) + 1/2 P(s_pos = s_neg)
          = (sum of the mid-ranks of the positives - n_pos (n_pos + 1) / 2) / (n_pos n_neg)

AUPR is the average precision  sum_n (R_n - R_{n-1}) P_n  over the distinct thresholds
(the step-wise area, the same definition as `sklearn.metrics.average_precision_score`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "aupr", "detection_metrics"]


def _check(scores_neg, scores_pos):
    neg = np.asarray(scores_neg, dtype=np.float64).ravel()
    pos = np.asarray(scores_pos, dtype=np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        raise ValueError(f"need at least one negative and one positive score, got {neg.size} and {pos.size}")
    if not (np.all(np.isfinite(neg)) and np.all(np.isfinite(pos))):
        raise ValueError("detection scores contain NaN or Inf")
    return neg, pos


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of `x`, tied values sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # boundaries of runs of equal values
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], xs.size]
    run_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks_sorted = np.repeat(run_rank, ends - starts)
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    return ranks


def auroc(scores_neg, scores_pos) -> float:
    """Area under the ROC curve; positives (adversarial) should score higher."""
    neg, pos = _check(scores_neg, scores_pos)
    ranks = _midranks(np.concatenate([pos, neg]))
    n_pos, n_neg = pos.size, neg.size
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def aupr(scores_neg, scores_pos) -> float:
    """Average precision with the positives (adversarial) as the class of interest."""
    neg, pos = _check(scores_neg, scores_pos)
    s = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each threshold group
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / pos.size
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def detection_metrics(scores_clean, scores_adv, success=None) -> dict[str, float]:
    """AUROC/AUPR over all attacked inputs and over successful attacks only.

    Args:
      scores_clean: `[N]` detector scores of the clean inputs (negatives).
      scores_adv: `[N]` scores of their adversarial versions (positives).
      success: optional `[N]` bool, the attack changed the prediction. When given, the
        `*_success` entries use only successful adversarial inputs as positives (NaN
        when there are none); the negatives stay all clean inputs.
    """
    out = {"auroc": auroc(scores_clean, scores_adv), "aupr": aupr(scores_clean, scores_adv)}
    if success is not None:
        success = np.asarray(success, dtype=bool)
        adv = np.asarray(scores_adv)[success]
        out["n_success"] = int(success.sum())
        if adv.size:
            out["auroc_success"] = auroc(scores_clean, adv)
            out["aupr_success"] = aupr(scores_clean, adv)
        else:
            out["auroc_success"] = float("nan")
            out["aupr_success"] = float("nan")
    return out
