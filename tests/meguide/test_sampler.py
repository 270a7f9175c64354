"""The metric-guided sampler (a *reconstruction*) and the sampler factory."""

import jax
import numpy as np
import pytest

from jaxlab.core.config import override
from jaxlab.graph import data as graph_data
from jaxlab.graph import graphs
from jaxlab.graph import train as graph_train
from jaxlab.meguide import configs, metrics, run
from jaxlab.meguide.sampler import MeGuideSampler, make_sampler


@pytest.fixture(scope="module")
def sbm():
    return graph_data.contextual_sbm(2000, num_classes=4, avg_degree=8, num_features=8, seed=0)


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
    score = metrics.node_smoothness(sbm.adj, sbm.x)[s.train_nodes]
    low = MeGuideSampler(sbm.adj, nodes, tm, node_budget=300, prefer="low", uniform_mix=0.0)
    uni = MeGuideSampler(sbm.adj, nodes, tm, node_budget=300, uniform_mix=1.0)
    assert np.sum(s.root_prob * score) > np.mean(score) > np.sum(low.root_prob * score)
    np.testing.assert_allclose(uni.root_prob, 1 / len(score))
    g = s.batch(3)
    assert g.nodes["loss_weight"].sum() > 0 and np.isfinite(graphs.edge_weights(g)).all()


@pytest.mark.parametrize("name", configs.SAMPLERS)
def test_every_sampler_builds_a_padded_batch(name):
    cfg = override(configs.get_config("smoke"), [f"sampler={name}"])
    data = run.load_data(cfg)
    sampler = make_sampler(cfg, data)
    g = sampler.batch(0)
    n = int(g.n_node[0])
    assert g.nodes["x"].shape[0] > n and g.nodes["mask"][:n].any()
    assert not g.nodes["mask"][n:].any()
    # a batch is a pure function of (seed, step): a resumed run sees the same subgraphs
    again = make_sampler(cfg, data).batch(0)
    np.testing.assert_array_equal(np.asarray(g.senders), np.asarray(again.senders))


def test_train_graph_restricts_walks_to_training_nodes():
    # random walks on the whole graph reach non-training nodes (loss mask False); on the
    # graph induced on the training nodes (GraphSAINT's inductive protocol) they cannot
    masks = {}
    for graph in ("full", "train"):
        cfg = override(configs.get_config("smoke"), ["sampler=saint-rw", f"train_graph={graph}"])
        g = make_sampler(cfg, run.load_data(cfg)).batch(0)
        masks[graph] = np.asarray(g.nodes["mask"][: int(g.n_node[0])])
    assert not masks["full"].all() and masks["train"].all()


def test_graphsaint_folder_multilabel_through_the_pipeline(tmp_path):
    d = graph_data.contextual_sbm(300, num_classes=3, avg_degree=5, num_features=6, seed=0)
    y = (np.random.default_rng(0).random((300, 4)) < 0.3).astype(np.float32)
    graph_data.write_graphsaint(graph_data.GraphData(d.adj, d.x, y, d.train, d.val, d.test), tmp_path / "ml")
    cfg = override(configs.get_config("smoke"),
                   [f"data={tmp_path / 'ml'}", "sampler=saint-node", "model.kind=sage"])
    data = run.load_data(cfg)
    assert data.multilabel and data.num_classes == 4
    batch = make_sampler(cfg, data).batch(0)
    model = run.make_model(cfg, data)
    params = model.init(jax.random.key(0), batch)["params"]
    loss_fn = graph_train.make_loss_fn(model, multilabel=True)
    (loss, _), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, {}, batch, jax.random.key(1))
    assert np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    scores = run.make_eval_fn(model, data, run.eval_graph(cfg, data))(params)
    assert {"train_micro_f1", "val_micro_f1", "test_micro_f1"} <= set(scores)
    assert 0 <= scores["test_micro_f1"] <= 1


@pytest.mark.parametrize("name", ["saint-node", "saint-edge", "saint-rw", "cluster", "neighbor", "meguide"])
def test_match_nodes_per_batch_reaches_the_target(sbm, name):
    from jaxlab.meguide.sampler import batch_sizes, match_nodes_per_batch, size_setting

    cfg = override(configs.get_config("smoke"), [f"sampler={name}"])
    # 2000 / target is a whole number: Cluster-GCN's batches are 1/k of the graph
    for target in (500, 200):
        matched = match_nodes_per_batch(cfg, sbm, target)
        got = batch_sizes(make_sampler(matched, sbm, normalize=False))["nodes_per_batch"]
        assert abs(got - target) <= 0.05 * target, (name, target, got, size_setting(matched))
    # only the size field moved (the sizes for 200 nodes differ from every smoke default)
    changed = [k for k in configs.MeGuideConfig.__dataclass_fields__
               if getattr(matched, k) != getattr(cfg, k)]
    assert changed == [next(iter(size_setting(cfg))).split(".")[0]]


def test_match_nodes_per_batch_leaves_full_batch_and_rejects_whole_graph_targets(sbm):
    from jaxlab.meguide.sampler import match_nodes_per_batch

    cfg = override(configs.get_config("smoke"), ["sampler=full"])
    assert match_nodes_per_batch(cfg, sbm, 300) is cfg
    with pytest.raises(ValueError, match="nodes_per_batch=2000 must be below the graph's 2000 nodes"):
        match_nodes_per_batch(override(cfg, ["sampler=saint-rw"]), sbm, 2000)


def test_fixed_walks_pass_non_training_nodes_and_cfd_walks_do_not(sbm):
    tm = sbm.masks()["train_mask"]
    nodes = {"x": sbm.x, "y": sbm.y}
    cfd = MeGuideSampler(sbm.adj, nodes, tm, node_budget=300)
    fixed = MeGuideSampler(sbm.adj, nodes, tm, node_budget=300, walk="fixed")
    assert fixed.fixed_walk_length == max(1, round(cfd.expected_walk_length))
    assert all(cfd.sample_step(i)[4].all() for i in range(5))
    assert all(not fixed.sample_step(i)[4].all() for i in range(5))
    # a fixed walk of length L from each root visits at most 1 + L nodes per root
    long = MeGuideSampler(sbm.adj, nodes, tm, node_budget=300, walk="fixed", fixed_walk_length=3)
    assert long.num_roots == round(300 / 4)
    ids = long.sample_step(0)[0]
    assert len(ids) <= long.num_roots * 4 and (~tm[ids]).any()
    with pytest.raises(ValueError, match="walk must be 'cfd' or 'fixed'"):
        MeGuideSampler(sbm.adj, nodes, tm, walk="uniform")


def test_multilabel_sbm_keeps_the_graph_and_draws_labels_by_class():
    one = graph_data.contextual_sbm(3000, num_classes=4, seed=3)
    many = graph_data.contextual_sbm(3000, num_classes=4, seed=3, num_labels=10)
    assert (one.adj != many.adj).nnz == 0 and np.array_equal(one.x, many.x)
    assert many.multilabel and many.y.shape == (3000, 10) and set(np.unique(many.y)) == {0, 1}
    # per class, label frequencies are ~0.8 (owned) or ~0.05 (not), and every class owns one
    for c in range(4):
        freq = many.y[one.y == c].mean(0)
        assert np.all((np.abs(freq - 0.8) < 0.06) | (np.abs(freq - 0.05) < 0.03)), freq
        assert (freq > 0.5).any()
