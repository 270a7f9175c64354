"""Training and inductive scoring of CORAL's user-PR link predictor (reconstruction).

Training (link prediction with negative sampling): each step picks `targets_per_step`
training PRs, hides their review/comment edges from message passing (edge weight 0, so
shapes stay static and the model sees a target PR as it will see a new one), and
minimises binary cross-entropy

    L = mean_{(u,p) true} softplus(-<h_u, h_p>) + mean_{(v,p) sampled} softplus(<h_v, h_p>)

with `negatives` users per PR drawn uniformly from the training users, never the author
or a true reviewer. Batches are a pure function of (seed, step).

Inference (§III-C): new PRs are added inductively (`graph.extend`, `graph.extension`:
messages flow only into them), so their scores need no retraining and leave the
parameters unchanged (see `Scorer` for the fast path); candidates are the
pool of `ranking.candidate_pool`, which never holds the author.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.coral import graph as graph_lib
from jaxlab.coral import ranking
from jaxlab.coral.configs import CoralConfig
from jaxlab.coral.gitlog import PullRequest, is_bot
from jaxlab.coral.models import HeteroGCN, group_by_relation, pair_scores
from jaxlab.core import optim
from jaxlab.core import train as train_lib
from jaxlab.graph.graphs import bucket

__all__ = ["Problem", "prepare", "device_arrays", "make_model", "init_state", "make_loss_fn", "make_batch_fn",
           "Scorer", "method_scores", "evaluate_methods"]

STREAM_INIT = 0xC0A1
STREAM_BATCH = 0xBA7C
MAX_POSITIVES = 4


@dataclasses.dataclass
class Problem:
    """A split history and its training graph."""

    prs: list[PullRequest]
    train: list[PullRequest]
    test: list[PullRequest]
    bots: set[str]
    graph: graph_lib.SocioGraph
    targets: np.ndarray      # int [T] PR nodes with >= 1 label
    positives: np.ndarray    # int [T, MAX_POSITIVES] user nodes (-1 padding)
    authors: np.ndarray      # int [T]
    users: np.ndarray        # int [U] human user nodes (negatives)


def bots_of(prs: list[PullRequest]) -> set[str]:
    names = {e: n for pr in prs for e, n in pr.names}
    people = {u for pr in prs for u in (pr.author, *pr.reviewers, *pr.coauthors, *pr.commenters)}
    return {u for u in people if is_bot(names.get(u, ""), u)}


def prepare(prs: list[PullRequest], config: CoralConfig) -> Problem:
    """Splits `prs`, builds the training graph and the link-prediction targets."""
    train, test = ranking.split(prs, config.split, config.train_fraction, config.seed)
    if not train or not test:
        from jaxlab.core.errors import DataFormatError

        raise DataFormatError(f"history of {len(prs)} review units is too short to split into train and test")
    bots = bots_of(prs)
    ref = max(p.time for p in train)
    g = graph_lib.build_graph(train, config.graph, ref_time=ref, half_life_days=config.recency_half_life_days)
    targets, positives, authors = [], [], []
    for pr in train:
        ls = ranking.labels(pr, bots)
        if pr.author in bots or not ls:
            continue
        targets.append(g.node("pr", pr.id))
        row = [g.node("user", u) for u in ls[:MAX_POSITIVES]]
        positives.append(row + [-1] * (MAX_POSITIVES - len(row)))
        authors.append(g.node("user", pr.author))
    if not targets:
        from jaxlab.core.errors import DataFormatError

        raise DataFormatError("no training PR has a reviewer (Reviewed-by/Acked-by/Tested-by trailers or reviews)")
    users = np.array([i for i, (t, k) in enumerate(zip(g.node_type, g.node_key, strict=True))
                      if t == graph_lib.T["user"] and k not in bots], np.int32)
    return Problem(prs, train, test, bots, g, np.array(targets, np.int32), np.array(positives, np.int32),
                   np.array(authors, np.int32), users)


def device_arrays(g: graph_lib.SocioGraph, growth: float | None = 1.25) -> dict[str, np.ndarray]:
    """The graph's message-passing arrays padded to bucketed budgets (a grown graph reuses the
    compile of its bucket). Padding edges join the padding node (the last) with weight 0.
    Edges are ordered by (relation, receiver), the order of `models.group_by_relation`'s
    pairs, so its scatters and gathers walk memory in order."""
    m = graph_lib.message_edges(g)
    order = np.lexsort((m["receivers"], m["relation"]))
    m = {k: v[order] for k, v in m.items()}
    n_pad = bucket(g.num_nodes, 64, growth)
    e_pad = bucket(len(m["senders"]), 256, growth)
    pad = n_pad - 1
    out = {"emb_index": np.zeros(n_pad, np.int32)}
    out["emb_index"][: g.num_nodes] = g.embedding_index()
    for k, fill in (("senders", pad), ("receivers", pad), ("relation", 0), ("weight", 0.0), ("label_pr", -1)):
        buf = np.full(e_pad, fill, m[k].dtype)
        buf[: len(m[k])] = m[k]
        out[k] = buf
    return out


def make_model(config: CoralConfig, g: graph_lib.SocioGraph) -> HeteroGCN:
    m = config.model
    return HeteroGCN(num_embeddings=g.num_embeddings, num_relations=2 * len(graph_lib.EDGE_TYPES),
                     features=m.features, layers=m.layers, conv=m.conv, dtype=jnp.dtype(m.dtype))


def init_state(config: CoralConfig, model: HeteroGCN, arrays: dict) -> train_lib.TrainState:
    key = jax.random.fold_in(jax.random.key(config.seed), STREAM_INIT)
    params = model.init(key, arrays["emb_index"], arrays["senders"], arrays["receivers"], arrays["relation"],
                        arrays["weight"])["params"]
    o = config.opt
    tx = optax.adamw(optim.warmup_cosine(o.lr, o.warmup_steps, config.loop.num_steps), weight_decay=o.weight_decay)
    return train_lib.TrainState.create(params=params, tx=tx)


def forward(model: HeteroGCN, params, arrays, weight=None, **kw):
    """Node representations `[N_pad, F]` (with `return_states=True`: and the layer inputs)."""
    w = arrays["weight"] if weight is None else weight
    return model.apply({"params": params}, arrays["emb_index"], arrays["senders"], arrays["receivers"],
                       arrays["relation"], w, **kw)


def make_loss_fn(model: HeteroGCN, arrays: dict, users: np.ndarray | None = None, kind: str = "bce",
                 grouped: bool = True):
    """`(params, extra, batch, key) -> (loss, (metrics, None))` with the batch's target PRs' label edges hidden.

    kind "bce": the binary cross-entropy above on sampled negatives. kind "softmax"
    (reconstruction, a config choice): cross-entropy of each true reviewer against all
    training users `users` `[U]` (the author masked out), -log softmax_u <h_u, h_p>.

    `grouped` (R-GCN only): message passing through `models.group_by_relation` of the fixed
    training graph (fewer multiply-adds; equal to the relation-first sum up to rounding).
    """
    groups = None
    if grouped and model.conv == "rgcn":
        groups = group_by_relation(arrays["receivers"], arrays["relation"], len(arrays["emb_index"]),
                                   model.num_relations)
    arrays = {k: jnp.asarray(v) for k, v in arrays.items()}
    users = None if users is None else jnp.asarray(users)

    def loss_fn(params, extra, batch, key):
        del extra, key
        n = arrays["emb_index"].shape[0]
        target = jnp.zeros(n, bool).at[batch["pr"]].set(True)
        hide = (arrays["label_pr"] >= 0) & target[jnp.maximum(arrays["label_pr"], 0)]
        h = forward(model, params, arrays, jnp.where(hide, 0.0, arrays["weight"]), groups=groups)
        pm, nm = batch["pos"] >= 0, batch["neg_mask"]
        pos = pair_scores(h, batch["pr"], jnp.maximum(batch["pos"], 0))
        neg = pair_scores(h, batch["pr"], batch["neg"])
        if kind == "softmax":
            logits = h[batch["pr"]] @ h[users].T                              # [B, U]
            logits = jnp.where(users[None, :] == batch["author"][:, None], -1e9, logits)
            logz = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
            loss = -jnp.sum((pos - logz) * pm) / jnp.maximum(pm.sum(), 1)
        else:
            lp = jnp.sum(jax.nn.softplus(-pos) * pm) / jnp.maximum(pm.sum(), 1)
            loss = lp + jnp.sum(jax.nn.softplus(neg) * nm) / jnp.maximum(nm.sum(), 1)
        # share of (positive, negative) pairs ordered correctly: a training AUC
        auc = jnp.sum((pos[:, :, None] > neg[:, None, :]) * pm[:, :, None] * nm[:, None, :]) / jnp.maximum(
            jnp.sum(pm[:, :, None] * nm[:, None, :]), 1)
        return loss, ({"auc": auc}, None)

    return loss_fn


def make_batch_fn(problem: Problem, config: CoralConfig):
    """`step -> batch`: target PRs `[B]`, positives `[B, 4]` (-1 pad), negatives and mask `[B, K]`."""
    b = min(config.targets_per_step, len(problem.targets))

    def batch_fn(step: int) -> dict:
        rng = np.random.default_rng([config.seed, STREAM_BATCH, step])
        rows = rng.choice(len(problem.targets), b, replace=False)
        pos = problem.positives[rows]
        neg = problem.users[rng.integers(len(problem.users), size=(b, config.negatives))]
        bad = (neg == problem.authors[rows][:, None]) | (neg[:, :, None] == pos[:, None, :]).any(-1)
        return {"pr": problem.targets[rows], "author": problem.authors[rows], "pos": pos,
                "neg": neg.astype(np.int32), "neg_mask": ~bad}

    return batch_fn


class Scorer:
    """Inductive scoring of PRs that are not in the training graph (no retraining).

    `score` (the fast path): the trained graph's representations and layer inputs are computed
    once per parameters (`table`); a request builds only the new PRs' extension
    (`graph.extension`: new nodes and their inductive edges), runs the model on that local graph
    (padded to bucketed sizes, so one compile serves PRs of similar size) with the trained
    nodes' layer inputs frozen to the table, and scores the pool's users from the table.
    `score_full` is the reference: the whole graph extended by `graph.extend` and one forward
    pass over all of it; both give the same scores (tested).
    """

    def __init__(self, problem: Problem, model: HeteroGCN, config: CoralConfig):
        self.problem, self.model, self.config = problem, model, config
        self._forward = jax.jit(lambda params, arrays: forward(model, params, arrays))
        self._states = jax.jit(lambda params, arrays: forward(model, params, arrays, return_states=True))
        self._local = jax.jit(lambda params, states, a: model.apply(
            {"params": params}, a["emb_index"], a["senders"], a["receivers"], a["relation"], a["weight"],
            frozen=states[:, a["glob"]], frozen_mask=a["frozen_mask"]))
        self._emb_index = problem.graph.embedding_index()
        self._pool = ranking.ActivePool(problem.train, config.pool_days, problem.bots)
        self._table_params, self._table = None, None

    def table(self, params):
        """(output representations `[N, F]` on the host, layer inputs `[L - 1, N_pad, F]` on the device)
        of the trained graph under `params` (cached for the last `params` object)."""
        if self._table_params is not params:
            arrays = {k: jnp.asarray(v) for k, v in device_arrays(self.problem.graph).items()}
            out, states = self._states(params, arrays)
            self._table_params, self._table = params, (np.asarray(out), states)
        return self._table

    def prepare(self, prs: list[PullRequest]) -> dict[str, np.ndarray]:
        """The local graph of `prs`: their extension's nodes and the trained neighbours they read."""
        g = self.problem.graph
        ext = graph_lib.extension(g, prs, self.config.graph)
        nodes = np.unique(np.concatenate([ext.src, ext.dst, ext.pr_ids]))
        n, e = len(nodes), len(ext.src)
        n_pad, e_pad = bucket(n, 64, 1.25), bucket(e, 256, 1.25)
        old = nodes < g.num_nodes
        a = {"glob": np.zeros(n_pad, np.int32), "frozen_mask": np.zeros(n_pad, bool),
             "emb_index": np.zeros(n_pad, np.int32), "senders": np.full(e_pad, n_pad - 1, np.int32),
             "receivers": np.full(e_pad, n_pad - 1, np.int32), "relation": np.zeros(e_pad, np.int32),
             "weight": np.zeros(e_pad, np.float32)}
        a["glob"][:n] = np.where(old, nodes, 0)
        a["frozen_mask"][:n] = old
        a["emb_index"][:n] = np.where(old, self._emb_index[np.where(old, nodes, 0)],
                                      ext.node_type[np.maximum(nodes - g.num_nodes, 0)] if len(ext.node_type) else 0)
        a["senders"][:e] = np.searchsorted(nodes, ext.src)
        a["receivers"][:e] = np.searchsorted(nodes, ext.dst)
        a["relation"][:e] = 2 * ext.etype
        a["weight"][:e] = ext.weight
        a["pr"] = np.searchsorted(nodes, ext.pr_ids).astype(np.int32)
        return a

    def score(self, params, prs: list[PullRequest], prepared=None) -> list[tuple[list[str], np.ndarray]]:
        """Per PR: (candidate pool, scores `[len(pool)]`)."""
        final, states = self.table(params)
        a = self.prepare(prs) if prepared is None else prepared
        h = np.asarray(self._local(params, states, {k: v for k, v in a.items() if k != "pr"}))
        g, out = self.problem.graph, []
        for pr, node in zip(prs, a["pr"], strict=True):
            pool = self._pool(pr)
            users = np.array([g.node("user", u) for u in pool], np.int64)
            out.append((pool, final[users] @ h[node] if len(pool) else np.zeros(0)))
        return out

    def prepare_full(self, prs: list[PullRequest]):
        g, ids = graph_lib.extend(self.problem.graph, prs, self.config.graph)
        return g, ids, {k: jnp.asarray(v) for k, v in device_arrays(g).items()}

    def score_full(self, params, prs: list[PullRequest]) -> list[tuple[list[str], np.ndarray]]:
        """`score` by a forward pass over the whole extended graph (the reference)."""
        g, ids, arrays = self.prepare_full(prs)
        h = np.asarray(self._forward(params, arrays))
        out = []
        for pr, node in zip(prs, ids, strict=True):
            pool = ranking.candidate_pool(pr, self.problem.train, self.config.pool_days, self.problem.bots)
            users = np.array([g.node("user", u) for u in pool], np.int64)
            out.append((pool, h[users] @ h[node] if len(pool) else np.zeros(0)))
        return out


def evaluable(problem: Problem) -> list[PullRequest]:
    """Test PRs by humans with at least one human reviewer other than the author."""
    return [pr for pr in problem.test if pr.author not in problem.bots and ranking.labels(pr, problem.bots)]


def method_scores(problem: Problem, config: CoralConfig, params=None, scorer: Scorer | None = None,
                  baselines: bool = True, prepared=None) -> tuple[list[PullRequest], dict]:
    """(the evaluable test PRs, `{method: [(pool, scores `[len(pool)]`) per PR]}`) of CORAL (when
    `params`) and the baselines."""
    prs = evaluable(problem)
    out = {}
    if params is not None:
        out["coral"] = scorer.score(params, prs, prepared)
    if baselines:
        pools = [ranking.candidate_pool(pr, problem.train, config.pool_days, problem.bots) for pr in prs]
        for name, cls in ranking.BASELINES.items():
            rec = cls(problem.train, problem.bots, seed=config.seed)
            out[name] = [(p, rec.scores(pr, p)) for pr, p in zip(prs, pools, strict=True)]
    return prs, out


def evaluate_methods(problem: Problem, config: CoralConfig, params=None, scorer: Scorer | None = None,
                     baselines: bool = True, prepared=None) -> dict:
    """Top-k hit rates and MRR of CORAL (when `params`) and the baselines on the test PRs."""
    prs, scored = method_scores(problem, config, params, scorer, baselines, prepared)
    truths = [ranking.labels(pr, problem.bots) for pr in prs]
    return {name: ranking.rank_metrics([s for _, s in rows], [p for p, _ in rows], truths, seed=config.seed)
            for name, rows in scored.items()}
