"""Genetic search over integer architecture encodings (NSGA-Net style, one objective).

Operators, vectorised over the population in NumPy (the fitness function is the only
expensive part and receives the whole batch of new genomes at once, so it can be one
vmapped call on the accelerator):

* **binary tournament** with constraint domination: a feasible genome beats an infeasible
  one, two feasible ones compare by fitness, two infeasible ones by violation;
* **two-point crossover**: genes in `[a, b)` are swapped between the two parents;
* **integer polynomial mutation** (Deb & Agrawal), per-gene probability `1 / G` by
  default, distribution index `eta` (3 in ScaleNet), applied to the gene relaxed to
  `[lb - 0.5, ub + 0.5]` and rounded (reconstruction of pymoo's integer variant);
* **repair** (e.g. canonicalisation) and **duplicate elimination** against the current
  population, the evaluated archive and the other offspring;
* **survival**: with `elitism` the best `P` of parents + offspring (mu + lambda), else the
  offspring replace the parents (generational);
* **constraint handling**: `violation(genomes) >= 0`, 0 meaning feasible; for a FLOPs band
  use `flops_band_violation`. By default infeasible genomes are evaluated and lose every
  tournament against feasible ones; with `feasible_offspring` they are redrawn before
  evaluation (the violation of an analytic constraint costs nothing, a fitness evaluation
  is the search's budget), so every evaluation is spent on a feasible genome and a
  random-search baseline of the same number of evaluations is matched.
* **random search** (`proposal="random"`): the same loop with each generation's offspring
  drawn by `problem.sample` (feasible only) instead of selection, crossover and
  mutation; the initial population is the GA's of the same seed, and the population
  keeps the best `P` seen. With the GA's sizes it evaluates as many genomes as the GA:
  the baseline that shows whether the genetic operators matter.

The state after every generation can be written atomically to an `.npz` file; `run`
resumes from it. Random numbers of generation t come from `default_rng([seed, t])`, so a
resumed search reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable

import numpy as np

from jaxlab.nas.encoding import unique_rows

__all__ = [
    "GAConfig",
    "Problem",
    "GAState",
    "flops_band_violation",
    "binary_tournament",
    "two_point_crossover",
    "polynomial_mutation_int",
    "rank_order",
    "init_state",
    "step",
    "run",
    "save_state",
    "load_state",
]


@dataclasses.dataclass(frozen=True)
class GAConfig:
    """Genetic search settings (ScaleNet: pop 64, 40 generations, eta 3)."""

    pop_size: int = 16
    num_generations: int = 8
    num_offspring: int = 0          # 0 -> pop_size
    eta_mutation: float = 3.0
    p_mutation: float = 0.0         # per gene; 0 -> 1 / num_genes
    p_crossover: float = 1.0
    elitism: bool = True
    dedup_tries: int = 20
    archive_size: int = 50
    feasible_offspring: bool = False
    proposal: str = "genetic"       # "genetic", or "random": the random-search baseline


@dataclasses.dataclass
class Problem:
    """An integer search problem.

    Attributes:
      lower, upper: int `[G]` inclusive gene bounds (equal bounds fix a gene).
      fitness: genomes int `[N, G]` -> float `[N]`, maximised.
      violation: genomes -> float `[N]` >= 0, 0 = feasible (None: all feasible).
      repair: genomes -> genomes, e.g. canonicalisation (None: identity).
      sample: (rng, n) -> genomes `[n, G]` for the initial population and for redraws
        (None: uniform).
      initial: genomes `[K, G]` placed in the initial population before sampling the
        rest (e.g. the best genome of a previous search), or None.
    """

    lower: np.ndarray
    upper: np.ndarray
    fitness: Callable[[np.ndarray], np.ndarray]
    violation: Callable[[np.ndarray], np.ndarray] | None = None
    repair: Callable[[np.ndarray], np.ndarray] | None = None
    sample: Callable[[np.random.Generator, int], np.ndarray] | None = None
    initial: np.ndarray | None = None

    def __post_init__(self):
        self.lower = np.asarray(self.lower, np.int64)
        self.upper = np.asarray(self.upper, np.int64)
        if self.lower.shape != self.upper.shape or self.lower.ndim != 1:
            raise ValueError(f"bounds must be two [G] vectors, got {self.lower.shape} and {self.upper.shape}")
        if np.any(self.upper < self.lower):
            raise ValueError(f"upper < lower at genes {np.nonzero(self.upper < self.lower)[0].tolist()}")


@dataclasses.dataclass
class GAState:
    """Population, its scores, the evaluated archive and the generation counter."""

    genomes: np.ndarray      # int64 [P, G]
    fitness: np.ndarray      # float64 [P]
    violation: np.ndarray    # float64 [P]
    generation: int
    seen: np.ndarray         # int64 [M, G], every genome evaluated so far
    seen_fitness: np.ndarray  # float64 [M]
    seen_violation: np.ndarray  # float64 [M]
    best_history: np.ndarray  # float64 [generation + 1], best feasible fitness per generation
    num_evaluations: int = 0

    def best(self) -> tuple[np.ndarray, float]:
        i = rank_order(self.fitness, self.violation)[0]
        return self.genomes[i], float(self.fitness[i])

    def archive(self, k: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """The top-k evaluated genomes (feasible first) and their fitness."""
        order = rank_order(self.seen_fitness, self.seen_violation)[:k]
        return self.seen[order], self.seen_fitness[order]


def flops_band_violation(flops, target, tol) -> np.ndarray:
    """`max(0, |F - T| - tol) / T`: 0 inside the band `T +- tol`."""
    flops = np.asarray(flops, np.float64)
    return np.maximum(0.0, np.abs(flops - target) - tol) / float(target)


def rank_order(fitness, violation) -> np.ndarray:
    """Indices best-first: feasible by fitness descending, then infeasible by violation."""
    fitness = np.asarray(fitness, np.float64)
    violation = np.asarray(violation, np.float64)
    feasible = violation <= 0
    # lexsort: last key is primary.
    return np.lexsort((-np.where(feasible, fitness, 0.0), np.where(feasible, 0.0, violation), ~feasible))


def _better(fa, va, fb, vb) -> np.ndarray:
    """Constraint-domination: is a better than b (element-wise)?"""
    fa_ok, fb_ok = va <= 0, vb <= 0
    return np.where(fa_ok & fb_ok, fa >= fb, np.where(fa_ok != fb_ok, fa_ok, va <= vb))


def binary_tournament(rng: np.random.Generator, fitness, violation, n: int) -> np.ndarray:
    """`n` parent indices, each the winner of a random pair."""
    p = len(fitness)
    a = rng.integers(0, p, n)
    b = rng.integers(0, p, n)
    fitness, violation = np.asarray(fitness), np.asarray(violation)
    return np.where(_better(fitness[a], violation[a], fitness[b], violation[b]), a, b)


def two_point_crossover(rng: np.random.Generator, pa: np.ndarray, pb: np.ndarray,
                        p_crossover: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Children of parent rows `pa`, `pb` `[N, G]`: genes with `a <= g < b` swapped."""
    n, g = pa.shape
    cuts = np.sort(rng.integers(0, g + 1, size=(n, 2)), axis=1)
    idx = np.arange(g)[None, :]
    swap = (idx >= cuts[:, :1]) & (idx < cuts[:, 1:])
    swap &= (rng.random(n) < p_crossover)[:, None]
    return np.where(swap, pb, pa), np.where(swap, pa, pb)


def polynomial_mutation_int(rng: np.random.Generator, x: np.ndarray, lower, upper,
                            eta: float = 3.0, p_mutation: float = 0.0) -> np.ndarray:
    """Integer polynomial mutation of rows `x` `[N, G]` within inclusive bounds."""
    x = np.asarray(x, np.float64)
    n, g = x.shape
    pm = p_mutation if p_mutation > 0 else 1.0 / g
    lo = np.asarray(lower, np.float64)[None] - 0.499
    hi = np.asarray(upper, np.float64)[None] + 0.499
    span = hi - lo
    do = (rng.random((n, g)) < pm) & (np.asarray(upper) > np.asarray(lower))[None]
    r = rng.random((n, g))
    d1 = (x - lo) / span
    d2 = (hi - x) / span
    mp = 1.0 / (eta + 1.0)
    v_lo = 2.0 * r + (1.0 - 2.0 * r) * (1.0 - d1) ** (eta + 1.0)
    v_hi = 2.0 * (1.0 - r) + 2.0 * (r - 0.5) * (1.0 - d2) ** (eta + 1.0)
    dq = np.where(r < 0.5, v_lo ** mp - 1.0, 1.0 - v_hi ** mp)
    y = np.clip(x + dq * span, lo, hi)
    y = np.where(do, y, x)
    return np.clip(np.rint(y), lower, upper).astype(np.int64)


def _uniform(rng, problem: Problem, n: int) -> np.ndarray:
    return rng.integers(problem.lower[None], problem.upper[None] + 1, size=(n, len(problem.lower)))


def _prepare(problem: Problem, x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, np.int64), problem.lower, problem.upper)
    if problem.repair is not None:
        x = np.asarray(problem.repair(x), np.int64)
    return x


def _evaluate(problem: Problem, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(problem.fitness(x), np.float64).reshape(len(x))
    v = (np.zeros(len(x)) if problem.violation is None
         else np.asarray(problem.violation(x), np.float64).reshape(len(x)))
    return f, v


def _fresh(rng, problem: Problem, n: int, exclude: np.ndarray, tries: int,
           make: Callable[[int], np.ndarray], feasible: bool = False) -> np.ndarray:
    """`n` repaired genomes from `make`, none equal to each other or to `exclude`.

    After `tries` rounds the rest comes from `problem.sample` (uniform without one). With
    `feasible`, genomes of positive violation are dropped; fewer than `n` come back when
    no more new feasible genomes are found (a small space, nearly exhausted).
    """
    out = np.zeros((0, len(problem.lower)), np.int64)
    fallback = problem.sample or (lambda r, m: _uniform(r, problem, m))
    rounds = tries + 1 + (tries if feasible else 0)
    for t in range(rounds):
        cand = _prepare(problem, make(n - len(out)) if t < tries else fallback(rng, n - len(out)))
        keep = unique_rows(cand, exclude=np.concatenate([exclude, out]))
        cand = cand[keep]
        if feasible and problem.violation is not None and len(cand):
            cand = cand[np.asarray(problem.violation(cand)).reshape(len(cand)) <= 0]
        out = np.concatenate([out, cand])
        if len(out) >= n:
            break
    return out[:n]


def init_state(problem: Problem, config: GAConfig, seed: int) -> GAState:
    """Random (or `problem.sample`d) unique initial population, evaluated."""
    rng = np.random.default_rng([seed, 0])
    sample = problem.sample or (lambda r, n: _uniform(r, problem, n))
    seeds = np.zeros((0, len(problem.lower)), np.int64)
    if problem.initial is not None and len(problem.initial):
        seeds = _prepare(problem, np.asarray(problem.initial).reshape(-1, len(problem.lower)))
        seeds = seeds[unique_rows(seeds)][: config.pop_size]
    pop = np.concatenate([seeds, _fresh(rng, problem, config.pop_size - len(seeds), seeds, config.dedup_tries,
                                        lambda n: sample(rng, n), config.feasible_offspring)])
    if not len(pop):
        raise ValueError(f"no feasible genomes found in {2 * config.dedup_tries + 1} rounds of sampling; "
                         "the constraint is too tight for the search space")
    f, v = _evaluate(problem, pop)
    best = f[rank_order(f, v)[0]] if np.any(v <= 0) else -np.inf
    return GAState(pop, f, v, 0, pop.copy(), f.copy(), v.copy(), np.asarray([best]), len(pop))


def step(state: GAState, problem: Problem, config: GAConfig, seed: int) -> GAState:
    """One generation: selection, crossover, mutation, repair, dedup, evaluation, survival."""
    t = state.generation + 1
    rng = np.random.default_rng([seed, t])
    p = len(state.genomes)
    n_off = config.num_offspring or config.pop_size

    def make(n):
        if config.proposal == "random":
            return (problem.sample or (lambda r, k: _uniform(r, problem, k)))(rng, n)
        m = n + (n % 2)
        parents = binary_tournament(rng, state.fitness, state.violation, m)
        ca, cb = two_point_crossover(rng, state.genomes[parents[0::2]], state.genomes[parents[1::2]],
                                     config.p_crossover)
        kids = np.concatenate([ca, cb])[:n]
        return polynomial_mutation_int(rng, kids, problem.lower, problem.upper,
                                       config.eta_mutation, config.p_mutation)

    exclude = np.concatenate([state.genomes, state.seen])
    if config.proposal not in ("genetic", "random"):
        raise ValueError(f"GAConfig.proposal must be 'genetic' or 'random', got {config.proposal!r}")
    feasible = config.feasible_offspring or config.proposal == "random"
    kids = _fresh(rng, problem, n_off, exclude, config.dedup_tries, make, feasible)
    if len(kids):
        fk, vk = _evaluate(problem, kids)
    else:
        fk, vk = np.zeros(0), np.zeros(0)
    if config.elitism:
        allg = np.concatenate([state.genomes, kids])
        allf = np.concatenate([state.fitness, fk])
        allv = np.concatenate([state.violation, vk])
        keep = rank_order(allf, allv)[:p]
        pop, f, v = allg[keep], allf[keep], allv[keep]
    else:
        order = rank_order(fk, vk)[:p]
        pop, f, v = kids[order], fk[order], vk[order]
        if len(pop) < p:  # too few distinct kids: top up with the best parents
            extra = rank_order(state.fitness, state.violation)[: p - len(pop)]
            pop = np.concatenate([pop, state.genomes[extra]])
            f = np.concatenate([f, state.fitness[extra]])
            v = np.concatenate([v, state.violation[extra]])
    best = f[rank_order(f, v)[0]] if np.any(v <= 0) else -np.inf
    return GAState(
        genomes=pop, fitness=f, violation=v, generation=t,
        seen=np.concatenate([state.seen, kids]),
        seen_fitness=np.concatenate([state.seen_fitness, fk]),
        seen_violation=np.concatenate([state.seen_violation, vk]),
        best_history=np.concatenate([state.best_history, [best]]),
        num_evaluations=state.num_evaluations + len(kids),
    )


def save_state(path: str | os.PathLike, state: GAState) -> None:
    """Writes the state atomically (temporary file, then rename)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **{f.name: np.asarray(getattr(state, f.name)) for f in dataclasses.fields(GAState)})
    os.replace(tmp, path)


def load_state(path: str | os.PathLike) -> GAState:
    """Reads a state written by `save_state`; a damaged file is an error naming it."""
    try:
        with np.load(path) as z:
            d = {k: z[k] for k in z.files}
    except Exception as e:
        raise ValueError(f"GA state file {path} cannot be read: {e}") from e
    d["generation"] = int(d["generation"])
    d["num_evaluations"] = int(d["num_evaluations"])
    return GAState(**d)


def run(problem: Problem, config: GAConfig, seed: int = 0, *, checkpoint: str | os.PathLike | None = None,
        stop_after: int | None = None, callback: Callable[[GAState], None] | None = None) -> GAState:
    """Runs (or resumes) the search to `config.num_generations` generations.

    Args:
      checkpoint: `.npz` path; if it exists the search resumes from it, and the state is
        written there after every generation.
      stop_after: return after this many generations in total (simulates an interruption).
    """
    if checkpoint is not None and pathlib.Path(checkpoint).exists():
        state = load_state(checkpoint)
    else:
        state = init_state(problem, config, seed)
        if checkpoint is not None:
            save_state(checkpoint, state)
    end = config.num_generations if stop_after is None else min(stop_after, config.num_generations)
    while state.generation < end:
        state = step(state, problem, config, seed)
        if checkpoint is not None:
            save_state(checkpoint, state)
        if callback is not None:
            callback(state)
    return state
