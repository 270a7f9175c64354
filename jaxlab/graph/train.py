"""Node classification on padded graphs: masked losses, accuracy, micro-F1, the loss
function of `jaxlab.core.train.make_train_step` and full-graph evaluation.

A batch is a padded `GraphsTuple` whose `nodes` dict holds
  "x" [N, F] features, "y" [N] int labels or [N, C] multi-hot (multi-label),
  "mask" [N] bool: the nodes the loss/metric counts (e.g. training nodes of a subgraph),
  optional "loss_weight" [N]: GraphSAINT loss normalisation 1 / (p_v |V_train|); with it
  the loss is sum_v mask_v w_v L_v (an unbiased estimate of the full training loss),
  without it the mean of L_v over masked nodes.
Padding nodes are always excluded (`node_mask`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import runtime
from jaxlab.graph import graphs


def node_losses(logits, labels, multilabel: bool):
    """Per-node loss [N]: softmax cross-entropy, or the mean over classes of the
    sigmoid binary cross-entropy (multi-label)."""
    if multilabel:
        return optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype)).mean(-1)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))


def masked_loss(logits, graph, multilabel: bool = False, mask_key: str = "mask"):
    """Scalar loss over `graph.nodes[mask_key]` & real nodes (see module docstring)."""
    nodes = graph.nodes
    m = graphs.node_mask(graph) & nodes[mask_key].astype(bool)
    per = node_losses(logits, nodes["y"], multilabel)
    if "loss_weight" in nodes:
        return jnp.sum(jnp.where(m, per * nodes["loss_weight"], 0.0))
    return jnp.sum(jnp.where(m, per, 0.0)) / jnp.maximum(m.sum(), 1)


def counts(logits, graph, multilabel: bool = False, mask_key: str = "mask"):
    """Sufficient statistics for accuracy / micro-F1 over masked real nodes:
    dict(correct, total, tp, fp, fn). Sum them over batches, then `scores`."""
    nodes = graph.nodes
    m = graphs.node_mask(graph) & nodes[mask_key].astype(bool)
    y = nodes["y"]
    if multilabel:
        pred = logits > 0
        y = y.astype(bool)
        mm = m[:, None]
        tp = jnp.sum(pred & y & mm)
        fp = jnp.sum(pred & ~y & mm)
        fn = jnp.sum(~pred & y & mm)
        correct = jnp.sum(jnp.all(pred == y, -1) & m)
    else:
        pred = jnp.argmax(logits, -1)
        correct = jnp.sum((pred == y) & m)
        # single-label micro-F1 == accuracy: tp = correct, fp = fn = wrong.
        tp = correct
        fp = fn = jnp.sum(m) - correct
    return dict(correct=correct, total=jnp.sum(m), tp=tp, fp=fp, fn=fn)


def scores(c) -> dict:
    """accuracy (exact match for multi-label) and micro-F1 = 2TP / (2TP + FP + FN)."""
    c = {k: float(v) for k, v in c.items()}
    acc = c["correct"] / max(c["total"], 1.0)
    f1 = 2 * c["tp"] / max(2 * c["tp"] + c["fp"] + c["fn"], 1.0)
    return dict(accuracy=acc, micro_f1=f1)


def accuracy(logits, labels, mask=None) -> float:
    """Plain accuracy of argmax predictions (host helper)."""
    pred = np.asarray(logits).argmax(-1)
    ok = pred == np.asarray(labels)
    if mask is not None:
        ok = ok[np.asarray(mask, bool)]
    return float(ok.mean()) if ok.size else 0.0


def micro_f1(logits, labels, mask=None, multilabel: bool = False) -> float:
    """Micro-F1 (host helper); for single-label equals accuracy."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if mask is not None:
        logits, labels = logits[np.asarray(mask, bool)], labels[np.asarray(mask, bool)]
    if not multilabel:
        return accuracy(logits, labels)
    pred, y = logits > 0, labels.astype(bool)
    tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
    return float(2 * tp / max(2 * tp + fp + fn, 1))


def make_loss_fn(model, multilabel: bool = False, weight_decay: float = 0.0):
    """`loss_fn(params, extra, batch, key) -> (loss, (metrics, extra))`, the signature
    of `jaxlab.core.train.make_train_step`."""

    def loss_fn(params, extra, batch, key):
        logits = model.apply({"params": params}, batch, train=True, rngs={"dropout": key})
        loss = masked_loss(logits, batch, multilabel)
        if weight_decay:
            loss = loss + 0.5 * weight_decay * sum(
                jnp.sum(p ** 2) for p in jax.tree_util.tree_leaves(params))
        return loss, ({"loss": loss}, extra)

    return loss_fn


def make_eval(model, multilabel: bool = False, mask_keys=("train_mask", "val_mask", "test_mask")):
    """Jitted full-graph evaluation: {split: counts} for each mask key present."""

    @functools.partial(jax.jit, compiler_options=runtime.cpu_compiler_options())
    def evaluate(params, graph):
        logits = model.apply({"params": params}, graph, train=False)
        return {k: counts(logits, graph, multilabel, mask_key=k)
                for k in mask_keys if k in graph.nodes}

    def run(params, graph):
        out = evaluate(params, graph)
        return {k.replace("_mask", ""): scores(v) for k, v in out.items()}

    return run
