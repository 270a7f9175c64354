"""VectorNet training and inference throughput: jaxlab vs the same network in PyTorch Geometric.

Both run the paper's network (3 subgraph layers of 64, one global attention layer of 64,
30 x 2 MLP decoder, no auxiliary task so both compute exactly the same thing) on the same
batch of procedural scenes in one process. The PyG peer is written the usual way: the
vectors of a batch flattened into one node matrix, polyline max-pooling with
`torch_geometric.utils.scatter(reduce="max")`, polylines gathered per scene with
`to_dense_batch` for the masked global attention. jaxlab keeps its padded batch and runs
its subgraph on the polyline length classes that `jaxlab vectornet train` derives from the
training scenes (`model.length_classes`), differentiated through the subgraph layers'
hand-written VJP (`model.subgraph_vjp=hand`, the default); a third training peer (left out
with `--no-autodiff`) is the same step with JAX differentiating the Flax modules instead.
The host allocator is tuned as the `jaxlab` command does (`runtime.tune_host_allocator`,
shared by PyTorch in the process). Reported: median times over alternating
repeats (scenes/s = batch / time), jaxlab compile time apart, a 1-thread and an
all-threads column per peer (`--threads both|1|all`, see `jaxlab.core.benchmark`), the
load average before and after, and the analytic
multiply-accumulates per scene beside the rasterised ConvNet's FLOPs that the paper reports.

    python scripts/bench_vectornet.py [--batch 32] [--repeats 10] [--scenes 64] [--block 1] [--threads both|1|all]
                                      [--no-autodiff]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from jaxlab.core import benchmark, runtime

SETTING = benchmark.configure_threads()  # before jax and torch start their thread pools
ALLOCATOR = runtime.tune_host_allocator()  # as the `jaxlab` command does; PyTorch shares it
AUTODIFF = "jaxlab, autodiff subgraph"


def analytic_macs(p: int, v, f: int, w: int = 64, depth: int = 3, g: int = 64, dec: int = 64, t: int = 30) -> int:
    """Multiply-accumulates of one forward pass over P polylines of V vectors as jaxlab computes
    it (dense layers and attention; LayerNorm, ReLU and max are not counted): after the first
    subgraph layer, each layer multiplies the per-vector half of its input per vector and the
    per-polyline pool once per polyline (`models._PooledLayer`). `v` is one V for every
    polyline or a V per polyline (the length classes' budgets)."""
    n = sum(v) if isinstance(v, (tuple, list)) else p * v  # vectors computed
    sub = n * f * w + (depth - 1) * (n * w * w + p * w * w)
    glob = 3 * p * (2 * w + 2) * g + 2 * p * p * g
    return sub + glob + (g * dec + dec * 2 * t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--scenes", type=int, default=64)
    ap.add_argument("--no-autodiff", dest="autodiff", action="store_false",
                    help="leave out the third training peer: jaxlab with model.subgraph_vjp=autodiff")
    ap.add_argument("--block", type=int, default=1,
                    help="consecutive calls per turn of each peer (1: alternate call by call)")
    benchmark.add_threads_argument(ap)
    args = ap.parse_args()
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
    print(f"batch {b} scenes, budget {p} polylines x {v} vectors; real vectors {batch['vec_mask'].mean():.0%} "
          f"of the budget")

    # ---- jaxlab
    state = training.init_state(cfg)
    # the subgraph's length classes, derived from the scenes the batches come from, as `train` does
    slots = training.slot_vectors(cfg, arrays["vec_mask"])
    step = train_lib.make_train_step(training.make_loss_fn(cfg, slots), compiler_options=training.compiler_options(cfg))
    predict = training.make_predict_fn(cfg, slots)
    classes = ", ".join(f"{slots.count(k)} x {k}" for k in sorted(set(slots), reverse=True)) if slots else "off"
    print(f"jaxlab's subgraph length classes (model.length_classes={cfg.model.length_classes}): {classes} "
          f"polylines x vectors per scene, {sum(slots or (p * v,)) / (p * v):.0%} of the budget computed")
    jb = jax.device_put(batch)
    t0 = time.perf_counter()
    state, m = step(state, jb, jax.random.key(0))
    jax.block_until_ready(m)
    compile_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(predict(state.params, jb))
    compile_pred = time.perf_counter() - t0

    holder = {"s": state}

    def jax_train():
        holder["s"], met = step(holder["s"], jb, jax.random.key(1))
        return jax.block_until_ready(met)

    train_peers = {"jaxlab": jax_train}
    if args.autodiff:  # the same step with JAX differentiating the subgraph's Flax modules
        cfg_auto = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, subgraph_vjp="autodiff"))
        step_auto = train_lib.make_train_step(training.make_loss_fn(cfg_auto, slots),
                                              compiler_options=training.compiler_options(cfg_auto))
        holder["a"], _ = step_auto(training.init_state(cfg_auto), jb, jax.random.key(0))

        def jax_train_autodiff():
            holder["a"], met = step_auto(holder["a"], jb, jax.random.key(1))
            return jax.block_until_ready(met)

        train_peers[AUTODIFF] = jax_train_autodiff

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

    with benchmark.torch_threads(benchmark.peer_threads(SETTING)):
        print(benchmark.device_line())
        train_t = benchmark.alternate({**train_peers, "PyG": torch_train}, args.repeats, block=args.block)
        infer_t = benchmark.alternate({"jaxlab": lambda: jax.block_until_ready(predict(holder["s"].params, jb)),
                                       "PyG": torch_infer}, args.repeats, block=args.block)
    n_real = int(valid_poly.sum(1).mean()), float(vm.sum(-1)[valid_poly].mean())
    macs_budget = analytic_macs(p, v, f)
    macs_real = analytic_macs(n_real[0], int(round(n_real[1])), f)
    macs_classes = analytic_macs(p, list(slots), f) if slots else macs_budget
    res = benchmark.Results()
    t = res.table(f"VectorNet, batch {b} scenes", ["jaxlab", "PyG"] + ([AUTODIFF] if args.autodiff else []),
                  unit="ms", extras=["jaxlab compile (s)"])
    t.add("training step", train_t, **{"jaxlab compile (s)": f"{compile_train:.2f}"})
    t.add("inference", infer_t, **{"jaxlab compile (s)": f"{compile_pred:.2f}"})
    res.note(f"scenes/s = {b} / time; medians of {args.repeats} repeats, the peers alternating "
             + ("call by call" if args.block == 1 else f"in turns of {args.block} calls"))
    print(f"analytic forward MACs per scene: {macs_budget / 1e6:.1f} M at the padded budget ({p} x {v}), "
          f"{macs_classes / 1e6:.1f} M on jaxlab's length classes, "
          f"{macs_real / 1e6:.1f} M at this batch's mean real size ({n_real[0]} polylines x {n_real[1]:.1f} vectors); "
          "the paper's best rasterised ConvNet: 10.56 GFLOPs (paper, Table 4)")
    return res


if __name__ == "__main__":
    benchmark.run(main)
