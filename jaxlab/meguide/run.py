"""MeGuide actions: `train` (any `jaxlab.graph` model with any sampler) and `evaluate`.

    jaxlab meguide train --config default --workdir runs/meguide \
        --config.sampler=meguide --config.data=sbm --config.model.kind=sage
    jaxlab meguide evaluate --workdir runs/meguide
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import optax

from jaxlab.core import actions, runtime
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.graph import data as graph_data
from jaxlab.graph import layers as graph_layers
from jaxlab.graph import train as graph_train
from jaxlab.meguide import metrics, records, report
from jaxlab.meguide.configs import MeGuideConfig
from jaxlab.meguide.sampler import batch_sizes, make_sampler, match_nodes_per_batch, size_setting, training_protocol

__all__ = ["train", "evaluate", "load", "selected_by_validation", "load_data", "make_sampler", "make_model",
           "eval_graph", "ACTIONS"]


def load_data(config: MeGuideConfig) -> graph_data.GraphData:
    """The dataset named by `config.data` (`jaxlab.graph.data.load`: "sbm" from the `sbm`
    section and the seed, "karate", "planetoid:<folder>:<name>" or a GraphSAINT folder);
    a path that holds no such dataset raises `DataFormatError` naming it."""
    return graph_data.load(config.data, scale=config.feature_scale, seed=config.seed,
                           **dataclasses.asdict(config.sbm))


def make_model(config: MeGuideConfig, data: graph_data.GraphData) -> graph_layers.GNN:
    m = config.model
    return graph_layers.GNN(model=m.kind, hidden=tuple(m.hidden), num_classes=data.num_classes,
                            dropout=m.dropout, heads=m.heads, prenormalized=m.kind != "gat",
                            dtype=jnp.dtype(m.dtype))


def make_optimizer(config: MeGuideConfig) -> optax.GradientTransformation:
    if config.opt.weight_decay:
        return optax.adamw(config.opt.lr, weight_decay=config.opt.weight_decay)
    return optax.adam(config.opt.lr)


def init_state(config: MeGuideConfig, model: graph_layers.GNN, example) -> train_lib.TrainState:
    """Parameters from `jax.random.key(seed)` (their shapes do not depend on `example`'s size)."""
    params = model.init(jax.random.key(config.seed), example)["params"]
    return train_lib.TrainState.create(params=params, tx=make_optimizer(config))


def eval_graph(config: MeGuideConfig, data: graph_data.GraphData):
    """The whole graph, normalised for the model, with train/val/test masks."""
    return jax.tree_util.tree_map(jnp.asarray, data.full_graph(
        config.model.kind, prenormalize=config.model.kind != "gat",
        budget_multiple=config.budget_multiple))


def make_eval_fn(model: graph_layers.GNN, data: graph_data.GraphData, graph):
    """`params -> {"<split>_accuracy", "<split>_micro_f1"}` on the whole graph (one compile)."""
    evaluator = graph_train.make_eval(model, data.multilabel)

    def eval_fn(params) -> dict:
        return {f"{split}_{k}": v for split, scores in evaluator(params, graph).items() for k, v in scores.items()}

    return eval_fn


def selected_by_validation(history: list[dict], metric: str) -> dict:
    """The evaluation row of the best validation `metric` (the first on ties): its step,
    validation and test scores, and training and compile time up to it."""
    rows = [r for r in history if f"eval_val_{metric}" in r]
    if not rows:
        return {}
    best = max(rows, key=lambda r: r[f"eval_val_{metric}"])  # max keeps the first of ties
    return {"selection_metric": metric, "best_val_step": best["step"],
            f"best_val_{metric}": best[f"eval_val_{metric}"],
            f"test_{metric}_at_best_val": best[f"eval_test_{metric}"],
            "train_time_to_best_val_s": best.get("train_time_s"),
            "compile_time_to_best_val_s": best.get("compile_time_s")}


@actions.action
def train(config: MeGuideConfig, workdir: pathlib.Path) -> dict:
    """Trains a GNN with the configured subgraph sampler, evaluating on the whole graph.

    GraphSAINT folders train inductively by default (on adj_train; `train_graph`).

    metrics.jsonl holds the training loss every `loop.log_every` steps and, every
    `loop.eval_every` steps, full-graph val/test accuracy and micro-F1 (`eval_*`), each row
    with `train_time_s` (training time so far: sampling and steps, compiles included,
    evaluation and checkpoints excluded). A killed run resumes from `workdir/checkpoints`;
    the summary's best-of values, times and padding budgets cover the whole run, and a
    rerun of a finished run leaves them as they were.
    """
    t0 = time.perf_counter()
    data = load_data(config)
    t1 = time.perf_counter()
    sized = match_nodes_per_batch(config, data, config.nodes_per_batch) if config.nodes_per_batch else config
    sampler = make_sampler(sized, data)
    setup = records.setup_times(workdir, {"data_s": t1 - t0, "sampler_setup_s": time.perf_counter() - t1})
    model = make_model(config, data)
    step_fn = train_lib.make_train_step(graph_train.make_loss_fn(model, data.multilabel),
                                        compiler_options=runtime.cpu_compiler_options())
    eval_fn = make_eval_fn(model, data, eval_graph(config, data))
    padding = records.PaddingLog(workdir)

    def batch_fn(step: int):
        batch = sampler.batch(step)
        padding.record(step, batch)
        return batch

    state, history = train_lib.fit(
        init_state(config, model, sampler.batch(0)), step_fn, batch_fn, loop=config.loop, workdir=workdir,
        seed=config.seed, eval_fn=lambda s: eval_fn(s.params), desc=f"meguide/{config.sampler}",
        prefetch=config.prefetch_depth())
    steps = int(jax.device_get(state.step))
    times = train_lib.run_times(workdir)
    segments = times["segments"]
    results = {
        "sampler": config.sampler,
        "model": config.model.kind,
        "data": data.name,
        "protocol": training_protocol(config, data),
        "num_nodes": data.num_nodes,
        "num_edges": int(data.adj.nnz // 2),
        "edge_homophily": None if data.multilabel else graph_data.edge_homophily(data.adj, data.y),
        "steps": steps,
        "steps_per_epoch": sampler.steps_per_epoch(),
        "train_time_s": times["train_time_s"],
        "compile_time_s": times["compile_time_s"],
        "sampling_time_s": sum(g.get("data_time_s", 0.0) for g in segments),
        "sampling_wait_s": sum(g.get("data_wait_s", 0.0) for g in segments),
        "train_wall_time_s": times["wall_time_s"],
        "segments": len(segments),
        **setup,
        "padding_budgets": padding.count(steps),
        "sampler_size": size_setting(sized),
        **batch_sizes(sampler),
        **selected_by_validation(history, "micro_f1" if data.multilabel else "accuracy"),
        **eval_fn(state.params),
    }
    if config.sampler == "meguide":
        results["meguide_num_roots"] = int(sampler.num_roots)
        results["meguide_mean_cfd"] = float(sampler.expected_walk_length)
    report.plot_accuracy(workdir)
    workdir_lib.write_summary(workdir, results, config, seed=config.seed)
    return results


def load(workdir: str | pathlib.Path) -> actions.Loaded:
    """Config, model and newest intact checkpointed state of a finished or interrupted run;
    `extras["data"]` holds the dataset."""
    config = workdir_lib.load_config(workdir, MeGuideConfig)
    data = load_data(config)
    model = make_model(config, data)
    state, step = train_lib.load_state(workdir, init_state(config, model, eval_graph(config, data)),
                                       keep=config.loop.keep)
    return actions.Loaded(config, model, state, step, {"data": data})


@actions.action(read_only=True)
def evaluate(config: MeGuideConfig, workdir: pathlib.Path) -> dict:
    """Full-graph accuracy / micro-F1 of the newest checkpoint and the graph's smoothness and CFD.

    Also CS-GNN's feature and label smoothness and the mean connection failure distance
    of the training graph; written to `workdir/evaluation.json`.
    """
    run = load(workdir)
    data, m = run.extras["data"], run.config.meguide
    scores = make_eval_fn(run.model, data, eval_graph(run.config, data))(run.state.params)
    cfd = metrics.connection_failure_distance(data.adj, data.masks()["train_mask"], m.cfd_walks,
                                              m.max_walk_length, m.patience, seed=run.config.seed)
    results = {"step": run.step, **scores,
               "feature_smoothness": metrics.feature_smoothness(data.adj, data.x, m.smoothness_scaling),
               "label_smoothness": metrics.label_smoothness(data.adj, data.y),
               "mean_connection_failure_distance": float(cfd.mean())}
    workdir_lib.write_json(workdir / "evaluation.json", results)
    return results


ACTIONS = actions.collect(train, evaluate)
