"""Masked losses and metrics against scikit-learn; the loss function in the engine's
train step against a hand-written update."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.metrics import f1_score

from jaxlab.core import train as train_lib
from jaxlab.graph import graphs, layers
from jaxlab.graph import train as graph_train


def _graph(y, mask, extra=None):
    n = len(mask)
    nodes = {"x": np.zeros((n, 1), np.float32), "y": y, "mask": mask}
    nodes.update(extra or {})
    g = graphs.from_edge_list([0], [1], n, nodes=nodes, symmetric=True)
    return graphs.pad(g, graphs.Budget(n + 5, 8, 2))


def test_micro_f1_multilabel_matches_sklearn():
    rng = np.random.default_rng(0)
    y = (rng.random((20, 5)) < 0.4).astype(np.float32)
    logits = rng.normal(size=(20, 5)).astype(np.float32)
    mask = rng.random(20) < 0.7
    g = _graph(y, mask)
    pad_logits = np.concatenate([logits, 100 * np.ones((5, 5), np.float32)])
    c = graph_train.counts(jnp.asarray(pad_logits), g, multilabel=True)
    s = graph_train.scores(c)
    ref = f1_score(y[mask].astype(int), (logits[mask] > 0).astype(int), average="micro")
    np.testing.assert_allclose(s["micro_f1"], ref, rtol=1e-6)
    np.testing.assert_allclose(graph_train.micro_f1(logits, y, mask, multilabel=True), ref, rtol=1e-6)


def test_single_label_accuracy_and_masked_loss():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 12)
    logits = rng.normal(size=(12, 3)).astype(np.float32)
    mask = np.arange(12) % 3 != 0
    g = _graph(y, mask)
    pad_logits = jnp.asarray(np.concatenate([logits, np.zeros((5, 3), np.float32)]))
    s = graph_train.scores(graph_train.counts(pad_logits, g))
    acc = np.mean(logits[mask].argmax(1) == y[mask])
    assert s["accuracy"] == s["micro_f1"] == acc
    lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    per = -lp[np.arange(12), y]
    np.testing.assert_allclose(float(graph_train.masked_loss(pad_logits, g)), per[mask].mean(), rtol=1e-5)
    w = rng.random(12).astype(np.float32)
    gw = _graph(y, mask, {"loss_weight": w})
    np.testing.assert_allclose(float(graph_train.masked_loss(pad_logits, gw)), (per * w)[mask].sum(), rtol=1e-5)


def test_loss_fn_in_the_engine_step_matches_a_hand_written_sgd_update():
    rng = np.random.default_rng(2)
    n, lr = 10, 0.5
    src = np.arange(n - 1)
    y = rng.integers(0, 3, n)
    mask = np.arange(n) % 2 == 0
    nodes = {"x": rng.normal(size=(n, 4)).astype(np.float32), "y": y, "mask": mask}
    g = graphs.from_edge_list(src, src + 1, n, nodes=nodes, symmetric=True)
    g = jax.tree_util.tree_map(jnp.asarray, graphs.pad(graphs.normalized_graph(graphs.to_scipy(g), nodes, "gcn"),
                                                      graphs.Budget(n + 6, 64, 2)))
    model = layers.GNN(model="gcn", hidden=(8,), num_classes=3, dropout=0.0, prenormalized=True)
    params = model.init(jax.random.key(0), g)["params"]

    def reference_loss(p):  # mean cross-entropy over the masked real nodes, written out
        logits = model.apply({"params": p}, g)[:n]
        logp = jax.nn.log_softmax(logits)
        per = -jnp.take_along_axis(logp, jnp.asarray(y)[:, None], 1)[:, 0]
        return jnp.sum(jnp.where(jnp.asarray(mask), per, 0.0)) / mask.sum()

    expected = jax.tree.map(lambda p, d: p - lr * d, params, jax.grad(reference_loss)(params))
    step = train_lib.make_train_step(graph_train.make_loss_fn(model), donate=False)
    state = train_lib.TrainState.create(params=params, tx=optax.sgd(lr))
    new, metrics = step(state, g, jax.random.key(1))
    np.testing.assert_allclose(float(metrics["loss"]), float(reference_loss(params)), rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), new.params, expected)
    assert int(new.step) == 1
