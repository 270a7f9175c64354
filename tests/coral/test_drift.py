"""The drift metrics (stale / fresh recommendations of team movers) and the seed-interval table."""

import numpy as np

from jaxlab.coral import drift, report
from jaxlab.coral.data import PlantedTruth
from jaxlab.coral.gitlog import PullRequest


def _truth():
    # m moves from team 0 to team 1 at t = 100; a, b stay in team 0, c in team 1.
    return PlantedTruth(team={"a": [(0.0, 0)], "b": [(0.0, 0)], "c": [(0.0, 1)], "m": [(0.0, 0), (100.0, 1)]},
                        buddy={}, movers=["m"], bots=[], topics=["x", "y"])


def test_stale_and_fresh_counts_by_hand():
    prs = [PullRequest("1", 150.0, "a", ("b",)),   # former teammate of m: m in the top 3 is stale
           PullRequest("2", 160.0, "b", ("a",)),   # former teammate: m not in the top 3
           PullRequest("3", 170.0, "c", ("m",)),   # m reviews in the new team: fresh hit
           PullRequest("4", 50.0, "a", ("m",))]    # before the move: m is a current teammate (neither)
    rows = [(["b", "m", "c", "x"], np.array([3.0, 2.0, 1.0, 0.0])),
            (["a", "m", "c", "x"], np.array([3.0, 0.0, 2.0, 1.0])),
            (["a", "m", "b"], np.array([0.0, 1.0, 0.5])),
            (["b", "m", "c"], np.array([1.0, 2.0, 0.0]))]
    m = drift.drift_metrics(prs, rows, _truth(), k=3)
    assert m == {"stale_top3": 0.5, "stale_prs": 2, "fresh_top3": 1.0, "fresh_prs": 1}
    m1 = drift.drift_metrics(prs, rows, _truth(), k=1)
    assert m1["stale_top1"] == 0.0 and m1["fresh_top1"] == 1.0


def test_top_k_breaks_ties_without_favouring_the_pool_order():
    pool = [f"u{i}" for i in range(20)]
    firsts = {drift.top_k([np.zeros(20)], [pool], 1, seed=s)[0][0] for s in range(30)}
    assert len(firsts) > 5


def test_seed_interval_is_the_student_t_interval():
    mean, lo, hi = report.interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and np.isclose(hi - mean, 4.302653 / np.sqrt(3), rtol=1e-5) and np.isclose(mean - lo, hi - mean)
    table = report.seed_table({"x": [{"top3": 0.5}, {"top3": 0.5}]}, ("top3",))
    assert "| x | 0.500 [0.500, 0.500] |" in table and "n = 2 seeds" in table


def test_recency_weighting_halves_an_edge_per_half_life():
    from jaxlab.coral import graph as graph_lib
    from jaxlab.coral.configs import GraphConfig

    day = 86400.0
    prs = [PullRequest("old", 0.0, "a", ("b",), files=("x/y.py",), title="cache fix"),
           PullRequest("new", 20 * day, "a", ("c",), files=("x/y.py",), title="cache flush")]
    g = graph_lib.build_graph(prs, GraphConfig(min_token_count=1), ref_time=20 * day, half_life_days=10.0)
    for pr, w in (("old", 0.25), ("new", 1.0)):
        p = g.node("pr", pr)
        mine = (g.src == p) | (g.dst == p)
        assert mine.sum() >= 4 and np.allclose(g.weight[mine & (g.etype != graph_lib.R["mentions"])], w)
    flat = graph_lib.build_graph(prs, GraphConfig(min_token_count=1))
    assert np.all(flat.weight[flat.etype != graph_lib.R["cooccurs"]] >= 1.0)
