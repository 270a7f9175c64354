"""Masked losses and metrics against scikit-learn."""

import jax.numpy as jnp
import numpy as np
from sklearn.metrics import f1_score

from jaxlab.graph import graphs as G
from jaxlab.graph import train as T


def _graph(y, mask, extra=None):
    n = len(mask)
    nodes = {"x": np.zeros((n, 1), np.float32), "y": y, "mask": mask}
    nodes.update(extra or {})
    g = G.from_edge_list([0], [1], n, nodes=nodes, symmetric=True)
    return G.pad(g, G.Budget(n + 5, 8, 2))


def test_micro_f1_multilabel_matches_sklearn():
    rng = np.random.default_rng(0)
    y = (rng.random((20, 5)) < 0.4).astype(np.float32)
    logits = rng.normal(size=(20, 5)).astype(np.float32)
    mask = rng.random(20) < 0.7
    g = _graph(y, mask)
    pad_logits = np.concatenate([logits, 100 * np.ones((5, 5), np.float32)])
    c = T.counts(jnp.asarray(pad_logits), g, multilabel=True)
    s = T.scores(c)
    ref = f1_score(y[mask].astype(int), (logits[mask] > 0).astype(int), average="micro")
    np.testing.assert_allclose(s["micro_f1"], ref, rtol=1e-6)
    np.testing.assert_allclose(T.micro_f1(logits, y, mask, multilabel=True), ref, rtol=1e-6)


def test_single_label_accuracy_and_masked_loss():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 12)
    logits = rng.normal(size=(12, 3)).astype(np.float32)
    mask = np.arange(12) % 3 != 0
    g = _graph(y, mask)
    pad_logits = jnp.asarray(np.concatenate([logits, np.zeros((5, 3), np.float32)]))
    s = T.scores(T.counts(pad_logits, g))
    acc = np.mean(logits[mask].argmax(1) == y[mask])
    assert s["accuracy"] == s["micro_f1"] == acc
    lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    per = -lp[np.arange(12), y]
    np.testing.assert_allclose(float(T.masked_loss(pad_logits, g)), per[mask].mean(), rtol=1e-5)
    w = rng.random(12).astype(np.float32)
    gw = _graph(y, mask, {"loss_weight": w})
    np.testing.assert_allclose(float(T.masked_loss(pad_logits, gw)), (per * w)[mask].sum(), rtol=1e-5)
