"""The metric-guided sampler (a *reconstruction*), sampler factory and the CLI actions."""

import json

import numpy as np
import pytest

from jaxlab.core.config import ConfigError, override
from jaxlab.graph import data as D
from jaxlab.graph import graphs as G
from jaxlab.meguide import configs, run
from jaxlab.meguide import metrics as M
from jaxlab.meguide.sampler import MeGuideSampler


@pytest.fixture(scope="module")
def sbm():
    return D.contextual_sbm(2000, num_classes=4, avg_degree=8, num_features=8, seed=0)


def test_meguide_sampler_sizes_preference_and_induced(sbm):
    tm = sbm.masks()["train_mask"]
    nodes = {"x": sbm.x, "y": sbm.y}
    s = MeGuideSampler(sbm.adj, nodes, tm, node_budget=300, uniform_mix=0.0, score_power=2.0,
                       norm_aggr=True, norm_loss=True)
    s.estimate_normalization(20)
    sizes = [len(s.sample_step(i)[0]) for i in range(10)]
    assert 0.7 * 300 < np.mean(sizes) < 1.3 * 300
    # every sampled node is a connected training node (walks stop at failures)
    ids, snd, rcv, _, mask = s.sample_step(0)
    assert mask.all()
    np.testing.assert_array_equal(
        np.sort(np.asarray(sbm.adj[ids][:, ids].nonzero()).T, 0),
        np.sort(np.stack([rcv, snd], 1), 0))
    # roots prefer high node smoothness; prefer="low" the opposite; mix=1 uniform
    score = M.node_smoothness(sbm.adj, sbm.x)[s.train_nodes]
    low = MeGuideSampler(sbm.adj, nodes, tm, node_budget=300, prefer="low", uniform_mix=0.0)
    uni = MeGuideSampler(sbm.adj, nodes, tm, node_budget=300, uniform_mix=1.0)
    assert np.sum(s.root_prob * score) > np.mean(score) > np.sum(low.root_prob * score)
    np.testing.assert_allclose(uni.root_prob, 1 / len(score))
    g = s.batch(3)
    assert g.nodes["loss_weight"].sum() > 0 and np.isfinite(G.edge_weights(g)).all()


@pytest.mark.parametrize("name", configs.SAMPLERS)
def test_every_sampler_builds_a_padded_batch(name):
    cfg = override(configs.get_config("smoke"), [f"sampler={name}"])
    data = run.load_data(cfg)
    sampler = run.make_sampler(cfg, data)
    g = sampler.batch(0)
    n = int(g.n_node[0])
    assert g.nodes["x"].shape[0] > n and g.nodes["mask"][:n].any()
    assert not g.nodes["mask"][n:].any()


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="'sampler'"):
        override(configs.get_config("smoke"), ["sampler=bogus"])
    with pytest.raises(ConfigError, match="model.kind"):
        override(configs.get_config("smoke"), ["model.kind=mlp"])
    import dataclasses
    with pytest.raises(ConfigError, match="'sampler'"):
        run.check_config(dataclasses.replace(configs.get_config("smoke"), sampler="bogus"))


def test_train_evaluate_and_resume(tmp_path):
    cfg = configs.get_config("smoke")
    res = run.train(cfg, tmp_path / "a")
    assert res["steps"] == cfg.num_steps and res["test_accuracy"] > 0.5
    assert res["padding_budgets"] <= 4
    for f in ("config.json", "metrics.jsonl", "summary.json", "figures/accuracy.png"):
        assert (tmp_path / "a" / f).exists(), f
    ev = run.evaluate(None, tmp_path / "a")
    assert ev["test_accuracy"] == pytest.approx(res["test_accuracy"])
    assert 0 < ev["label_smoothness"] < 2
    json.loads((tmp_path / "a" / "evaluation.json").read_text())
    # a run stopped half-way and resumed ends where an uninterrupted one does
    from jaxlab.core import train as train_lib
    orig_fit = train_lib.fit

    def half_fit(*a, **k):
        k["stop_after"] = cfg.num_steps // 2
        return orig_fit(*a, **k)

    train_lib.fit = half_fit
    try:
        run.train(cfg, tmp_path / "b")
    finally:
        train_lib.fit = orig_fit
    res_b = run.train(cfg, tmp_path / "b")
    assert res_b["test_accuracy"] == pytest.approx(res["test_accuracy"])


def test_graphsaint_folder_multilabel_through_the_pipeline(tmp_path):
    import jax

    from jaxlab.graph import train as T

    d = D.contextual_sbm(300, num_classes=3, avg_degree=5, num_features=6, seed=0)
    y = (np.random.default_rng(0).random((300, 4)) < 0.3).astype(np.float32)
    D.write_graphsaint(D.GraphData(d.adj, d.x, y, d.train, d.val, d.test), tmp_path / "ml")
    cfg = override(configs.get_config("smoke"),
                   [f"data={tmp_path / 'ml'}", "sampler=saint-node", "model.kind=sage"])
    data = run.load_data(cfg)
    assert data.multilabel and data.num_classes == 4
    batch = run.make_sampler(cfg, data).batch(0)
    model = run.make_model(cfg, data)
    params = model.init(jax.random.key(0), batch)["params"]
    loss_fn = T.make_loss_fn(model, multilabel=True)
    (loss, _), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, {}, batch, jax.random.key(1))
    assert np.isfinite(float(loss)) and all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    scores = T.make_eval(model, multilabel=True)(params, run.eval_graph(cfg, data))
    assert set(scores) == {"train", "val", "test"} and 0 <= scores["test"]["micro_f1"] <= 1
