"""Actions of CORAL: `build-graph`, `train`, `evaluate`, `recommend`.

    jaxlab coral build-graph --config smoke --workdir runs/coral            # planted repository
    jaxlab coral train --config smoke --workdir runs/coral
    jaxlab coral evaluate --workdir runs/coral
    jaxlab coral recommend --config.repo=PATH --config.rev=REV --workdir runs/coral-mine

Input: `config.repo` (a local git repository), `config.export` (a JSON-lines export) or
neither (the planted repository, generated into `<workdir>/planted`). The review units
read are written to `<workdir>/prs.json`, which later actions of the run read back.
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np

from jaxlab.coral import data, gitlog, graph, ranking, report
from jaxlab.coral import linkpred as rec
from jaxlab.coral.configs import CoralConfig
from jaxlab.core import actions
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib

__all__ = ["build_graph", "train", "evaluate", "recommend", "load", "ACTIONS"]


def history(config: CoralConfig, workdir: pathlib.Path) -> list[gitlog.PullRequest]:
    """The run's review units (read once, then from `<workdir>/prs.json`)."""
    cache = workdir / "prs.json"
    if cache.exists():
        return [gitlog.PullRequest.from_json(d) for d in json.loads(cache.read_text())]
    g = config.graph
    if config.export:
        prs = data.read_export(config.export)
    else:
        repo = pathlib.Path(config.repo) if config.repo else workdir / "planted"
        if not config.repo and not (repo / ".git").exists():
            data.planted_repository(repo, config.planted)
        prs = gitlog.read_repository(repo, unit=g.unit, rev=config.rev or "HEAD",
                                     committer_reviews=g.committer_reviews, merger_reviews=g.merger_reviews)
    workdir_lib.write_json(cache, [pr.to_json() for pr in prs])
    return prs


def _setup(config: CoralConfig, workdir: pathlib.Path):
    problem = rec.prepare(history(config, workdir), config)
    arrays = rec.device_arrays(problem.graph)
    model = rec.make_model(config, problem.graph)
    return problem, arrays, model


@actions.action(name="build-graph")
def build_graph(config: CoralConfig, workdir: pathlib.Path) -> dict:
    """Reads the history and builds the training socio-technical graph (node/edge counts to graph.json)."""
    problem = rec.prepare(history(config, workdir), config)
    results = {"review_units": len(problem.prs), "train": len(problem.train), "test": len(problem.test),
               "bots": sorted(problem.bots), **problem.graph.counts()}
    workdir_lib.write_json(workdir / "graph.json", results)
    return results


def _fit(config: CoralConfig, workdir: pathlib.Path):
    problem, arrays, model = _setup(config, workdir)
    scorer = rec.Scorer(problem, model, config)
    prepared = scorer.prepare(rec.evaluable(problem))

    def eval_fn(state) -> dict:
        m = rec.evaluate_methods(problem, config, state.params, scorer, baselines=False, prepared=prepared)["coral"]
        return {"top3": m["top3"], "mrr": m["mrr"]}

    state, history_rows = train_lib.fit(
        rec.init_state(config, model, arrays),
        train_lib.make_train_step(rec.make_loss_fn(model, arrays, problem.users, config.loss)),
        rec.make_batch_fn(problem, config), loop=config.loop, workdir=workdir, seed=config.seed, eval_fn=eval_fn,
        desc="coral")
    return problem, model, scorer, prepared, state, history_rows


@actions.action
def train(config: CoralConfig, workdir: pathlib.Path) -> dict:
    """Trains the heterogeneous GCN link predictor; evaluates it and the four baselines on the test PRs.

    Returns (and writes to summary.json) top-1/3/5 hit rates and MRR of every recommender.
    """
    problem, model, scorer, prepared, state, _ = _fit(config, workdir)
    results = rec.evaluate_methods(problem, config, state.params, scorer, prepared=prepared)
    times = train_lib.run_times(workdir)
    results.update({"steps": int(jax.device_get(state.step)), "train_time_s": times["train_time_s"],
                    "train_prs": len(problem.train), "test_prs": len(problem.test),
                    "num_params": int(sum(x.size for x in jax.tree.leaves(state.params)))})
    report.plot_training(workdir)
    workdir_lib.write_summary(workdir, results, config, seed=config.seed)
    return results


def load(workdir: str | pathlib.Path) -> actions.Loaded:
    """Config, model and newest intact checkpoint of a run; extras: problem (split and graph), scorer."""
    workdir = pathlib.Path(workdir)
    config = workdir_lib.load_config(workdir, CoralConfig)
    problem, arrays, model = _setup(config, workdir)
    state, step = train_lib.load_state(workdir, rec.init_state(config, model, arrays), keep=config.loop.keep)
    return actions.Loaded(config, model, state, step,
                          {"problem": problem, "scorer": rec.Scorer(problem, model, config)})


@actions.action(read_only=True)
def evaluate(config: CoralConfig, workdir: pathlib.Path) -> dict:
    """Top-k hit rates and MRR of the newest checkpoint and the baselines (written to evaluation.json)."""
    run = load(workdir)
    results = rec.evaluate_methods(run.extras["problem"], run.config, run.state.params, run.extras["scorer"])
    results["step"] = run.step
    workdir_lib.write_json(workdir / "evaluation.json", results)
    return results


def evidence(problem: rec.Problem, pr: gitlog.PullRequest, user: str) -> dict:
    """Why `user` fits `pr`: files of the PR the user authored or reviewed in training, shared tokens."""
    files, tokens = set(), set()
    mine = set(graph.tokenize(pr.title + "\n" + pr.body)) & problem.graph.vocab
    for q in problem.train:
        if user == q.author or user in q.reviewers:
            files |= set(q.files) & set(pr.files)
            tokens |= mine & set(graph.tokenize(q.title + "\n" + q.body))
    return {"shared_files": sorted(files)[:5], "shared_tokens": sorted(tokens)[:8]}


@actions.action
def recommend(config: CoralConfig, workdir: pathlib.Path) -> dict:
    """Top-k reviewers for the newest review unit at `rev` (trains first if the run has no model), with evidence.

    The newest unit is scored inductively (time split: it is never in training); its author
    is never recommended.
    """
    done = (workdir / "summary.json").exists()
    if not done:
        train(config, workdir)
    run = load(workdir)
    problem = run.extras["problem"]
    pr = max(problem.prs, key=lambda p: p.time)
    [(pool, scores)] = run.extras["scorer"].score(run.state.params, [pr])
    names = {e: n for p in problem.prs for e, n in p.names}
    order = np.argsort(-scores, kind="stable")[: config.top_k]
    results = {"pr": pr.id, "title": pr.title, "author": pr.author, "true_reviewers": ranking.labels(pr, problem.bots),
               "recommended": [{"reviewer": pool[i], "name": names.get(pool[i], ""), "score": float(scores[i]),
                                **evidence(problem, pr, pool[i])} for i in order]}
    workdir_lib.write_json(workdir / "recommendation.json", results)
    return results


ACTIONS = actions.collect(build_graph, train, evaluate, recommend)
