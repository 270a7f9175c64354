"""Data: contextual SBM, GraphSAINT folder and Planetoid round trips and rejection of
malformed files, karate club semi-supervised GCN."""

import collections
import json
import pickle

import jax
import numpy as np
import optax
import pytest
import scipy.sparse as sp

from jaxlab.core import train as train_lib
from jaxlab.graph import data as graph_data
from jaxlab.graph import layers
from jaxlab.graph import train as graph_train


@pytest.mark.parametrize("h", [0.1, 0.5, 0.9])
def test_csbm_homophily_and_shapes(h):
    d = graph_data.contextual_sbm(3000, num_classes=4, avg_degree=8, homophily=h, num_features=6, seed=1)
    assert d.adj.shape == (3000, 3000) and d.x.shape == (3000, 6)
    assert abs(graph_data.edge_homophily(d.adj, d.y) - h) < 0.03
    assert (d.adj != d.adj.T).nnz == 0 and d.adj.diagonal().sum() == 0
    deg = np.diff(d.adj.indptr)
    assert 7 < deg.mean() < 8.5
    assert len(np.intersect1d(d.train, d.test)) == 0
    assert np.array_equal(np.bincount(d.y), [750] * 4)
    # deterministic in the seed
    d2 = graph_data.contextual_sbm(3000, num_classes=4, avg_degree=8, homophily=h, num_features=6, seed=1)
    assert (d.adj != d2.adj).nnz == 0 and np.array_equal(d.x, d2.x)


def test_graphsaint_round_trip(tmp_path):
    d = graph_data.contextual_sbm(300, num_classes=3, avg_degree=5, seed=0)
    graph_data.write_graphsaint(d, tmp_path / "g")
    r = graph_data.read_graphsaint(tmp_path / "g", scale="none")
    assert (r.adj != d.adj).nnz == 0
    np.testing.assert_array_equal(r.x, d.x)
    np.testing.assert_array_equal(r.y, d.y)
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(r, k), getattr(d, k))
    adj_train = sp.load_npz(tmp_path / "g" / "adj_train.npz")
    assert set(np.unique(adj_train.tocoo().row)) <= set(d.train)
    s = graph_data.read_graphsaint(tmp_path / "g")  # standardised on the training nodes
    np.testing.assert_allclose(s.x[d.train].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(s.x[d.train].std(0), 1, atol=1e-4)
    # multi-label class maps
    m = graph_data.GraphData(d.adj, d.x, (np.random.default_rng(0).random((300, 4)) < 0.3).astype(np.float32),
                    d.train, d.val, d.test)
    graph_data.write_graphsaint(m, tmp_path / "m")
    rm = graph_data.read_graphsaint(tmp_path / "m")
    assert rm.multilabel and np.array_equal(rm.y, m.y)


def _corrupt(folder, name, content):
    p = folder / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)


@pytest.mark.parametrize("name,content,match", [
    ("role.json", '{"tr": [0, 1], "va": [2]}', r"role\.json.*'te'"),
    ("role.json", '{"tr": [0, 999999], "va": [], "te": []}', r"role\.json.*'tr'.*outside"),
    ("role.json", '{"tr": [0, 1,\n', r"role\.json.*line"),
    ("class_map.json", '{"0": 1}', r"class_map\.json.*no label for node '1'"),
    ("class_map.json", None, r"class_map\.json.*labels must all be"),
    ("feats.npy", None, r"feats\.npy.*expected shape"),
    ("adj_full.npz", b"garbage", r"adj_full\.npz.*scipy"),
])
def test_graphsaint_rejects_malformed_files(tmp_path, name, content, match):
    d = graph_data.contextual_sbm(50, num_classes=2, avg_degree=4, seed=0)
    f = graph_data.write_graphsaint(d, tmp_path / "g")
    if name == "feats.npy":
        np.save(f / "feats.npy", d.x[:10])
    elif name == "class_map.json" and content is None:
        cm = {str(i): (1 if i else [0, 1]) for i in range(50)}
        _corrupt(f, name, json.dumps(cm))
    else:
        _corrupt(f, name, content)
    with pytest.raises(graph_data.GraphFormatError, match=match):
        graph_data.read_graphsaint(f)


def test_graphsaint_missing_file(tmp_path):
    d = graph_data.contextual_sbm(50, num_classes=2, avg_degree=4, seed=0)
    f = graph_data.write_graphsaint(d, tmp_path / "g")
    (f / "feats.npy").unlink()
    with pytest.raises(graph_data.GraphFormatError, match=r"feats\.npy: missing"):
        graph_data.read_graphsaint(f)


def test_planetoid_round_trip(tmp_path):
    d = graph_data.contextual_sbm(400, num_classes=3, avg_degree=5, seed=3, split=(0.1, 0.2, 0.3))
    node_at = graph_data.write_planetoid(d, tmp_path, "toy")
    # files are exactly Planetoid's types
    with open(tmp_path / "ind.toy.graph", "rb") as fh:
        graph = pickle.load(fh, encoding="latin1")
    assert isinstance(graph, collections.defaultdict)
    with open(tmp_path / "ind.toy.allx", "rb") as fh:
        assert sp.issparse(pickle.load(fh))
    with open(tmp_path / "ind.toy.ty", "rb") as fh:
        ty = pickle.load(fh)
    assert isinstance(ty, np.ndarray) and ty.shape == (len(d.test), 3)
    r = graph_data.read_planetoid(tmp_path, "toy", num_val=len(d.val))
    np.testing.assert_allclose(r.x, d.x[node_at], rtol=1e-6)
    np.testing.assert_array_equal(r.y, d.y[node_at])
    P = sp.csr_matrix((np.ones(400), (np.arange(400), node_at)), shape=(400, 400))
    assert (r.adj != P @ d.adj @ P.T).nnz == 0
    np.testing.assert_array_equal(np.sort(node_at[r.train]), d.train)
    np.testing.assert_array_equal(np.sort(node_at[r.val]), d.val)
    np.testing.assert_array_equal(np.sort(node_at[r.test]), d.test)


@pytest.mark.parametrize("field,obj,match", [
    ("tx", np.zeros((3, 3)), r"ind\.toy\.tx: field 'tx' has 3 feature columns"),
    ("ally", [1, 2], r"ind\.toy\.ally: field 'ally' must be a 2-D one-hot"),
    ("graph", [[1]], r"ind\.toy\.graph: field 'graph' must be a dict"),
    ("graph", {0: [10 ** 6]}, r"ind\.toy\.graph: field 'graph' edge"),
    ("y", "not-a-pickle", r"ind\.toy\.y: not a readable pickle"),
])
def test_planetoid_rejects_malformed_files(tmp_path, field, obj, match):
    d = graph_data.contextual_sbm(100, num_classes=2, avg_degree=4, seed=0, split=(0.2, 0.2, 0.3))
    graph_data.write_planetoid(d, tmp_path, "toy")
    if isinstance(obj, str):
        (tmp_path / f"ind.toy.{field}").write_text(obj)
    else:
        with open(tmp_path / f"ind.toy.{field}", "wb") as fh:
            pickle.dump(obj, fh, protocol=2)
    with pytest.raises(graph_data.GraphFormatError, match=match):
        graph_data.read_planetoid(tmp_path, "toy")


def test_planetoid_bad_test_index_line(tmp_path):
    d = graph_data.contextual_sbm(100, num_classes=2, avg_degree=4, seed=0, split=(0.2, 0.2, 0.3))
    graph_data.write_planetoid(d, tmp_path, "toy")
    p = tmp_path / "ind.toy.test.index"
    lines = p.read_text().splitlines()
    lines[2] = "abc"
    p.write_text("\n".join(lines))
    with pytest.raises(graph_data.GraphFormatError, match=r"ind\.toy\.test\.index:3: expected an integer"):
        graph_data.read_planetoid(tmp_path, "toy")


def test_karate_gcn_two_labels_recovers_communities():
    d = graph_data.karate_club()
    assert d.num_nodes == 34 and list(d.train) == [0, 33] and d.y[0] != d.y[33]
    g = d.full_graph("gcn")
    net = layers.GNN(model="gcn", hidden=(16,), num_classes=2, prenormalized=True)
    params = net.init(jax.random.key(0), g)["params"]
    state = train_lib.TrainState.create(params=params, tx=optax.adam(0.01))
    step = train_lib.make_train_step(graph_train.make_loss_fn(net, False))
    for i in range(200):
        state, _ = step(state, g, jax.random.key(i))
    logits = np.asarray(net.apply({"params": state.params}, g))[:34]
    acc = graph_train.accuracy(logits, d.y)
    assert acc >= 0.9, acc
