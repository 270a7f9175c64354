"""Benchmark of CORAL: graph build time, training steps/s vs PyTorch Geometric, recommendation latency.

    python scripts/bench_coral.py --commits 10000 --steps 10

jaxlab: `linkpred` loss (1-layer heterogeneous GCN, softmax over users) jitted with optax Adam,
as `jaxlab coral train` runs it: grouped R-GCN aggregation (`models.group_by_relation`), the
host allocator tuned as the command line does (`runtime.tune_host_allocator`, which PyTorch
in the same process shares). A third column, "jaxlab relation first", is the same step with
the ungrouped sum (transform every node by every relation's matrix, then gather).
PyG: the same model in PyG's usual style (`torch.nn.Embedding` + `RGCNConv(aggr="mean")`,
which ignores edge weights, a small difference in work) with torch.optim.Adam.
Both on the same graph and the same batches, in one process, taking turns step by step; a
1-thread and an all-threads column per peer (`--threads both|1|all`, see
`jaxlab.core.benchmark`), load average before and after. Recommendation latency:
`Scorer.score` for one new PR (its local graph, the jitted
model on it with the trained nodes frozen to a table computed once per parameters, the
candidate pool from a time index), and the whole-graph reference `Scorer.score_full`.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

from jaxlab.core import benchmark, runtime

SETTING = benchmark.configure_threads()  # before jax and torch start their thread pools
ALLOCATOR = runtime.tune_host_allocator()  # as the `jaxlab` command does; PyTorch shares it

import jax  # noqa: E402
import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--latency-prs", type=int, default=50)
    ap.add_argument("--features", type=int, default=64)
    benchmark.add_threads_argument(ap)
    args = ap.parse_args()

    from jaxlab.coral import configs, data, gitlog, linkpred
    from jaxlab.core import train as train_lib

    cfg = configs.get_config("default")
    cfg.planted.num_commits = args.commits
    cfg.model.features = args.features
    repo = tempfile.mkdtemp()
    t = time.perf_counter()
    data.planted_repository(repo, cfg.planted)
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    prs = gitlog.read_repository(repo)
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    problem = linkpred.prepare(prs, cfg)
    t_graph = time.perf_counter() - t
    arrays = linkpred.device_arrays(problem.graph)
    model = linkpred.make_model(cfg, problem.graph)
    state = linkpred.init_state(cfg, model, arrays)
    step = train_lib.make_train_step(linkpred.make_loss_fn(model, arrays, problem.users, cfg.loss))
    step_rf = train_lib.make_train_step(linkpred.make_loss_fn(model, arrays, problem.users, cfg.loss, grouped=False))
    batch_fn = linkpred.make_batch_fn(problem, cfg)
    batches = [batch_fn(i) for i in range(args.steps + 1)]
    key = jax.random.key(0)
    box = {"state": state, "rf": jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, state)}
    jax_batches, rf_batches = itertools.cycle(batches[1:]), itertools.cycle(batches[1:])

    def jax_step():
        box["state"], m = step(box["state"], next(jax_batches), key)
        jax.block_until_ready(m["loss"])

    def rf_step():
        box["rf"], m = step_rf(box["rf"], next(rf_batches), key)
        jax.block_until_ready(m["loss"])

    t = time.perf_counter()
    box["state"], m = step(box["state"], batches[0], key)
    jax.block_until_ready(m)
    jax_compile = time.perf_counter() - t
    box["rf"], m = step_rf(box["rf"], batches[0], key)
    jax.block_until_ready(m)

    import torch
    from torch_geometric.nn import RGCNConv

    torch.manual_seed(0)
    n = arrays["emb_index"].shape[0]
    num_rel = model.num_relations

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(model.num_embeddings, args.features)
            self.conv = RGCNConv(args.features, args.features, num_rel, aggr="mean")

        def forward(self, idx, edge_index, edge_type):
            x = self.embed(idx)
            return self.conv(x, edge_index, edge_type) + x

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.opt.lr)
    idx = torch.as_tensor(arrays["emb_index"], dtype=torch.long)
    ei = torch.as_tensor(np.stack([arrays["senders"], arrays["receivers"]]), dtype=torch.long)
    et = torch.as_tensor(arrays["relation"], dtype=torch.long)
    lp = torch.as_tensor(arrays["label_pr"], dtype=torch.long)
    users = torch.as_tensor(problem.users, dtype=torch.long)

    def torch_step(b):
        target = torch.zeros(n, dtype=torch.bool)
        target[torch.as_tensor(b["pr"], dtype=torch.long)] = True
        keep = ~((lp >= 0) & target[lp.clamp(min=0)])
        h = net(idx, ei[:, keep], et[keep])
        pr = torch.as_tensor(b["pr"], dtype=torch.long)
        logits = h[pr] @ h[users].T
        logits = logits.masked_fill(users[None, :] == torch.as_tensor(b["author"], dtype=torch.long)[:, None], -1e9)
        pos = torch.as_tensor(b["pos"], dtype=torch.long)
        pm = pos >= 0
        ps = (h[pr][:, None, :] * h[pos.clamp(min=0)]).sum(-1)
        loss = -((ps - torch.logsumexp(logits, -1, keepdim=True)) * pm).sum() / pm.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    torch_batches = itertools.cycle(batches[1:])
    with benchmark.torch_threads(benchmark.peer_threads(SETTING)):
        print(benchmark.device_line())
        torch_step(batches[0])
        step_times = benchmark.alternate({"jaxlab": jax_step, "PyG": lambda: torch_step(next(torch_batches)),
                                          "jaxlab relation first": rf_step},
                                         repeats=args.steps, warmup=0)
    state = box["state"]

    scorer = linkpred.Scorer(problem, model, cfg)
    t = time.perf_counter()
    jax.block_until_ready(scorer.table(state.params))
    t_table = time.perf_counter() - t
    new = problem.test[: args.latency_prs + 1]
    t = time.perf_counter()
    scorer.score(state.params, [new[0]])
    t_first = time.perf_counter() - t
    lat = []
    for pr in new[1:]:
        t = time.perf_counter()
        scorer.score(state.params, [pr])
        lat.append(time.perf_counter() - t)
    scorer.score_full(state.params, [new[0]])
    lat_full = []
    for pr in new[1:11]:
        t = time.perf_counter()
        scorer.score_full(state.params, [pr])
        lat_full.append(time.perf_counter() - t)
    c = problem.graph.counts()
    print(f"planted repository: {args.commits} commits; graph {sum(c['nodes'].values())} nodes, "
          f"{sum(c['edges'].values())} edges; padded {n} nodes, {len(arrays['senders'])} directed edges")
    res = benchmark.Results()
    res.table("Training step (heterogeneous GCN link prediction)", ["jaxlab", "PyG", "jaxlab relation first"],
              unit="ms", extras=["jaxlab compile (s)"]).add(
        f"training step (median of {args.steps})", step_times, **{"jaxlab compile (s)": f"{jax_compile:.2f}"})
    t = res.table("Pipeline and recommendation latency (jaxlab only)", ["jaxlab"], unit="ms")
    t.add("generate repository (git fast-import)", {"jaxlab": t_gen})
    t.add("read history (git log)", {"jaxlab": t_read})
    t.add("build graph (tokens, PMI)", {"jaxlab": t_graph})
    t.add("representation table (compile + one forward, once per parameters)", {"jaxlab": t_table})
    t.add("recommend one new PR, first call (compile)", {"jaxlab": t_first})
    t.add(f"recommend one new PR (median of {len(lat)}, after warm-up; max {max(lat) * 1e3:.1f} ms)", {"jaxlab": lat})
    t.add(f"same, whole-graph forward (`score_full`, median of {len(lat_full)})", {"jaxlab": lat_full})
    return res


if __name__ == "__main__":
    benchmark.run(main)
