import numpy as np
import pytest

from jaxlab.nas import evolution as ga
from jaxlab.nas.encoding import canonicalize_ops_np


def _problem(target, calls=None):
    g = len(target)

    def fitness(x):
        if calls is not None:
            calls.append(len(x))
        return -np.abs(x - target).sum(1).astype(float)

    return ga.Problem(lower=np.zeros(g), upper=np.full(g, 6), fitness=fitness)


def test_finds_optimum_of_synthetic_fitness():
    target = np.array([3, 0, 6, 2, 5, 1, 4, 4, 0, 6])
    cfg = ga.GAConfig(pop_size=24, num_generations=40)
    st = ga.run(_problem(target), cfg, seed=1)
    best, f = st.best()
    np.testing.assert_array_equal(best, target)
    assert f == 0.0
    # random search with the same evaluation budget does not get there
    rng = np.random.default_rng(0)
    rand = rng.integers(0, 7, size=(st.num_evaluations, 10))
    assert np.abs(rand - target).sum(1).min() > 0
    # elitism: best never decreases
    assert np.all(np.diff(st.best_history) >= 0)


def test_flops_band_constraint_and_repair():
    seg = np.array([0, 0, 0, 1, 1, 1])
    cost = np.array([0, 1, 2, 3])
    flops = lambda x: cost[x].sum(1)
    prob = ga.Problem(
        lower=np.array([1, 0, 0, 1, 0, 0]), upper=np.full(6, 3),
        fitness=lambda x: x.astype(float) @ np.array([1.0, -1, 2, 0.5, 3, -2]),
        violation=lambda x: ga.flops_band_violation(flops(x), 8, 1),
        repair=lambda x: canonicalize_ops_np(x, seg))
    st = ga.run(prob, ga.GAConfig(pop_size=20, num_generations=25), seed=0)
    best, f = st.best()
    assert abs(flops(best[None])[0] - 8) <= 1
    # brute force optimum over the canonical feasible set
    allx = np.array(np.meshgrid(*[np.arange(l, u + 1) for l, u in zip(prob.lower, prob.upper)])).reshape(6, -1).T
    allx = np.unique(canonicalize_ops_np(allx, seg), axis=0)
    feas = allx[np.abs(flops(allx) - 8) <= 1]
    assert f == prob.fitness(feas).max()
    # every population member is canonical and unique
    np.testing.assert_array_equal(canonicalize_ops_np(st.genomes, seg), st.genomes)
    assert len(np.unique(st.genomes, axis=0)) == len(st.genomes)
    assert len(np.unique(st.seen, axis=0)) == len(st.seen)


def _band_problem(scored):
    seg = np.array([0, 0, 0, 1, 1, 1])
    cost = np.array([0, 1, 2, 3])
    flops = lambda x: cost[x].sum(1)
    violation = lambda x: ga.flops_band_violation(flops(x), 8, 1)

    def fitness(x):
        scored.append(violation(x))
        return x.astype(float) @ np.array([1.0, -1, 2, 0.5, 3, -2])

    return ga.Problem(lower=np.array([1, 0, 0, 1, 0, 0]), upper=np.full(6, 3), fitness=fitness,
                      violation=violation, repair=lambda x: canonicalize_ops_np(x, seg)), flops


def test_feasible_offspring_spends_every_evaluation_in_the_band():
    scored = []
    prob, flops = _band_problem(scored)
    cfg = ga.GAConfig(pop_size=10, num_generations=6, feasible_offspring=True)
    st = ga.run(prob, cfg, seed=0)
    scored = np.concatenate(scored)
    assert len(scored) == st.num_evaluations == 10 * 7
    assert np.all(scored == 0)
    assert np.all(st.seen_violation == 0)
    # by default offspring outside the band are scored too (the evaluations this saves)
    scored_default = []
    ga.run(_band_problem(scored_default)[0], ga.GAConfig(pop_size=10, num_generations=6), seed=0)
    assert np.any(np.concatenate(scored_default) > 0)


def test_feasible_offspring_with_an_unreachable_band_is_an_error():
    prob, _ = _band_problem([])
    prob.violation = lambda x: np.ones(len(x))
    with pytest.raises(ValueError, match="feasible genomes found"):
        ga.run(prob, ga.GAConfig(pop_size=4, num_generations=1, feasible_offspring=True, dedup_tries=2), seed=0)


def test_operators():
    rng = np.random.default_rng(0)
    a = np.zeros((500, 8), int)
    b = np.ones((500, 8), int)
    ca, cb = ga.two_point_crossover(rng, a, b)
    np.testing.assert_array_equal(ca + cb, 1)
    # swapped genes form one contiguous run
    for row in ca:
        runs = np.flatnonzero(np.diff(np.r_[0, row, 0]))
        assert len(runs) in (0, 2)
    lo, hi = np.zeros(8), np.array([0, 1, 2, 3, 4, 5, 6, 7])
    x = rng.integers(0, hi + 1, size=(2000, 8))
    y = ga.polynomial_mutation_int(rng, x, lo, hi, eta=3.0, p_mutation=0.5)
    assert np.all(y >= lo) and np.all(y <= hi) and np.all(y[:, 0] == 0)
    changed = (y != x)[:, 1:].mean()
    assert 0.1 < changed < 0.5
    # tournament winners are better on average
    f = rng.random(100)
    w = ga.binary_tournament(rng, f, np.zeros(100), 4000)
    assert f[w].mean() > f.mean() + 0.1
    # feasible beats infeasible
    w = ga.binary_tournament(rng, np.array([0.0, 10.0]), np.array([0.0, 1.0]), 200)
    assert np.mean(w == 0) > 0.6


def test_interrupted_search_resumes(tmp_path):
    target = np.array([1, 5, 2, 2, 6, 0, 3, 4])
    cfg = ga.GAConfig(pop_size=12, num_generations=8)
    full = ga.run(_problem(target), cfg, seed=3)
    ck = tmp_path / "ga.npz"
    calls = []
    part = ga.run(_problem(target, calls), cfg, seed=3, checkpoint=ck, stop_after=3)
    assert part.generation == 3
    n_before = sum(calls)
    resumed = ga.run(_problem(target, calls), cfg, seed=3, checkpoint=ck)
    assert resumed.generation == 8
    np.testing.assert_array_equal(resumed.genomes, full.genomes)
    np.testing.assert_array_equal(resumed.seen, full.seen)
    assert sum(calls) - n_before == full.num_evaluations - part.num_evaluations  # no re-evaluation


def test_random_proposal_is_the_matched_random_search_baseline():
    """`proposal="random"`: the GA's initial population, then offspring drawn by the
    sampler, as many evaluations as the GA; on a fitness the genetic operators can climb,
    random search with that budget does not reach the optimum."""
    target = np.array([3, 0, 6, 2, 5, 1, 4, 4, 0, 6])
    gen_calls, rand_calls = [], []
    cfg = ga.GAConfig(pop_size=24, num_generations=40)
    gen = ga.run(_problem(target, gen_calls), cfg, seed=1)
    rnd = ga.run(_problem(target, rand_calls), ga.GAConfig(pop_size=24, num_generations=40, proposal="random"),
                 seed=1)
    np.testing.assert_array_equal(gen.seen[:24], rnd.seen[:24])  # same initial population
    assert rnd.num_evaluations == gen.num_evaluations == sum(gen_calls) == sum(rand_calls)
    assert gen.best()[1] == 0.0 and rnd.best()[1] < 0.0
    assert len(np.unique(rnd.seen, axis=0)) == len(rnd.seen)  # no genome evaluated twice
    # the population is the best 24 of everything seen
    np.testing.assert_allclose(np.sort(rnd.fitness), np.sort(rnd.seen_fitness)[-24:])
    with pytest.raises(ValueError, match="proposal"):
        ga.step(rnd, _problem(target), ga.GAConfig(proposal="bayes"), seed=1)


def test_random_proposal_evaluates_feasible_genomes_only():
    prob = ga.Problem(lower=np.zeros(6), upper=np.full(6, 3), fitness=lambda x: x.sum(1).astype(float),
                      violation=lambda x: ga.flops_band_violation(x.sum(1), 9, 1))
    st = ga.run(prob, ga.GAConfig(pop_size=10, num_generations=5, proposal="random"), seed=0)
    sums = st.seen[10:].sum(1)  # offspring; the initial population follows feasible_offspring
    assert np.all(np.abs(sums - 9) <= 1)
