"""VectorNet training and inference throughput: jaxlab vs the same network in PyTorch Geometric.

Both run the paper's network (3 subgraph layers of 64, one global attention layer of 64,
30 x 2 MLP decoder, no auxiliary task so both compute exactly the same thing) on the same
batch of procedural scenes in one process. The PyG peer is written the usual way: the
vectors of a batch flattened into one node matrix, polyline max-pooling with
`torch_geometric.utils.scatter(reduce="max")`, polylines gathered per scene with
`to_dense_batch` for the masked global attention. Reported: median scenes/s over repeats,
jaxlab compile time apart, PyTorch with 1 thread and with all threads, and the analytic
multiply-accumulates per scene beside the rasterised ConvNet's FLOPs that the paper reports.

    python scripts/bench_vectornet.py [--batch 32] [--repeats 10] [--scenes 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def analytic_macs(p: int, v: int, f: int, w: int = 64, depth: int = 3, g: int = 64, dec: int = 64, t: int = 30) -> int:
    """Multiply-accumulates of one forward pass over P polylines of V vectors (dense layers and
    attention; LayerNorm, ReLU and max are not counted)."""
    sub = p * v * (f * w + (depth - 1) * 2 * w * w)
    glob = 3 * p * (2 * w + 2) * g + 2 * p * p * g
    return sub + glob + (g * dec + dec * 2 * t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--scenes", type=int, default=64)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    load0 = loadavg()
    if load0 > cores / 2:
        print(f"WARNING: load average {load0:.2f} on {cores} cores before the run: timings are unreliable")
    import jax
    import numpy as np
    import torch
    from torch_geometric.utils import scatter, to_dense_batch

    from jaxlab.core import train as train_lib
    from jaxlab.vectornet import configs, data, training

    cfg = configs.get_config("default")
    cfg.model.aux = False
    cfg.num_train = args.scenes
    arrays = data.split_arrays(cfg, "train")
    idx = np.arange(args.batch) % args.scenes
    batch = {k: arrays[k][idx] for k in training.BATCH_KEYS}
    b, p, v, f = batch["vectors"].shape
    print(f"device: jax {jax.devices()[0].device_kind} ({jax.default_backend()}), torch cpu; "
          f"batch {b} scenes, budget {p} polylines x {v} vectors, load average {load0:.2f}")

    # ---- jaxlab
    state = training.init_state(cfg)
    step = train_lib.make_train_step(training.make_loss_fn(cfg))
    predict = training.make_predict_fn(cfg)
    jb = jax.device_put(batch)
    t0 = time.perf_counter()
    state, m = step(state, jb, jax.random.key(0))
    jax.block_until_ready(m)
    compile_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(predict(state.params, jb))
    compile_pred = time.perf_counter() - t0

    def time_jax(fn):
        out = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            jax.block_until_ready(fn())
            out.append(time.perf_counter() - t)
        return statistics.median(out)

    holder = {"s": state}

    def jax_train():
        holder["s"], met = step(holder["s"], jb, jax.random.key(1))
        return met

    jt = time_jax(jax_train)
    ji = time_jax(lambda: predict(holder["s"].params, jb))

    # ---- PyTorch Geometric peer
    class Sub(torch.nn.Module):
        def __init__(self, fin, w):
            super().__init__()
            self.lin, self.norm = torch.nn.Linear(fin, w), torch.nn.LayerNorm(w, eps=1e-6)

        def forward(self, x, cluster, n):
            h = torch.relu(self.norm(self.lin(x)))
            return torch.cat([h, scatter(h, cluster, 0, dim_size=n, reduce="max")[cluster]], -1)

    class TorchVectorNet(torch.nn.Module):
        def __init__(self, fin, w=64, g=64, t=30):
            super().__init__()
            self.subs = torch.nn.ModuleList([Sub(fin, w), Sub(2 * w, w), Sub(2 * w, w)])
            self.q, self.k, self.v = (torch.nn.Linear(2 * w + 2, g) for _ in range(3))
            self.dec = torch.nn.Sequential(torch.nn.Linear(g, 64), torch.nn.LayerNorm(64, eps=1e-6), torch.nn.ReLU(),
                                           torch.nn.Linear(64, 2 * t))
            self.t = t

        def forward(self, x, cluster, poly_batch, n_poly):
            xs = x / torch.tensor([10.0] * 4 + [1.0] * (x.shape[1] - 4))
            h = xs
            for s in self.subs:
                h = s(h, cluster, n_poly)
            p = scatter(h, cluster, 0, dim_size=n_poly, reduce="max")
            p = p / p.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            ident = scatter(xs[:, :2], cluster, 0, dim_size=n_poly, reduce="min")
            dense, mask = to_dense_batch(torch.cat([p, ident], -1), poly_batch)
            att = self.q(dense) @ self.k(dense).transpose(1, 2)
            att = att.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
            out = att @ self.v(dense)
            return self.dec(out[:, 0]).view(-1, self.t, 2) * 10.0

    def copy_params(tm, params):
        def lin(mod, d):
            mod.weight.data = torch.from_numpy(np.asarray(d["kernel"]).T.copy())
            mod.bias.data = torch.from_numpy(np.asarray(d["bias"]).copy())

        def ln(mod, d):
            mod.weight.data = torch.from_numpy(np.asarray(d["scale"]).copy())
            mod.bias.data = torch.from_numpy(np.asarray(d["bias"]).copy())

        for i, sub in enumerate(tm.subs):
            lin(sub.lin, params["subgraph"][f"layer_{i}"]["Dense_0"])
            ln(sub.norm, params["subgraph"][f"layer_{i}"]["LayerNorm_0"])
        for name in ("query", "key", "value"):
            lin(getattr(tm, name[0]), params["global_graph"][f"{name}_0"])
        lin(tm.dec[0], params["decoder"]["Dense_0"])
        ln(tm.dec[1], params["decoder"]["LayerNorm_0"])
        lin(tm.dec[3], params["decoder"]["Dense_1"])

    vm = batch["vec_mask"]
    valid_poly = vm.any(-1)  # the context map_agents sees every real polyline
    poly_ids = -np.ones((b, p), np.int64)
    poly_ids[valid_poly] = np.arange(valid_poly.sum())
    x = torch.from_numpy(batch["vectors"][vm])
    cluster = torch.from_numpy(np.broadcast_to(poly_ids[..., None], vm.shape)[vm])
    poly_batch = torch.from_numpy(np.nonzero(valid_poly)[0])
    n_poly = int(valid_poly.sum())
    fut = torch.from_numpy(batch["future"])
    tmodel = TorchVectorNet(f)
    copy_params(tmodel, jax.device_get(holder["s"].params))
    with torch.no_grad():
        ref = np.asarray(predict(holder["s"].params, jb))
        diff = np.abs(tmodel(x, cluster, poly_batch, n_poly).numpy() - ref).max()
    print(f"same weights, same batch: max |jaxlab - torch| prediction difference {diff:.2e} m")
    opt = torch.optim.Adam(tmodel.parameters(), 1e-3)

    def torch_train():
        opt.zero_grad()
        loss = torch.nn.functional.huber_loss(tmodel(x, cluster, poly_batch, n_poly), fut, reduction="none")
        loss = loss.sum(-1).mean()
        loss.backward()
        opt.step()

    def torch_infer():
        with torch.no_grad():
            tmodel(x, cluster, poly_batch, n_poly)

    def time_torch(fn, threads):
        torch.set_num_threads(threads)
        fn()
        out = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return statistics.median(out)

    tt1, ti1 = time_torch(torch_train, 1), time_torch(torch_infer, 1)
    ttn, tin = time_torch(torch_train, cores), time_torch(torch_infer, cores)
    load1 = loadavg()
    n_real = int(valid_poly.sum(1).mean()), float(vm.sum(-1)[valid_poly].mean())
    macs_budget = analytic_macs(p, v, f)
    macs_real = analytic_macs(n_real[0], int(round(n_real[1])), f)
    print()
    print("| what | jaxlab | torch-geometric 1 thread | torch-geometric all threads | jaxlab / best torch |")
    print("|---|---|---|---|---|")
    print(f"| training scenes/s | {b / jt:.1f} | {b / tt1:.1f} | {b / ttn:.1f} | {min(tt1, ttn) / jt:.2f}x |")
    print(f"| inference scenes/s | {b / ji:.1f} | {b / ti1:.1f} | {b / tin:.1f} | {min(ti1, tin) / ji:.2f}x |")
    print()
    print(f"jaxlab compile: train step {compile_train:.2f} s, inference {compile_pred:.2f} s (not in the medians)")
    print(f"analytic forward MACs per scene: {macs_budget / 1e6:.1f} M at the padded budget ({p} x {v}), "
          f"{macs_real / 1e6:.1f} M at this batch's mean real size ({n_real[0]} polylines x {n_real[1]:.1f} vectors); "
          "the paper's best rasterised ConvNet: 10.56 GFLOPs (paper, Table 4)")
    print(f"load average before {load0:.2f}, after {load1:.2f} ({cores} cores)")


if __name__ == "__main__":
    main()
