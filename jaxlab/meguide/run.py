"""MeGuide actions: `train` (any `jaxlab.graph` model with any sampler) and `evaluate`.

    jaxlab meguide train --config default --workdir runs/meguide \
        --config.sampler=meguide --config.data=sbm --config.model.kind=sage
    jaxlab meguide evaluate --workdir runs/meguide
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from jaxlab.core import runtime
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.core.config import ConfigError
from jaxlab.graph import data as D
from jaxlab.graph import layers as L
from jaxlab.graph import samplers as S
from jaxlab.graph import train as T
from jaxlab.meguide import metrics as M
from jaxlab.meguide.configs import SAMPLERS, MeGuideConfig
from jaxlab.meguide.sampler import MeGuideSampler

__all__ = ["train", "evaluate", "load", "load_data", "make_sampler", "make_model", "ACTIONS"]


def check_config(config: MeGuideConfig) -> None:
    def bad(field, value, allowed):
        raise ConfigError(f"config field '{field}' expects one of {list(allowed)}, got {value!r}")

    if config.sampler not in SAMPLERS:
        bad("sampler", config.sampler, SAMPLERS)
    if config.model.kind not in ("gcn", "sage", "gat"):
        bad("model.kind", config.model.kind, ("gcn", "sage", "gat"))
    if config.train_graph not in ("full", "train"):
        bad("train_graph", config.train_graph, ("full", "train"))
    if config.meguide.prefer not in ("high", "low"):
        bad("meguide.prefer", config.meguide.prefer, ("high", "low"))
    if config.sampler == "full" and config.train_graph == "train":
        raise ConfigError("config field 'train_graph' must be 'full' with sampler=full")


def load_data(config: MeGuideConfig) -> D.GraphData:
    """The dataset named by `config.data` (see `jaxlab.graph.data.load`)."""
    if config.data == "sbm":
        return D.contextual_sbm(seed=config.seed, **dataclasses.asdict(config.sbm))
    if config.data == "karate":
        return D.karate_club()
    if config.data.startswith("planetoid:"):
        _, folder, name = config.data.split(":", 2)
        return D.read_planetoid(folder, name, scale=config.feature_scale)
    return D.read_graphsaint(config.data, scale=config.feature_scale)


def make_sampler(config: MeGuideConfig, data: D.GraphData):
    """The sampler of `config.sampler` over the full or the training graph, with its
    GraphSAINT normalisation pre-sampled where it uses one."""
    masks = data.masks()
    nodes = {"x": data.x.astype(np.float32), "y": data.y}
    tm = masks["train_mask"]
    adj = data.adj
    if config.train_graph == "train":
        keep = sp.diags(tm.astype(np.float32))
        adj = (keep @ adj @ keep).tocsr()
        adj.eliminate_zeros()
    common = dict(model=config.model.kind, seed=config.seed, budget_multiple=config.budget_multiple,
                  budget_growth=config.budget_growth)
    s, c = config.sampler, config.saint
    saint_norm = dict(norm_aggr=c.norm_aggr, norm_loss=c.norm_loss)
    if s == "full":
        return S.FullBatch(data.adj, nodes, tm, model=config.model.kind,
                           budget_multiple=config.budget_multiple)
    if s == "saint-node":
        sampler = S.SaintNodeSampler(adj, nodes, tm, budget=c.node_budget, **saint_norm, **common)
    elif s == "saint-edge":
        sampler = S.SaintEdgeSampler(adj, nodes, tm, num_edges=c.num_edges, **saint_norm, **common)
    elif s == "saint-rw":
        sampler = S.SaintRWSampler(adj, nodes, tm, num_roots=c.num_roots, walk_length=c.walk_length,
                                   **saint_norm, **common)
    elif s == "cluster":
        return S.ClusterSampler(adj, nodes, tm, num_parts=config.cluster.num_parts,
                                clusters_per_batch=config.cluster.clusters_per_batch,
                                partition_all=config.train_graph == "full", **common)
    elif s == "neighbor":
        return S.NeighborSampler(adj, nodes, tm, batch_size=config.neighbor.batch_size,
                                 fanouts=config.neighbor.fanouts, **common)
    else:
        m = config.meguide
        sampler = MeGuideSampler(
            adj, nodes, tm, node_budget=m.node_budget, prefer=m.prefer, score_power=m.score_power,
            uniform_mix=m.uniform_mix, max_walk_length=m.max_walk_length, patience=m.patience,
            smoothness_scaling=m.smoothness_scaling, cfd_walks=m.cfd_walks,
            norm_aggr=m.norm_aggr, norm_loss=m.norm_loss, **common)
        if m.norm_aggr or m.norm_loss:
            sampler.estimate_normalization(m.presample)
        return sampler
    if c.norm_aggr or c.norm_loss:
        sampler.estimate_normalization(c.presample)
    return sampler


def make_model(config: MeGuideConfig, data: D.GraphData) -> L.GNN:
    m = config.model
    return L.GNN(model=m.kind, hidden=tuple(m.hidden), num_classes=data.num_classes,
                 dropout=m.dropout, heads=m.heads, prenormalized=m.kind != "gat",
                 dtype=jnp.dtype(m.dtype))


def make_optimizer(config: MeGuideConfig) -> optax.GradientTransformation:
    if config.opt.weight_decay:
        return optax.adamw(config.opt.lr, weight_decay=config.opt.weight_decay)
    return optax.adam(config.opt.lr)


def init_state(config: MeGuideConfig, model: L.GNN, example) -> train_lib.TrainState:
    params = model.init(jax.random.key(config.seed), example)["params"]
    return train_lib.TrainState.create(params=params, tx=make_optimizer(config))


def eval_graph(config: MeGuideConfig, data: D.GraphData):
    """The whole graph, normalised for the model, with train/val/test masks."""
    return jax.tree_util.tree_map(jnp.asarray, data.full_graph(
        config.model.kind, prenormalize=config.model.kind != "gat",
        budget_multiple=config.budget_multiple))


def train(config: MeGuideConfig, workdir: str | pathlib.Path) -> dict:
    """Trains `config.model` with `config.sampler`, evaluating on the whole graph.

    metrics.jsonl rows with `eval_*` keys carry val/test accuracy and micro-F1 and
    `eval_train_time_s`, the training wall time so far (sampling + steps, compiles
    included, evaluation excluded). Resumes from `workdir/checkpoints`.
    """
    check_config(config)
    workdir = workdir_lib.prepare(workdir, config)
    t_data = time.perf_counter()
    data = load_data(config)
    t_data = time.perf_counter() - t_data
    t_s = time.perf_counter()
    sampler = make_sampler(config, data)
    setup_s = time.perf_counter() - t_s
    model = make_model(config, data)
    state = init_state(config, model, sampler.batch(0))
    step_fn = train_lib.make_train_step(T.make_loss_fn(model, data.multilabel),
                                        compiler_options=runtime.cpu_compiler_options())
    graph = eval_graph(config, data)
    evaluator = T.make_eval(model, data.multilabel)
    clock = {"start": None, "eval": 0.0, "budgets": set()}

    def batch_fn(step):
        if clock["start"] is None:
            clock["start"] = time.perf_counter()
        b = sampler.batch(step)
        clock["budgets"].add((b.nodes["x"].shape[0], b.senders.shape[0]))
        return b

    def eval_fn(st):
        t0 = time.perf_counter()
        jax.block_until_ready(st.params)
        elapsed = t0 - clock["start"] - clock["eval"]
        out = evaluator(st.params, graph)
        row = {"train_time_s": elapsed}
        for split, sc in out.items():
            for k, v in sc.items():
                row[f"{split}_{k}"] = v
        clock["eval"] += time.perf_counter() - t0
        return row

    state, history = train_lib.fit(
        state, step_fn, batch_fn, num_steps=config.num_steps, workdir=workdir, seed=config.seed,
        eval_fn=eval_fn, eval_every=config.eval_every, log_every=config.log_every,
        checkpoint_every=config.checkpoint_every, keep=config.keep, desc=f"meguide/{config.sampler}")
    final = evaluator(state.params, graph)
    evals = [r for r in history if "eval_val_accuracy" in r]
    results = {
        "sampler": config.sampler,
        "model": config.model.kind,
        "data": data.name,
        "num_nodes": data.num_nodes,
        "num_edges": int(data.adj.nnz // 2),
        "edge_homophily": D.edge_homophily(data.adj, data.y) if not data.multilabel else None,
        "steps": int(jax.device_get(state.step)),
        "steps_per_epoch": sampler.steps_per_epoch(),
        "train_time_s": evals[-1]["eval_train_time_s"] if evals else None,
        "sampler_setup_s": setup_s,
        "data_s": t_data,
        "padding_budgets": len(clock["budgets"]),
        "best_val_accuracy": max((r["eval_val_accuracy"] for r in evals), default=None),
        **{f"{split}_{k}": v for split, sc in final.items() for k, v in sc.items()},
    }
    if config.sampler == "meguide":
        results["meguide_num_roots"] = int(sampler.num_roots)
        results["meguide_mean_cfd"] = float(sampler.expected_walk_length)
    _plot(workdir)
    workdir_lib.write_summary(workdir, results, config, seed=config.seed)
    return results


def _plot(workdir: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxlab.core.metrics import read_metrics

    rows = [r for r in read_metrics(workdir) if "eval_val_accuracy" in r]
    if not rows:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key in ("eval_val_accuracy", "eval_test_accuracy"):
        a.plot([r["eval_train_time_s"] for r in rows], [r[key] for r in rows], "o-", label=key[5:])
        b.plot([r["step"] for r in rows], [r[key] for r in rows], "o-", label=key[5:])
    a.set_xlabel("training wall time (s)")
    b.set_xlabel("step")
    a.set_ylabel("accuracy")
    a.legend()
    for ax in (a, b):
        ax.grid(alpha=0.3)
    workdir_lib.save_figure(fig, workdir, "accuracy")


class Loaded(NamedTuple):
    config: MeGuideConfig
    data: D.GraphData
    model: L.GNN
    state: train_lib.TrainState
    step: int


def load(workdir: str | pathlib.Path) -> Loaded:
    """Config, data, model and latest checkpointed state of a finished or interrupted run."""
    config = workdir_lib.load_config(workdir, MeGuideConfig)
    data = load_data(config)
    model = make_model(config, data)
    example = eval_graph(config, data)
    state, step = train_lib.restore_latest(workdir, init_state(config, model, example), keep=config.keep)
    if step == 0:
        raise workdir_lib.WorkdirError(f"{workdir}/checkpoints holds no finished checkpoint yet")
    return Loaded(config, data, model, state, step)


def evaluate(config: Any, workdir: str | pathlib.Path) -> dict:
    """Full-graph accuracy / micro-F1 of the latest checkpoint plus the graph's metrics
    (CS-GNN feature and label smoothness, mean connection failure distance); written to
    `workdir/evaluation.json`."""
    run = load(workdir)
    scores = T.make_eval(run.model, run.data.multilabel)(run.state.params, eval_graph(run.config, run.data))
    d, m = run.data, run.config.meguide
    results = {"step": run.step,
               **{f"{split}_{k}": v for split, sc in scores.items() for k, v in sc.items()},
               "feature_smoothness": M.feature_smoothness(d.adj, d.x, m.smoothness_scaling),
               "label_smoothness": M.label_smoothness(d.adj, d.y),
               "mean_connection_failure_distance": float(M.connection_failure_distance(
                   d.adj, d.masks()["train_mask"], m.cfd_walks, m.max_walk_length, m.patience,
                   seed=run.config.seed).mean())}
    workdir_lib.write_json(pathlib.Path(workdir) / "evaluation.json", results)
    return results


evaluate.read_only = True

ACTIONS = {"train": train, "evaluate": evaluate}
