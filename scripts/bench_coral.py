"""Benchmark of CORAL: graph build time, training steps/s vs PyTorch Geometric, recommendation latency.

    python scripts/bench_coral.py --commits 10000 --steps 10

jaxlab: `linkpred` loss (1-layer heterogeneous GCN, softmax over users) jitted with optax Adam.
PyG: the same model in PyG's usual style (`torch.nn.Embedding` + `RGCNConv(aggr="mean")`,
which ignores edge weights, a small difference in work) with torch.optim.Adam.
Both on the same graph and the same batches, in one process; PyG with 1 thread and with all
threads. Recommendation latency: `Scorer.score` for one new PR (its local graph, the jitted
model on it with the trained nodes frozen to a table computed once per parameters, the
candidate pool from a time index), and the whole-graph reference `Scorer.score_full`.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import numpy as np


def loadavg() -> float:
    return float(open("/proc/loadavg").read().split()[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--latency-prs", type=int, default=50)
    ap.add_argument("--features", type=int, default=64)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    la0 = loadavg()
    print(f"device: {jax.devices()[0].platform} ({jax.devices()[0].device_kind}); load average before {la0:.2f}"
          f" on {cores} cores" + (" WARNING: busy machine" if la0 > cores / 2 else ""))

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
    batch_fn = linkpred.make_batch_fn(problem, cfg)
    batches = [batch_fn(i) for i in range(args.steps + 1)]
    key = jax.random.key(0)
    t = time.perf_counter()
    state, m = step(state, batches[0], key)
    jax.block_until_ready(m)
    jax_compile = time.perf_counter() - t
    times = []
    for b in batches[1:]:
        t = time.perf_counter()
        state, m = step(state, b, key)
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t)
    jax_step = statistics.median(times)

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

    def torch_median(threads: int) -> float:
        torch.set_num_threads(threads)
        torch_step(batches[0])
        ttimes = []
        for b in batches[1:]:
            t = time.perf_counter()
            torch_step(b)
            ttimes.append(time.perf_counter() - t)
        return statistics.median(ttimes)

    all_threads = torch.get_num_threads()
    pyg_1 = torch_median(1)
    pyg_all = torch_median(all_threads)

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
    la1 = loadavg()
    c = problem.graph.counts()
    print(f"\nplanted repository: {args.commits} commits; graph {sum(c['nodes'].values())} nodes, "
          f"{sum(c['edges'].values())} edges; padded {n} nodes, {len(arrays['senders'])} directed edges")
    print(f"\n| measure | jaxlab | PyG 1 thread | PyG {all_threads} threads | ratio (best PyG / jaxlab) |"
          "\n|---|---|---|---|---|")
    print(f"| generate repository (git fast-import) | {t_gen:.2f} s | | | |")
    print(f"| read history (git log) | {t_read:.2f} s | | | |")
    print(f"| build graph (tokens, PMI) | {t_graph:.2f} s | | | |")
    print(f"| compile (first step) | {jax_compile:.2f} s | | | |")
    best = min(pyg_1, pyg_all)
    print(f"| training step (median of {args.steps}) | {jax_step * 1e3:.1f} ms | {pyg_1 * 1e3:.1f} ms | "
          f"{pyg_all * 1e3:.1f} ms | {best / jax_step:.2f}x |")
    print(f"| representation table (compile + one forward, once per parameters) | {t_table * 1e3:.0f} ms | | | |")
    print(f"| recommend one new PR, first call (compile) | {t_first * 1e3:.0f} ms | | | |")
    print(f"| recommend one new PR (median of {len(lat)}, after warm-up; max {max(lat) * 1e3:.1f} ms) | "
          f"{statistics.median(lat) * 1e3:.1f} ms | | | |")
    print(f"| same, whole-graph forward (`score_full`, median of {len(lat_full)}) | "
          f"{statistics.median(lat_full) * 1e3:.1f} ms | | | |")
    print(f"\nload average after {la1:.2f}" + (" WARNING: busy machine, figures are noisy" if la1 > cores / 2 else ""))


if __name__ == "__main__":
    main()
