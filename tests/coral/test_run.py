"""CORAL's actions on the smoke config, resume, the time split, inductive scoring, and the
planted-repository claim (CORAL beats every baseline on top-3)."""

import json

import jax
import numpy as np
import pytest

from jaxlab import cli
from jaxlab.coral import configs, linkpred, ranking, run
from jaxlab.coral import graph as graph_lib
from jaxlab.core import train as train_lib


def _smoke(**kw):
    cfg = configs.get_config("smoke")
    cfg.loop.progress = False
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("coral") / "run"
    assert cli.main(["coral", "build-graph", "--config", "smoke", "--workdir", str(workdir)]) == 0
    assert cli.main(["coral", "train", "--config", "smoke", "--workdir", str(workdir)]) == 0
    return workdir


def test_actions_write_the_workdir(smoke_run):
    g = json.loads((smoke_run / "graph.json").read_text())
    assert g["nodes"]["pr"] == g["train"] and g["edges"]["reviews"] > 0 and g["edges"]["cooccurs"] > 0
    assert len(g["bots"]) == 2
    for name in ("config.json", "metrics.jsonl", "summary.json", "figures/training.png", "prs.json"):
        assert (smoke_run / name).exists(), name
    res = run.evaluate(None, smoke_run)
    summary = json.loads((smoke_run / "summary.json").read_text())["results"]
    assert res["step"] == 60
    np.testing.assert_allclose(res["coral"]["mrr"], summary["coral"]["mrr"], rtol=1e-6)


def test_coral_beats_every_baseline_on_top3_of_the_planted_repository(smoke_run):
    # The planted reviewer habit (an author's buddy reviews 70% of their changes, the team the
    # rest) is visible through the author's `creates` edge; file history and path similarity
    # only see the team, and new files have no history at all.
    res = json.loads((smoke_run / "summary.json").read_text())["results"]
    for name in ("random", "repo_frequency", "file_frequency", "revfinder"):
        assert res["coral"]["top3"] > res[name]["top3"] + 0.05, (name, res)
    assert res["coral"]["mrr"] > max(res[n]["mrr"] for n in ("random", "repo_frequency", "file_frequency",
                                                               "revfinder"))


def test_recommend_never_names_the_author(smoke_run, tmp_path):
    import shutil

    wd = tmp_path / "rec"
    shutil.copytree(smoke_run, wd)
    out = run.recommend(configs.get_config("smoke"), wd)
    assert len(out["recommended"]) == 5
    assert out["author"] not in [r["reviewer"] for r in out["recommended"]]
    loaded = run.load(wd)
    problem, scorer = loaded.extras["problem"], loaded.extras["scorer"]
    for pr, (pool, scores) in zip(problem.test, scorer.score(loaded.state.params, problem.test), strict=True):
        assert pr.author not in pool and len(pool) == len(scores)


def test_time_split_leaks_nothing_and_inductive_scoring_is_pure(smoke_run):
    loaded = run.load(smoke_run)
    problem, scorer, params = loaded.extras["problem"], loaded.extras["scorer"], loaded.state.params
    cut = max(p.time for p in problem.train)
    assert all(p.time >= cut for p in problem.test)
    g = problem.graph
    assert not any(g.has("pr", p.id) for p in problem.test)
    test_only = {t for p in problem.test for t in graph_lib.tokenize(p.title + " " + p.body)} - {
        t for p in problem.train for t in graph_lib.tokenize(p.title + " " + p.body + " " + " ".join(p.files))}
    assert not (test_only & g.vocab)
    # scoring new PRs does not change the parameters, nor the representation of any trained node,
    # and scoring them together equals scoring them one at a time.
    before = jax.tree.map(np.array, params)
    model = loaded.model
    h0 = np.asarray(linkpred.forward(model, params, linkpred.device_arrays(g)))[: g.num_nodes]
    g2, _, arrays = scorer.prepare_full(problem.test[:5])
    h1 = np.asarray(linkpred.forward(model, params, arrays))[: g.num_nodes]
    np.testing.assert_allclose(h1, h0, rtol=1e-5, atol=1e-5)
    together = scorer.score(params, problem.test[:5])
    for i, pr in enumerate(problem.test[:5]):
        np.testing.assert_allclose(scorer.score(params, [pr])[0][1], together[i][1], rtol=1e-4, atol=1e-4)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.array, params), before)


@pytest.mark.parametrize("layers", [1, 2])
def test_fast_scorer_equals_a_forward_pass_over_the_whole_extended_graph(smoke_run, layers):
    # The fast path (local graph of the new PRs, trained nodes frozen to the precomputed table)
    # against the reference (graph.extend + a forward pass of every node); 2 layers exercise the
    # frozen layer inputs, a new file (messages from its path tokens) and several PRs at once.
    loaded = run.load(smoke_run)
    problem, cfg = loaded.extras["problem"], loaded.config
    cfg.model.layers = layers
    model = linkpred.make_model(cfg, problem.graph)
    params = loaded.state.params if layers == 1 else linkpred.init_state(
        cfg, model, linkpred.device_arrays(problem.graph)).params
    scorer = linkpred.Scorer(problem, model, cfg)
    prs = problem.test[:12]
    assert any(not problem.graph.has("file", f) for p in prs for f in p.files)
    fast, full = scorer.score(params, prs), scorer.score_full(params, prs)
    for (pool_a, sa), (pool_b, sb) in zip(fast, full, strict=True):
        assert pool_a == pool_b and len(pool_a) > 3
        np.testing.assert_allclose(sa, sb, rtol=1e-4, atol=1e-4)
    assert all(p == ranking.candidate_pool(pr, problem.train, cfg.pool_days, problem.bots)
               for pr, (p, _) in zip(prs, fast, strict=True))


def test_killed_and_resumed_training_gives_the_same_parameters(smoke_run, tmp_path):
    cfg = configs.get_config("smoke")
    cfg.loop.progress = False
    problem, arrays, model = run._setup(cfg, smoke_run)
    step = train_lib.make_train_step(linkpred.make_loss_fn(model, arrays, problem.users, cfg.loss))
    batch_fn = linkpred.make_batch_fn(problem, cfg)
    kw = dict(loop=cfg.loop, seed=cfg.seed)
    ref, _ = train_lib.fit(linkpred.init_state(cfg, model, arrays), step, batch_fn, workdir=tmp_path / "a", **kw)
    train_lib.fit(linkpred.init_state(cfg, model, arrays), step, batch_fn, workdir=tmp_path / "b", stop_after=30, **kw)
    resumed, _ = train_lib.fit(linkpred.init_state(cfg, model, arrays), step, batch_fn, workdir=tmp_path / "b", **kw)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.array, resumed.params),
                 jax.tree.map(np.array, ref.params))


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    code = cli.main(["coral", "build-graph", "--config", "smoke", "--workdir", str(tmp_path / "w"),
                     f"--config.repo={tmp_path}"])
    assert code == 2 and "not a git repository" in capsys.readouterr().err
    code = cli.main(["coral", "build-graph", "--config", "smoke", "--workdir", str(tmp_path / "w2"),
                     "--config.repo=x", "--config.export=y"])
    assert code == 2
