"""Splits, candidate pools, ranking metrics and the four baseline recommenders.

Metrics (paper §V RQ1): top-k hit rate = share of PRs with at least one true reviewer in
the top k; MRR = mean over PRs of 1 / rank of the first true reviewer (0 when no true
reviewer is in the candidate pool). Ties are broken by a seeded random order shared by
all recommenders, so a recommender that gives many users the same score is not favoured
by the pool's order.

Baselines: `RandomRecommender`; `RepoFrequency` (most frequent reviewer of the
repository); `FileFrequency` (most frequent past reviewer of the touched files);
`RevFinder` (Thongtanunam et al., SANER 2015: file-path similarity between the new PR
and each past reviewed PR by longest common prefix, suffix, substring and subsequence of
path components, each summed per reviewer, the four rankings combined by Borda count).
"""

from __future__ import annotations

import bisect
import collections
import functools

import numpy as np

from jaxlab.coral.gitlog import PullRequest

__all__ = ["split", "labels", "candidate_pool", "ActivePool", "top_directory", "directory_strata",
           "rank_metrics", "RandomRecommender", "RepoFrequency",
           "FileFrequency", "RevFinder", "BASELINES", "path_similarity"]


def split(prs: list[PullRequest], kind: str, train_fraction: float, seed: int) -> tuple[list, list]:
    """(train, test): "time" = the oldest `train_fraction` of PRs first; "random" = a seeded shuffle."""
    order = sorted(range(len(prs)), key=lambda i: (prs[i].time, i))
    if kind == "random":
        order = list(np.random.default_rng([seed, 0x5117]).permutation(len(prs)))
    n = int(round(train_fraction * len(prs)))
    return [prs[i] for i in sorted(order[:n])], [prs[i] for i in sorted(order[n:])]


def labels(pr: PullRequest, bots: set[str]) -> list[str]:
    """The reviewers to predict: humans other than the author."""
    return [u for u in pr.reviewers if u != pr.author and u not in bots]


def candidate_pool(pr: PullRequest, train: list[PullRequest], days: float, bots: set[str]) -> list[str]:
    """Humans who authored or reviewed a training PR within `days` of `pr`, without its author (sorted)."""
    lo, hi = pr.time - days * 86400.0, pr.time + days * 86400.0
    users = set()
    for q in train:
        if lo <= q.time <= hi:
            users.add(q.author)
            users.update(q.reviewers)
    users -= bots
    users.discard(pr.author)
    return sorted(users)


def top_directory(pr: PullRequest) -> str:
    """The first path component most of the PR's files share ("" for files at the root or none)."""
    dirs = collections.Counter(f.split("/", 1)[0] if "/" in f else "" for f in pr.files)
    return min(dirs.items(), key=lambda kv: (-kv[1], kv[0]))[0] if dirs else ""


def directory_strata(prs: list[PullRequest], train: list[PullRequest]) -> tuple[list[str], int]:
    """("small" | "large" per PR of `prs`, the threshold): the size of a PR's top directory is the
    number of training PRs touching it; "large" = at least the median size over `prs` (the
    paper's small/large repository split, with directories standing in for repositories)."""
    size = collections.Counter(d for q in train for d in {f.split("/", 1)[0] if "/" in f else "" for f in q.files})
    sizes = [size[top_directory(pr)] for pr in prs]
    cut = int(np.median(sizes)) if sizes else 0
    return ["large" if x >= cut else "small" for x in sizes], cut


class ActivePool:
    """`candidate_pool(pr, train, days, bots)` with the training PRs sorted by time once, so one
    PR costs a binary search and the users of the PRs in its window."""

    def __init__(self, train: list[PullRequest], days: float, bots: set[str]):
        order = sorted(train, key=lambda q: q.time)
        self.times = [q.time for q in order]
        self.people = [(q.author, *q.reviewers) for q in order]
        self.span, self.bots = days * 86400.0, bots

    def __call__(self, pr: PullRequest) -> list[str]:
        lo = bisect.bisect_left(self.times, pr.time - self.span)
        hi = bisect.bisect_right(self.times, pr.time + self.span)
        users = set().union(*self.people[lo:hi]) - self.bots
        users.discard(pr.author)
        return sorted(users)


def rank_metrics(score_lists: list[np.ndarray], pools: list[list[str]], truths: list[list[str]],
                 ks=(1, 3, 5), seed: int = 0) -> dict:
    """Top-k hit rates and MRR of scores `[len(pool)]` per PR; ties broken by a seeded random order."""
    rng = np.random.default_rng([seed, 0x7135])
    hits = {k: 0 for k in ks}
    rr = 0.0
    for scores, pool, truth in zip(score_lists, pools, truths, strict=True):
        tie = rng.random(len(pool))
        order = np.lexsort((tie, -np.asarray(scores, np.float64)))
        ranked = [pool[i] for i in order]
        truth = set(truth)
        first = next((r for r, u in enumerate(ranked, 1) if u in truth), None)
        for k in ks:
            hits[k] += first is not None and first <= k
        rr += 1.0 / first if first else 0.0
    n = max(1, len(pools))
    out = {f"top{k}": hits[k] / n for k in ks}
    out["mrr"] = rr / n
    out["num_prs"] = len(pools)
    return out


class RandomRecommender:
    """Uniform random scores (seeded)."""

    def __init__(self, train: list[PullRequest], bots: set[str], seed: int = 0):
        self.rng = np.random.default_rng([seed, 0x4A4D])

    def scores(self, pr: PullRequest, pool: list[str]) -> np.ndarray:
        return self.rng.random(len(pool))


class RepoFrequency:
    """Number of training PRs of the repository each user reviewed."""

    def __init__(self, train: list[PullRequest], bots: set[str], seed: int = 0):
        self.count = collections.Counter((q.repo, u) for q in train for u in labels(q, bots))

    def scores(self, pr: PullRequest, pool: list[str]) -> np.ndarray:
        return np.array([self.count[(pr.repo, u)] for u in pool], np.float64)


class FileFrequency:
    """Reviews by each user of training PRs touching the PR's files (ties: repository frequency / 1000)."""

    def __init__(self, train: list[PullRequest], bots: set[str], seed: int = 0):
        self.count = collections.Counter((f, u) for q in train for f in q.files for u in labels(q, bots))
        self.repo = RepoFrequency(train, bots)

    def scores(self, pr: PullRequest, pool: list[str]) -> np.ndarray:
        s = np.array([sum(self.count[(f, u)] for f in pr.files) for u in pool], np.float64)
        r = self.repo.scores(pr, pool)
        return s + r / (1000.0 * (1.0 + r.max(initial=0.0)))


def _lcp(a, b):
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _lcsubstr(a, b):
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def _lcsubseq(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


@functools.lru_cache(maxsize=1 << 18)
def path_similarity(f: str, g: str) -> tuple[float, float, float, float]:
    """RevFinder's four similarities of two paths' components, each divided by the longer length:
    (LCP, LCSuffix, LCSubstring, LCSubsequence)."""
    a, b = f.split("/"), g.split("/")
    m = max(len(a), len(b))
    return (_lcp(a, b) / m, _lcp(a[::-1], b[::-1]) / m, _lcsubstr(a, b) / m, _lcsubseq(a, b) / m)


class RevFinder:
    """RevFinder: for each measure, score(u) = sum over past PRs q reviewed by u of
    mean_{f in p, g in q} sim(f, g); the four rankings are combined by Borda count
    (a user ranked r-th of n gets n - r points). Past PRs within `window_days` (100 in the paper)."""

    def __init__(self, train: list[PullRequest], bots: set[str], seed: int = 0, window_days: float = 100.0):
        self.past = [(q.time, q.files, labels(q, bots)) for q in train if q.files and labels(q, bots)]
        self.window = window_days * 86400.0

    def scores(self, pr: PullRequest, pool: list[str]) -> np.ndarray:
        col = {u: i for i, u in enumerate(pool)}
        s = np.zeros((4, len(pool)))
        for t, files, revs in self.past:
            if abs(pr.time - t) > self.window or not pr.files:
                continue
            sims = np.mean([path_similarity(f, g) for f in pr.files for g in files], axis=0)
            for u in revs:
                if u in col:
                    s[:, col[u]] += sims
        borda = np.zeros(len(pool))
        for row in s:
            order = np.argsort(-row, kind="stable")
            ranks = np.empty(len(pool))
            ranks[order] = np.arange(len(pool))
            borda += np.where(row > 0, len(pool) - ranks, 0.0)
        return borda


BASELINES = {"random": RandomRecommender, "repo_frequency": RepoFrequency, "file_frequency": FileFrequency,
             "revfinder": RevFinder}
