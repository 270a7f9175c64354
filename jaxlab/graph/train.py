"""Node classification on padded graphs: masked losses, accuracy, micro-F1, steps.

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
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import runtime
from jaxlab.graph import graphs as G


def node_losses(logits, labels, multilabel: bool):
    """Per-node loss [N]: softmax cross-entropy, or the mean over classes of the
    sigmoid binary cross-entropy (multi-label)."""
    if multilabel:
        return optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype)).mean(-1)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))


def masked_loss(logits, graph, multilabel: bool = False, mask_key: str = "mask"):
    """Scalar loss over `graph.nodes[mask_key]` & real nodes (see module docstring)."""
    nodes = graph.nodes
    m = G.node_mask(graph) & nodes[mask_key].astype(bool)
    per = node_losses(logits, nodes["y"], multilabel)
    if "loss_weight" in nodes:
        return jnp.sum(jnp.where(m, per * nodes["loss_weight"], 0.0))
    return jnp.sum(jnp.where(m, per, 0.0)) / jnp.maximum(m.sum(), 1)


def counts(logits, graph, multilabel: bool = False, mask_key: str = "mask"):
    """Sufficient statistics for accuracy / micro-F1 over masked real nodes:
    dict(correct, total, tp, fp, fn). Sum them over batches, then `scores`."""
    nodes = graph.nodes
    m = G.node_mask(graph) & nodes[mask_key].astype(bool)
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


def make_step(model, tx, multilabel: bool = False, weight_decay: float = 0.0):
    """Jitted `step(params, opt_state, batch, key) -> (params, opt_state, loss)`;
    compiles once per padding budget. Used where wall-clock per step matters
    (experiments, benchmarks); `make_loss_fn` plugs into `jaxlab.core.train` too."""
    loss_fn = make_loss_fn(model, multilabel, weight_decay)

    @functools.partial(jax.jit, donate_argnums=(0, 1), compiler_options=runtime.cpu_compiler_options())
    def step(params, opt_state, batch, key):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, {}, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


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


def train_loop(step, params, opt_state, batches: Callable[[int], object], num_steps: int,
               key, eval_fn: Callable | None = None, eval_every: int = 0,
               time_limit: float | None = None, log: Callable | None = None):
    """Runs `step` over `batches(i)` (a pure function of the step index), evaluating
    every `eval_every` steps. Wall time excludes evaluation. Returns
    (params, opt_state, history) with history rows {step, time, loss, **eval}."""
    history = []
    train_time = 0.0
    loss = jnp.nan
    for i in range(num_steps):
        t0 = time.perf_counter()
        batch = batches(i)
        params, opt_state, loss = step(params, opt_state, batch, jax.random.fold_in(key, i))
        if eval_fn is not None and eval_every and ((i + 1) % eval_every == 0 or i + 1 == num_steps):
            loss = float(loss)
            train_time += time.perf_counter() - t0
            row = dict(step=i + 1, time=train_time, loss=loss, **eval_fn(params))
            history.append(row)
            if log:
                log(row)
            if not np.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss} at step {i + 1}")
        else:
            jax.block_until_ready(loss)
            train_time += time.perf_counter() - t0
        if time_limit is not None and train_time > time_limit:
            break
    return params, opt_state, history
