import dataclasses
import itertools
import json

import numpy as np
import pytest

from jaxlab.scalenet import search
from jaxlab.scalenet.configs import SearchConfig
from jaxlab.scalenet.space import Space, SpaceConfig

SP = Space(SpaceConfig())
CFG = SearchConfig(pop_size=16, num_generations=10, num_alternations=3, n_basenet=4,
                   base_tol=0.2, ladder_tol=0.25)
VALUE = np.array([0.0, 1.0, 2.5])  # per-layer value of id / k3 / k5


def synthetic_acc(counter=None):
    """A known fitness: op values per layer + width + resolution, with diminishing returns."""

    def acc(archs, r):
        if counter is not None:
            counter.append(len(archs["ops"]))
        ops = np.asarray(archs["ops"])
        ch = np.asarray(archs["channels"], float)
        v = VALUE[ops] * (1.0 + 0.1 * np.arange(ops.shape[-1]) % 3)
        return np.log1p(v.sum(-1)) + 0.3 * np.log(ch.sum(-1)) + 0.5 * np.log(r) - 0.02 * (ops[..., 0] == 2)

    return acc


def brute_force(acc):
    """max_b mean_s max_{t feasible} acc(scale(b, t)) over all canonical bases in the band."""
    f_ref = search.reference_macs(SP, CFG)
    allg = np.array(list(itertools.product(*[range(l, u + 1) for l, u in zip(SP.gene_lower, SP.gene_upper)])))
    allg = np.unique(SP.canonical_base(allg), axis=0)
    f0 = SP.base_macs(allg, rule=CFG.flops_rule)
    allg = allg[np.abs(f0 - f_ref) <= CFG.base_tol * f_ref]
    per_stage = []
    for s in (1, 2, 3):
        best_s = np.full(len(allg), -np.inf)
        for d, w, r in SP.scaling_triples(s):
            ok = search.ladder_ok(SP, CFG, allg, (d, w, r), s)
            val = acc(SP.scale(allg, d, w), int(r))
            best_s = np.where(ok, np.maximum(best_s, val), best_s)
        per_stage.append(best_s)
    return float(np.max(np.mean(per_stage, axis=0)))


def test_mcea_finds_synthetic_optimum_and_is_monotone():
    acc = synthetic_acc()
    st = search.mcea(SP, CFG, acc)
    assert set(st["scaling"]) == {1, 2, 3}
    assert len(st["archive"]) > 0
    fits = [h["fitness"] for h in st["history"]]
    assert np.all(np.diff(fits) >= -1e-12)  # elitism: never decreases
    np.testing.assert_allclose(st["fitness"], brute_force(acc), rtol=1e-9)
    base = np.asarray(st["base"])
    f_ref = search.reference_macs(SP, CFG)
    assert abs(SP.base_macs(base, rule=CFG.flops_rule) - f_ref) <= CFG.base_tol * f_ref
    for s, t in st["scaling"].items():
        assert search.ladder_ok(SP, CFG, base, t, s)


def test_mcea_resumes(tmp_path):
    cfg = SearchConfig(pop_size=8, num_generations=3, num_alternations=3, n_basenet=2, base_tol=0.2,
                       ladder_tol=0.25)
    full_calls = []
    full = search.mcea(SP, cfg, synthetic_acc(full_calls))
    calls = []
    part = search.mcea(SP, cfg, synthetic_acc(calls), tmp_path, stop_after_alternation=1)
    assert part["alternation"] == 1 and (tmp_path / "mcea.json").exists()
    resumed = search.mcea(SP, cfg, synthetic_acc(calls), tmp_path)
    assert resumed["alternation"] == 3
    assert resumed["base"] == full["base"] and resumed["scaling"] == full["scaling"]
    assert resumed["fitness"] == pytest.approx(full["fitness"])
    # the cost is the whole search's, counted independently by the fitness itself
    assert full["arch_evaluations"] == sum(full_calls) == sum(calls) == resumed["arch_evaluations"]
    assert resumed["evaluations"] == full["evaluations"]
    saved = json.loads((tmp_path / "mcea.json").read_text())
    assert resumed["seconds"] == saved["seconds"] > 0
    # a rerun of the finished search evaluates nothing and reports the same cost and time
    again_calls = []
    again = search.mcea(SP, cfg, synthetic_acc(again_calls), tmp_path)
    assert again_calls == [] and again["arch_evaluations"] == resumed["arch_evaluations"]
    assert again["seconds"] == resumed["seconds"] and again["base"] == resumed["base"]


def test_mcea_resumes_inside_a_ga(tmp_path):
    """Killed between two GA generations: the GA resumes from its .npz without
    re-evaluating, and the cost still counts the genomes evaluated before the kill."""
    cfg = SearchConfig(pop_size=8, num_generations=3, num_alternations=2, n_basenet=2, base_tol=0.2,
                       ladder_tol=0.25)
    full = search.mcea(SP, cfg, synthetic_acc(), seed=3)

    class Killed(Exception):
        pass

    def kill_at_second_generation(msg):
        if msg.startswith("alternation 1 generation 2"):
            raise Killed

    with pytest.raises(Killed):
        search.mcea(SP, cfg, synthetic_acc(), tmp_path, seed=3, progress=kill_at_second_generation)
    resumed = search.mcea(SP, cfg, synthetic_acc(), tmp_path, seed=3)
    for k in ("base", "scaling", "fitness", "evaluations", "arch_evaluations"):
        assert resumed[k] == full[k], k


def test_decoupled_mode():
    calls = []
    cfg = SearchConfig(mode="decoupled", pop_size=8, num_generations=3, base_tol=0.2, ladder_tol=0.25)
    st = search.mcea(SP, cfg, synthetic_acc(calls))
    assert st["alternation"] == 1 and set(st["scaling"]) == {1, 2, 3}
    # the GA scores each genome at stage 0 only: one architecture per genome
    assert st["arch_evaluations"] == sum(calls) and st["evaluations"] <= sum(calls)


def test_extrapolation_and_compound():
    base = SP.canonical_base(np.array([1, 2, 2, 1, 2, 2]))
    scaling = {1: (1.08, 1.08, 13.0), 2: (1.2, 1.2, 15.0), 3: (1.4, 1.4, 17.0)}
    ext = search.extrapolate(SP, scaling, 5)
    assert set(ext) == {4, 5}
    # a geometric rule d = w = 1.12^s, r = 12 * 1.09^s is recovered exactly
    geo = {s: (1.12 ** s, 1.12 ** s, 12 * 1.09 ** s) for s in (1, 2, 3)}
    e = search.extrapolate(SP, {s: (d, w, r) for s, (d, w, r) in geo.items()}, 4)[4]
    np.testing.assert_allclose(e[:2], [1.12 ** 4] * 2, rtol=1e-9)
    assert e[2] == round(12 * 1.09 ** 4)
    fam = search.family(SP, base, {**scaling, **ext})
    assert [r["stage"] for r in fam] == [0, 1, 2, 3, 4, 5]
    assert all(b["macs"] > a["macs"] for a, b in zip(fam, fam[1:]))
    comp = search.compound_scaling(SP, base, [1, 2, 3], 1.2, 1.1, 1.15)
    for s, (d, w, r) in comp.items():
        f = SP.macs(SP.scale(base, d, w), int(r))
        assert abs(np.log(f / (2 ** s * SP.base_macs(base)))) < 0.25


def macs_proxy_acc(seed=0):
    """`log(MACs) + per-op noise`: accuracy that grows with MACs, as real accuracy does, so
    an over-budget triple wins any ranking it is allowed into."""
    noise = np.random.default_rng(seed).normal(scale=0.05, size=(64, len(VALUE)))

    def acc(archs, r):
        ops = np.asarray(archs["ops"])
        return np.log(SP.macs(archs, r)) + noise[np.arange(ops.shape[-1]), ops].sum(-1)

    return acc


@pytest.mark.parametrize("seed", [0, 1])
def test_mcea_returns_only_ladder_feasible_triples_when_accuracy_rewards_macs(seed):
    cfg = SearchConfig(pop_size=8, num_generations=3, num_alternations=3, n_basenet=4, base_tol=0.2,
                       ladder_tol=0.15)
    st = search.mcea(SP, cfg, macs_proxy_acc(seed), seed=seed)
    base = np.asarray(st["base"])
    f0 = SP.base_macs(base, rule=cfg.flops_rule)  # the search's limits count by cfg.flops_rule
    for s, (d, w, r) in st["scaling"].items():
        ratio = SP.macs(SP.scale(base, d, w), int(r), rule=cfg.flops_rule) / f0
        assert abs(ratio - 2 ** s) <= cfg.ladder_tol * 2 ** s, (s, (d, w, r), ratio)
    assert st["infeasible_stages"] == []
    assert all(h["infeasible_stages"] == [] for h in st["history"])


def test_scaling_step_drops_the_current_triple_when_it_breaks_the_new_base_ladder():
    cfg = SearchConfig(ladder_tol=0.15)
    base = SP.canonical_base(np.array([1, 0, 1, 0, 1, 0]))  # the largest stage-2 triple gives 5.7x
    triples = SP.scaling_triples(2)
    f0 = SP.base_macs(base, rule=cfg.flops_rule)
    ratios = np.array([SP.macs(SP.scale(base, d, w), int(r), rule=cfg.flops_rule) / f0 for d, w, r in triples])
    biggest = tuple(float(v) for v in triples[int(np.argmax(ratios))])
    assert not search.ladder_ok(SP, cfg, base, biggest, 2)  # over budget for this base
    new, table = search.scaling_step(SP, cfg, macs_proxy_acc(), base, [2], current={2: biggest})
    assert search.ladder_ok(SP, cfg, base, new[2], 2) and new[2] != biggest
    assert all(search.ladder_ok(SP, cfg, base, t, 2) for t, _ in table[2])
    # a feasible current triple still competes
    feasible = tuple(float(v) for v in triples[int(np.argmin(np.abs(ratios - 4)))])
    assert search.ladder_ok(SP, cfg, base, feasible, 2)
    _, table = search.scaling_step(SP, cfg, macs_proxy_acc(), base, [2], current={2: feasible})
    assert feasible in [t for t, _ in table[2]]


def test_scaling_step_says_so_when_no_triple_is_feasible():
    cfg = SearchConfig(ladder_tol=1e-6)
    base = SP.canonical_base(np.array([1, 2, 2, 1, 2, 2]))
    with pytest.warns(UserWarning, match="no \\(d, w, r\\) of stage 1 is within search.ladder_tol"):
        new, _ = search.scaling_step(SP, cfg, macs_proxy_acc(), base, [1])
    assert search.infeasible_stages(SP, cfg, base, new) == [1]


def test_random_mode_spends_the_gas_budget_on_random_bases():
    cfg = SearchConfig(pop_size=4, num_generations=2, num_alternations=2, n_basenet=2, base_tol=0.2,
                       ladder_tol=0.25)  # 24 genomes of the 216 canonical bases: not exhausted
    calls = {"genetic": [], "random": []}
    out = {m: search.mcea(SP, dataclasses.replace(cfg, proposal=m), synthetic_acc(calls[m]), seed=1)
           for m in ("genetic", "random")}
    assert out["genetic"]["evaluations"] == out["random"]["evaluations"]
    for m, st in out.items():
        assert st["arch_evaluations"] == sum(calls[m])
        assert st["fitness"] <= brute_force(synthetic_acc()) + 1e-9
        f_ref = search.reference_macs(SP, cfg)
        assert abs(SP.base_macs(np.asarray(st["base"]), rule=cfg.flops_rule) - f_ref) <= cfg.base_tol * f_ref
    # the random search's archive holds bases the GA never proposed
    seen = {tuple(g) for g in out["genetic"]["archive"]}
    assert any(tuple(g) not in seen for g in out["random"]["archive"])


def test_num_search_stages_limits_the_fitness_to_the_lower_stages():
    calls = []
    st = search.mcea(SP, dataclasses.replace(CFG, num_search_stages=2, num_alternations=1, num_generations=2),
                     synthetic_acc(calls))
    assert set(st["scaling"]) == {1, 2}
    with pytest.raises(ValueError, match="num_search_stages"):
        search.search_stages(SP, dataclasses.replace(CFG, num_search_stages=4))


def _budget_brute_force(acc, cfg, s):
    f_ref = search.reference_macs(SP, cfg)
    allg = np.array(list(itertools.product(*[range(l, u + 1) for l, u in zip(SP.gene_lower, SP.gene_upper)])))
    allg = np.unique(SP.canonical_base(allg), axis=0)
    tol = cfg.base_tol if s == 0 else cfg.ladder_tol
    best = -np.inf
    for d, w, r in SP.scaling_triples(s):
        f = SP.macs(SP.scale(allg, d, w), int(r), rule=cfg.flops_rule)
        ok = np.abs(f - 2 ** s * f_ref) <= tol * 2 ** s * f_ref
        if ok.any():
            best = max(best, float(acc(SP.scale(allg[ok], d, w), int(r)).max()))
    return best


def test_per_budget_search_finds_each_budgets_optimum_and_resumes(tmp_path):
    cfg = SearchConfig(pop_size=16, num_generations=20, base_tol=0.2, ladder_tol=0.25)
    calls = []
    st = search.per_budget(SP, cfg, synthetic_acc(calls), seed=0)
    assert [m["stage"] for m in st["members"]] == [0, 1, 2, 3]
    assert st["arch_evaluations"] == sum(calls) == st["evaluations"]
    f_ref = search.reference_macs(SP, cfg)
    for m in st["members"]:
        s = m["stage"]
        tol = cfg.base_tol if s == 0 else cfg.ladder_tol
        f = SP.macs(SP.scale(np.asarray(m["base"]), m["d"], m["w"]), m["r"], rule=cfg.flops_rule)
        assert abs(f - 2 ** s * f_ref) <= tol * 2 ** s * f_ref  # inside its own budget
        assert m["d"] in SP.cfg.mult_grid[s] and m["r"] in SP.cfg.res_grid[s]
        np.testing.assert_allclose(m["fitness"], _budget_brute_force(synthetic_acc(), cfg, s), rtol=1e-9)

    class Killed(Exception):
        pass

    def kill(msg):
        if msg.startswith("budget S2 generation 3"):
            raise Killed

    with pytest.raises(Killed):
        search.per_budget(SP, cfg, synthetic_acc(), tmp_path, seed=0, progress=kill)
    resumed = search.per_budget(SP, cfg, synthetic_acc(), tmp_path, seed=0)
    assert resumed["members"] == st["members"] and resumed["evaluations"] == st["evaluations"]
    again_calls = []
    again = search.per_budget(SP, cfg, synthetic_acc(again_calls), tmp_path, seed=0)
    assert again_calls == [] and again["seconds"] == resumed["seconds"] > 0
