"""Stale recommendations after a reviewer changes team (the paper's main negative reason).

On the planted repository the truth is known: a *mover* works in team A until the move
and in team B after it, and reviewers always come from the author's current team. For a
test PR (after the move) with author a and a recommender's top-k list:

  * stale: a mover whose former team is a's current team appears in the top k. The mover
    can no longer be a true reviewer of a's PRs, so this is a stale recommendation.
    `stale_topk` = share of the PRs of former teammates (PRs whose author is in a mover's
    old team at the PR's time) with such a mover in the top k.
  * fresh: `fresh_topk` = share of the PRs a mover truly reviewed (in the new team) whose
    top k holds that mover.

Ranks use the same seeded tie-breaking as `ranking.rank_metrics`.
"""

from __future__ import annotations

import numpy as np

from jaxlab.coral.data import PlantedTruth
from jaxlab.coral.gitlog import PullRequest

__all__ = ["top_k", "drift_metrics"]

STREAM_TIES = 0x7135


def top_k(scores: list[np.ndarray], pools: list[list[str]], k: int, seed: int = 0) -> list[list[str]]:
    """The top-k users of each pool; ties broken by a seeded random order."""
    rng = np.random.default_rng([seed, STREAM_TIES])
    out = []
    for s, pool in zip(scores, pools, strict=True):
        order = np.lexsort((rng.random(len(pool)), -np.asarray(s, np.float64)))
        out.append([pool[i] for i in order[:k]])
    return out


def drift_metrics(prs: list[PullRequest], rows: list[tuple[list[str], np.ndarray]], truth: PlantedTruth,
                  k: int = 3, seed: int = 0) -> dict:
    """`stale_top{k}`, `fresh_top{k}` and the PR counts behind them (see the module docstring).

    `rows`: per PR of `prs`, (candidate pool, scores).
    """
    tops = top_k([s for _, s in rows], [p for p, _ in rows], k, seed)
    old_team = {m: truth.team[m][0][1] for m in truth.movers}
    stale = stale_n = fresh = fresh_n = 0
    for pr, top in zip(prs, tops, strict=True):
        team = truth.team_at(pr.author, pr.time)
        former = [m for m in truth.movers if m != pr.author and old_team[m] == team
                  and truth.team_at(m, pr.time) != team]
        if former:
            stale_n += 1
            stale += any(m in top for m in former)
        for m in truth.movers:
            if m in pr.reviewers and truth.team_at(m, pr.time) != old_team[m]:
                fresh_n += 1
                fresh += m in top
    return {f"stale_top{k}": stale / max(stale_n, 1), "stale_prs": stale_n,
            f"fresh_top{k}": fresh / max(fresh_n, 1), "fresh_prs": fresh_n}
