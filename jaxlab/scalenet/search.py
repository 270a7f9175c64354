"""MCEA: the joint search of the base model and the scaling strategy (spec sec. 2.5).

State: a base model `b` (canonical genes) and one scaling triple `S_s = (d, w, r)` per
scaling stage `s = 1..K`. FLOPs are MACs; `F_0 = macs(b at stage 0)`.

* **Init** (`grid_search_scaling_`): for each s, `n_basenet` random bases inside the
  base band; the triples whose FLOPs check "passes on average" are ranked by the mean
  accuracy of the scaled bases; `S_s` = top-1. Reconstruction of "on average": at least
  `init_pass_fraction` (0.5) of the bases are within `ladder_tol * 2^s F_0` of `2^s F_0`.
* **FLOPs limits** (base band, ladder) count MACs by `cfg.flops_rule`: "official"
  (default; `floor(n / s)` output sizes, the rule the paper's limits were computed with)
  or "true" (real shapes). `family` reports both.
* **Alternations** (reconstruction of the "Markov chain": alternating coordinate
  ascent, `b_{t+1} = argmax_b f(b | S_t)`, `S_{t+1} = argmax_S f(S | b_{t+1})`):
  (a) base step: the genetic search of `jaxlab.nas.evolution` over base genes, fitness
      `f(b | S) = mean_s acc(scale(b, S_s))`, FLOPs band on `F_0(b)`, canonical repair,
      the previous `b` seeded into the population (so with elitism `f` never decreases);
  (b) scaling step: for each s, every triple inside the FLOPs ladder for `b` is scored and
      the best kept (the current `S_s` competes only while it is feasible for `b`; when
      no triple is, the closest one is kept with a warning and the state's
      `infeasible_stages` names the stage).
* **Decoupled** baseline (`mode="decoupled"`): the GA on `f(b) = acc(b at stage 0)`
  alone, then one scaling step: base-then-scale.
* **Random-search** baseline (`proposal="random"`, any mode): the GA replaced by random
  search over the base band evaluating as many genomes (`ga.GAConfig.proposal`). Both
  evaluate feasible genomes only (the FLOPs check is analytic and free).
* **One-shot per budget** (`per_budget`): the alternative ScaleNet's cost claim is made
  against: for each stage s on its own, a GA over (base genes, index of `d`, `w`, `r` in
  stage s's grids) with fitness `acc` at that network and the FLOPs band
  `2^s F_ref (1 +- tol)` (`base_tol` at s = 0, `ladder_tol` above); a base per budget.
* **Extrapolation** (reconstruction): least-squares lines of `log d`, `log w`, `log r`
  against s over the searched stages 0..K, evaluated at larger s.

`acc_fn(archs [P, ...], r) -> [P]` is injected (the supernet scorer, or a synthetic
fitness in tests). The state is written after every GA generation and every step to
`workdir/mcea.json` + `workdir/ga_<t>.npz`; `mcea` resumes from them. The state counts
the architectures evaluated and the seconds spent over all segments of a run, so a
resumed or rerun search reports the cost of the whole search.

Random streams derive from the run's seed with the named constants below.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
import warnings
from collections.abc import Callable

import numpy as np

from jaxlab.core.workdir import write_json
from jaxlab.nas import evolution as ga
from jaxlab.scalenet.configs import SearchConfig
from jaxlab.scalenet.sampler import sample_base
from jaxlab.scalenet.space import Space

__all__ = ["REFERENCE_STREAM", "INIT_SCALING_STREAM", "GA_STREAM", "ga_seed", "reference_macs", "base_problem",
           "per_budget", "search_stages", "ladder_ok", "infeasible_stages", "scaled_archs", "mean_fitness",
           "scaling_step", "init_scaling", "mcea", "extrapolate", "compound_scaling", "family", "scaled_macs"]

AccFn = Callable[[dict, int], np.ndarray]

REFERENCE_STREAM = 99     # default_rng([seed, REFERENCE_STREAM]): random bases of the reference MACs
INIT_SCALING_STREAM = 7   # default_rng([seed, INIT_SCALING_STREAM]): base pool of the initial grid search
GA_STREAM = 3             # SeedSequence([seed, GA_STREAM, t]): the GA of alternation t


def search_stages(space: Space, cfg: SearchConfig) -> list[int]:
    """The scaling stages the search optimises: `1..num_search_stages` (all when 0)."""
    k = cfg.num_search_stages or space.num_scaling_stages - 1
    if k >= space.num_scaling_stages:
        raise ValueError(f"search.num_search_stages={cfg.num_search_stages} exceeds the space's "
                         f"{space.num_scaling_stages - 1} scaling stages above S0")
    return list(range(1, k + 1))


def ga_seed(seed: int, alternation: int) -> int:
    """The integer seed of the GA of one alternation (the GA draws `default_rng([it, gen])`)."""
    return int(np.random.SeedSequence([seed, GA_STREAM, alternation]).generate_state(1)[0])


def reference_macs(space: Space, cfg: SearchConfig, seed: int = 0) -> float:
    """Target base MACs: `cfg.base_macs`, or the median of 256 random bases."""
    if cfg.base_macs > 0:
        return float(cfg.base_macs)
    base = sample_base(space, np.random.default_rng([seed, REFERENCE_STREAM]), 256)
    return float(np.median(space.base_macs(base, rule=cfg.flops_rule)))


def ladder_ok(space: Space, cfg: SearchConfig, genes, triple, s: int) -> np.ndarray:
    """`|F(scale(b, d, w, r)) - 2^s F_0(b)| <= ladder_tol 2^s F_0(b)` per base (`[..., G]`),
    FLOPs counted by `cfg.flops_rule`."""
    d, w, r = triple
    f0 = space.base_macs(genes, rule=cfg.flops_rule)
    f = space.macs(space.scale(genes, d, w), int(r), rule=cfg.flops_rule)
    return np.abs(f - 2 ** s * f0) <= cfg.ladder_tol * 2 ** s * f0


def scaled_archs(space: Space, genes, triple) -> tuple[dict, int]:
    d, w, r = triple
    return space.scale(genes, d, w), int(r)


def mean_fitness(space: Space, acc_fn: AccFn, genes: np.ndarray, scaling: dict) -> np.ndarray:
    """`f(b | S) = mean_s acc(scale(b, S_s))` for genes `[P, G]`."""
    accs = [acc_fn(*scaled_archs(space, genes, scaling[s])) for s in sorted(scaling)]
    return np.mean(accs, axis=0)


def scaling_step(space: Space, cfg: SearchConfig, acc_fn: AccFn, base: np.ndarray, stages,
                 current: dict | None = None) -> tuple[dict, dict]:
    """Best ladder-feasible triple per stage for one base `[G]`; also returns `{s: [(t, acc)]}`.

    Only triples inside the FLOPs ladder *of this base* are ranked (spec sec. 2.5 (b)):
    the current `S_s` competes only if it is still feasible for `base` (it was chosen for
    the previous base, and a larger triple would otherwise win whenever accuracy grows
    with MACs). When no triple of stage s is feasible for `base`, the triple of the
    closest FLOPs is kept, a `UserWarning` says so, and `infeasible_stages` lists s.
    """
    out, table = {}, {}
    for s in stages:
        triples = space.scaling_triples(s)
        ok = np.array([bool(ladder_ok(space, cfg, base, t, s)) for t in triples])
        cand = triples[ok]
        if current is not None and s in current and bool(ladder_ok(space, cfg, base, current[s], s)):
            cand = np.unique(np.concatenate([cand, np.asarray(current[s], float)[None]]), axis=0)
        if len(cand) == 0:  # nothing inside the band: the closest FLOPs, said loudly
            f0 = space.base_macs(base, rule=cfg.flops_rule)
            fs = np.array([space.macs(space.scale(base, d, w), int(r), rule=cfg.flops_rule) for d, w, r in triples])
            i = int(np.argmin(np.abs(fs - 2 ** s * f0)))
            cand = triples[[i]]
            warnings.warn(
                f"MCEA scaling step: no (d, w, r) of stage {s} is within search.ladder_tol="
                f"{cfg.ladder_tol} of 2^{s} x {float(f0):.4g} MACs for base {np.asarray(base).tolist()}; "
                f"keeping the closest, {tuple(float(v) for v in triples[i])} at "
                f"{float(fs[i] / f0):.3g}x (widen search.ladder_tol or the scaling grid)",
                stacklevel=2)
        accs = np.zeros(len(cand))
        for r in np.unique(cand[:, 2]):
            sel = cand[:, 2] == r
            archs = space.scale(np.repeat(base[None], sel.sum(), 0), cand[sel, 0], cand[sel, 1])
            accs[sel] = acc_fn(archs, int(r))
        best = int(np.argmax(accs))
        out[s] = tuple(float(v) for v in cand[best])
        table[s] = [(tuple(float(v) for v in t), float(a)) for t, a in zip(cand, accs)]
    return out, table


def infeasible_stages(space: Space, cfg: SearchConfig, base, scaling: dict) -> list[int]:
    """The stages whose triple breaks the FLOPs ladder of `base` (empty for a valid strategy)."""
    return [int(s) for s in sorted(scaling) if not bool(ladder_ok(space, cfg, np.asarray(base), scaling[s], s))]


def init_scaling(space: Space, cfg: SearchConfig, acc_fn: AccFn, f_ref: float, stages, seed: int) -> dict:
    """`grid_search_scaling_`: rank the ladder-feasible triples by the mean accuracy of
    `n_basenet` random bases from the base band."""
    rng = np.random.default_rng([seed, INIT_SCALING_STREAM])
    pool = space.canonical_base(sample_base(space, rng, 64 * cfg.n_basenet))
    f = space.base_macs(pool, rule=cfg.flops_rule)
    inband = pool[np.abs(f - f_ref) <= cfg.base_tol * f_ref]
    bases = (inband if len(inband) >= cfg.n_basenet else pool[np.argsort(np.abs(f - f_ref))])[: cfg.n_basenet]
    out = {}
    for s in stages:
        triples = space.scaling_triples(s)
        ok = np.array([ladder_ok(space, cfg, bases, t, s).mean() >= cfg.init_pass_fraction for t in triples])
        cand = triples[ok] if ok.any() else triples
        scores = []
        for t in cand:
            archs, r = scaled_archs(space, bases, t)
            scores.append(float(np.mean(acc_fn(archs, r))))
        out[s] = tuple(float(v) for v in cand[int(np.argmax(scores))])
    return out


def base_problem(space: Space, cfg: SearchConfig, fitness, f_ref: float,
                 seed_genes: np.ndarray | None = None) -> ga.Problem:
    """The base step's search problem: canonical base genes, `fitness(genes [N, G])`, the
    base band `f_ref (1 +- base_tol)` counted by `cfg.flops_rule`, `seed_genes` in the
    initial population."""
    return ga.Problem(
        lower=space.gene_lower, upper=space.gene_upper, fitness=fitness,
        violation=lambda x: ga.flops_band_violation(space.base_macs(x, rule=cfg.flops_rule), f_ref,
                                                    cfg.base_tol * f_ref),
        repair=space.canonical_base, sample=lambda rng, n: sample_base(space, rng, n), initial=seed_genes)


def _jsonable_scaling(scaling: dict) -> dict:
    return {str(k): list(v) for k, v in scaling.items()}


def _load_scaling(d: dict) -> dict:
    return {int(k): tuple(v) for k, v in d.items()}


def mcea(space: Space, cfg: SearchConfig, acc_fn: AccFn, workdir: pathlib.Path | None = None, *,
         seed: int = 0, stop_after_alternation: int | None = None,
         progress: Callable[[str], None] | None = None) -> dict:
    """Runs (or resumes) MCEA; returns `{"base", "scaling", "fitness", "history", ...}`.

    The state holds `evaluations` (GA genomes), `arch_evaluations` (architectures scored
    by `acc_fn`: the GA's genomes times the stages each is scored at, plus the grid and
    scaling searches) and `seconds` (search time over all segments), all summed over
    the whole search, resumed or not. `stop_after_alternation=k` returns after k
    completed alternations (simulates an interruption; a later call resumes).
    """
    log = progress or (lambda msg: None)
    workdir = pathlib.Path(workdir) if workdir is not None else None
    t_start = time.perf_counter()
    stages = search_stages(space, cfg)
    gcfg = ga.GAConfig(pop_size=cfg.pop_size, num_generations=cfg.num_generations, eta_mutation=cfg.eta_mutation,
                       feasible_offspring=True, proposal=cfg.proposal)
    f_ref = reference_macs(space, cfg, seed)
    state_path = workdir / "mcea.json" if workdir else None
    scored = [0]

    def counted(archs: dict, r: int) -> np.ndarray:
        scored[0] += len(archs["ops"])
        return acc_fn(archs, r)

    def save(st: dict) -> None:
        if state_path is not None:
            write_json(state_path, dict(st, scaling=_jsonable_scaling(st["scaling"]),
                                        seconds=st["seconds"] + time.perf_counter() - t_start))

    if state_path is not None and state_path.exists():
        st = json.loads(state_path.read_text())
        st["scaling"] = _load_scaling(st["scaling"])
        log(f"resuming MCEA at alternation {st['alternation']}")
    else:
        if cfg.mode == "joint":
            scaling = init_scaling(space, cfg, counted, f_ref, stages, seed)
        elif cfg.mode == "decoupled":
            scaling = {}
        else:
            raise ValueError(f"search.mode must be 'joint' or 'decoupled' here, got {cfg.mode!r}")
        st = {"alternation": 0, "base": None, "scaling": scaling, "fitness": None, "history": [],
              "f_ref": f_ref, "evaluations": 0, "arch_evaluations": scored[0], "seconds": 0.0}
        save(st)
    joint = cfg.mode == "joint"
    n_alt = cfg.num_alternations if joint else 1
    end = n_alt if stop_after_alternation is None else min(n_alt, stop_after_alternation)
    while st["alternation"] < end:
        t = st["alternation"]
        scaling = st["scaling"]
        if joint:
            fitness = lambda x: mean_fitness(space, acc_fn, x, scaling)
            archs_per_genome = len(scaling)
        else:
            r0 = int(space.cfg.res_grid[0][0])
            fitness = lambda x: acc_fn(space.scale(x, 1.0, 1.0), r0)
            archs_per_genome = 1
        seed_genes = None if st["base"] is None else np.asarray(st["base"])[None]
        prob = base_problem(space, cfg, fitness, f_ref, seed_genes)
        ckpt = workdir / f"ga_{t}.npz" if workdir else None

        def generation_done(g, t=t, st=st):
            log(f"alternation {t} generation {g.generation} best {g.best()[1]:.4f}")
            save(st)  # books the time spent so far

        gstate = ga.run(prob, gcfg, seed=ga_seed(seed, t), checkpoint=ckpt, callback=generation_done)
        base, fbase = gstate.best()
        scored[0] = 0
        new_scaling, table = scaling_step(space, cfg, counted, base, stages, scaling if joint else None)
        fit = float(mean_fitness(space, counted, base[None], new_scaling)[0])
        broken = infeasible_stages(space, cfg, base, new_scaling)
        archive, arch_fit = gstate.archive(50)
        st = {
            "alternation": t + 1, "base": base.tolist(), "scaling": new_scaling, "fitness": fit,
            "f_ref": f_ref, "evaluations": st["evaluations"] + gstate.num_evaluations,
            "arch_evaluations": st["arch_evaluations"] + gstate.num_evaluations * archs_per_genome + scored[0],
            "seconds": st["seconds"],
            "history": st["history"] + [{"alternation": t + 1, "ga_best": fbase, "fitness": fit,
                                         "scaling": _jsonable_scaling(new_scaling),
                                         "infeasible_stages": broken,
                                         "ga_best_history": gstate.best_history.tolist()}],
            "infeasible_stages": broken,
            "archive": archive.tolist(), "archive_fitness": arch_fit.tolist(),
            "scaling_table": {str(k): v for k, v in table.items()},
        }
        save(st)
        log(f"alternation {t + 1}: fitness {fit:.4f} base {base.tolist()} scaling {new_scaling}"
            + (f" (stages {broken} break the FLOPs ladder: no feasible triple)" if broken else ""))
    if state_path is not None and state_path.exists():
        st["seconds"] = json.loads(state_path.read_text())["seconds"]
    else:
        st["seconds"] = st["seconds"] + time.perf_counter() - t_start
    return st


def _budget_problem(space: Space, cfg: SearchConfig, acc_fn: AccFn, f_ref: float, s: int) -> ga.Problem:
    g = space.gene_lower.size
    grid = np.asarray(space.cfg.mult_grid[s], np.float64)
    res = np.asarray(space.cfg.res_grid[s], np.int64)
    tol = cfg.base_tol if s == 0 else cfg.ladder_tol

    def decode(x):
        x = np.asarray(x, np.int64)
        return x[:, :g], grid[x[:, g]], grid[x[:, g + 1]], res[x[:, g + 2]]

    def fitness(x):
        genes, d, w, r = decode(x)
        out = np.zeros(len(x))
        for rv in np.unique(r):
            sel = r == rv
            out[sel] = acc_fn(space.scale(genes[sel], d[sel], w[sel]), int(rv))
        return out

    def violation(x):
        genes, d, w, r = decode(x)
        f = np.array([space.macs(space.scale(genes[i], d[i], w[i]), int(r[i]), rule=cfg.flops_rule)
                      for i in range(len(x))], np.float64)
        return ga.flops_band_violation(f, 2 ** s * f_ref, tol * 2 ** s * f_ref)

    def repair(x):
        x = np.asarray(x, np.int64).copy()
        x[:, :g] = space.canonical_base(x[:, :g])
        return x

    def sample(rng, n):
        idx = np.stack([rng.integers(len(grid), size=n), rng.integers(len(grid), size=n),
                        rng.integers(len(res), size=n)], 1)
        return np.concatenate([sample_base(space, rng, n), idx], 1)

    return ga.Problem(lower=np.concatenate([space.gene_lower, [0, 0, 0]]),
                      upper=np.concatenate([space.gene_upper, [len(grid) - 1, len(grid) - 1, len(res) - 1]]),
                      fitness=fitness, violation=violation, repair=repair, sample=sample)


def per_budget(space: Space, cfg: SearchConfig, acc_fn: AccFn, workdir: pathlib.Path | None = None, *,
               seed: int = 0, stages=None, progress: Callable[[str], None] | None = None) -> dict:
    """The one-shot-per-budget baseline: an independent GA per FLOPs budget `2^s F_ref`.

    Stage s searches the base genes together with `(d, w, r)` from stage s's grids, under
    the band `2^s F_ref (1 +- tol)`, each with the GA sizes of `cfg` (so each budget
    costs as much as one base step of MCEA). Resumes from `workdir/budget_<s>.npz`;
    `workdir/budget.json` books the seconds of every finished stage, so a rerun reports
    the same cost. Returns `{"members": [{stage, base, d, w, r, fitness}], "evaluations",
    "arch_evaluations", "seconds", "f_ref"}`.
    """
    log = progress or (lambda msg: None)
    book = pathlib.Path(workdir) / "budget.json" if workdir is not None else None
    seconds = json.loads(book.read_text())["seconds"] if book is not None and book.exists() else {}
    stages = list(range(space.num_scaling_stages)) if stages is None else list(stages)
    f_ref = reference_macs(space, cfg, seed)
    gcfg = ga.GAConfig(pop_size=cfg.pop_size, num_generations=cfg.num_generations, eta_mutation=cfg.eta_mutation,
                       feasible_offspring=True, proposal=cfg.proposal)
    g = space.gene_lower.size
    members, evals = [], 0
    for s in stages:
        prob = _budget_problem(space, cfg, acc_fn, f_ref, s)
        ckpt = pathlib.Path(workdir) / f"budget_{s}.npz" if workdir is not None else None
        t0 = time.perf_counter()
        st = ga.run(prob, gcfg, seed=ga_seed(seed, 100 + s), checkpoint=ckpt,
                    callback=lambda gs, s=s: log(f"budget S{s} generation {gs.generation} best {gs.best()[1]:.4f}"))
        x, fit = st.best()
        grid, res = space.cfg.mult_grid[s], space.cfg.res_grid[s]
        members.append({"stage": int(s), "base": [int(v) for v in x[:g]], "d": float(grid[x[g]]),
                        "w": float(grid[x[g + 1]]), "r": int(res[x[g + 2]]), "fitness": float(fit)})
        evals += st.num_evaluations
        if str(s) not in seconds:
            seconds[str(s)] = time.perf_counter() - t0
            if book is not None:
                write_json(book, {"seconds": seconds})
    return {"members": members, "evaluations": int(evals), "arch_evaluations": int(evals), "f_ref": f_ref,
            "seconds": float(sum(seconds[str(s)] for s in stages))}


def extrapolate(space: Space, scaling: dict, to_stage: int) -> dict:
    """Scaling triples for stages `K+1..to_stage` from least-squares lines of
    `log d, log w, log r` against s over stages 0..K (reconstruction)."""
    r0 = float(space.cfg.res_grid[0][0])
    ss = [0] + sorted(scaling)
    pts = np.array([[1.0, 1.0, r0]] + [list(scaling[s]) for s in sorted(scaling)], np.float64)
    out = {}
    for s in range(max(ss) + 1, to_stage + 1):
        vals = []
        for j in range(3):
            a, b = np.polyfit(ss, np.log(pts[:, j]), 1)
            vals.append(float(np.exp(a * s + b)))
        vals[2] = float(round(vals[2]))
        out[s] = tuple(vals)
    return out


def scaled_macs(space: Space, base, d: float, w: float, r: int, rule: str = "true") -> float:
    """MACs of base `base` scaled by `(d, w, r)`, uncapped by the super-supernet's depth."""
    sp = space.with_depth(d)
    return float(sp.macs(sp.scale(np.asarray(base), d, w), int(r), rule=rule))


def compound_scaling(space: Space, base, stages, alpha: float, beta: float, gamma: float,
                     rule: str = "true", targets: dict | None = None) -> dict:
    """EfficientNet's rule `d = alpha^phi, w = beta^phi, r = gamma^phi r_0`, with `phi`
    chosen per stage (grid of 1201 values in [0, 12]) so that the MACs (counted by
    `rule`, depth uncapped) come closest to `targets[s]` (default `2^s F_0`)."""
    r0 = float(space.cfg.res_grid[0][0])
    f0 = float(space.base_macs(base, rule=rule))
    out = {}
    for s in stages:
        target = float(targets[s]) if targets is not None else 2 ** s * f0
        best = None
        for phi in np.linspace(0.0, 12.0, 1201):
            t = (alpha ** phi, beta ** phi, float(round(r0 * gamma ** phi)))
            f = scaled_macs(space, base, t[0], t[1], int(t[2]), rule)
            err = abs(math.log(f / target))
            if best is None or err < best[0]:
                best = (err, t)
        out[s] = best[1]
    return out


def family(space: Space, base, scaling: dict) -> list[dict]:
    """Rows `{stage, d, w, r, macs, ratio, official_macs, official_ratio}` of the family
    `S_0, S_1, ...`: true-shape MACs and those of the official counter, depth uncapped."""
    base = np.asarray(base)
    r0 = int(space.cfg.res_grid[0][0])
    rows = []
    for s, (d, w, r) in [(0, (1.0, 1.0, r0))] + sorted(scaling.items()):
        rows.append({"stage": int(s), "d": float(d), "w": float(w), "r": int(r),
                     "macs": scaled_macs(space, base, d, w, r), "official_macs": scaled_macs(space, base, d, w, r,
                                                                                             "official")})
    for row in rows:
        row["ratio"] = row["macs"] / rows[0]["macs"]
        row["official_ratio"] = row["official_macs"] / rows[0]["official_macs"]
    return rows
