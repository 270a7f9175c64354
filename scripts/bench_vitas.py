"""Benchmark of the ViTAS superformer (jaxlab) against per-architecture slicing and PyTorch.

    python scripts/bench_vitas.py [--config smoke|default|path.py[:variant]] [--num-archs 50]
                                  [--batch 64] [--population 20] [--reps 10] [--sharing cyclic]

(a) Supernet training over N sampled architectures, compile included: the masked step (one
    compile per patch size serves every architecture) vs a per-architecture recompiled step
    (`extract_subnet` -> a standalone net, one compile per distinct shape); both JAX paths
    are compiled with the same XLA options (those of `training.make_supernet_step`).
(b) One superformer training step (AdamW, label smoothing, no augmentation on either side)
    of jaxlab vs the same superformer written in PyTorch eager in the usual AutoFormer style
    (full weights, sliced by index tensors every call), same architectures, batch and
    weights (the logits are compared first), the peers alternating step by step. A third
    peer (`--no-sliced` drops it) runs the same architectures as standalone nets
    (`extract_subnet`), each with its own step compiled before the timing: what slicing
    costs in XLA when compiles are free, the bound for any scheme that computed only the
    sampled widths.
(c) Population evaluation of P subnets (one patch size): one call of
    `jaxlab.nas.population.make_population_eval` (vmapped on accelerators, a `lax.map`
    over architectures on CPU) vs P sequential calls of the jitted single-architecture
    forward, compile reported apart.

Prints the device, the load average before and after, and markdown tables of medians and
ratios with a 1-thread and an all-threads column per peer (`--threads both|1|all`, see
`jaxlab.core.benchmark`).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

from jaxlab.core import benchmark, runtime

SETTING = benchmark.configure_threads()  # before jax and torch start their thread pools
ALLOCATOR = runtime.tune_host_allocator()  # as the `jaxlab` command does; PyTorch shares it

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxlab.core import config as config_lib  # noqa: E402
from jaxlab.core import train as train_lib  # noqa: E402
from jaxlab.nas import widths  # noqa: E402
from jaxlab.nas.population import make_population_eval  # noqa: E402
from jaxlab.vitas import configs, models, training  # noqa: E402
from jaxlab.vitas.space import Space  # noqa: E402

ARCH_SEED = 0
DATA_SEED = 1


def _archs(space, n, seed=ARCH_SEED, patch=None):
    a = space.sample(np.random.default_rng(seed), n, 0.3, shift=True)
    if patch is not None:
        a["patch"] = np.full_like(a["patch"], patch)
    return [{k: v[i] for k, v in a.items()} for i in range(n)]


def _data(space, batch):
    s, k = space.cfg.image_size, space.cfg.num_classes
    rng = np.random.default_rng(DATA_SEED)
    return rng.random((batch, s, s, space.cfg.in_channels), np.float32), rng.integers(0, k, batch).astype(np.int32)


def _standalone_step(c, model):
    """The train step of a standalone (extracted) net, compiled with the supernet step's XLA
    options (`training.make_supernet_step`), so both JAX paths get the same compiler."""
    def loss_fn(params, extra, b, k):
        return training.soft_ce(model.apply({"params": params}, b["x"]), b["y"], c.label_smoothing), ({}, None)
    return train_lib.make_train_step(loss_fn, compiler_options=runtime.cpu_compiler_options(reductions=True))


def bench_masked_vs_recompiled(cfg, space, n, batch):
    x, y = _data(space, batch)
    archs = _archs(space, n)
    state = training.init_supernet_state(cfg, space)
    step = training.make_supernet_step(cfg, space)
    t0 = time.perf_counter()
    for a in archs:
        state, m = step(state, {"x": x, "y": y, "arch": a, "patch": int(a["patch"])}, jax.random.key(0))
    jax.block_until_ready(m)
    t_mask = time.perf_counter() - t0
    n_mask = len(step.compiled)

    c = cfg.supernet
    tx = training.optimizer(c.lr, c.weight_decay, c.warmup_steps, c.loop.num_steps)
    onehot = jax.nn.one_hot(y, space.cfg.num_classes)
    cache = {}
    t0 = time.perf_counter()
    for a in archs:
        model, p = models.extract_subnet(space, state.params, a)
        key = repr(model)
        if key not in cache:
            cache[key] = _standalone_step(c, model)
        st = train_lib.TrainState.create(params=p, tx=tx)
        st, m = cache[key](st, {"x": x, "y": onehot}, jax.random.key(0))
    jax.block_until_ready(m)
    t_slice = time.perf_counter() - t0
    return t_mask, n_mask, t_slice, len(cache)


def torch_superformer(space, params, torch):
    """The superformer in PyTorch: full-size weights copied from `params`, sliced per call."""
    F = torch.nn.functional
    nn = torch.nn
    cfg = space.cfg
    t = lambda a: nn.Parameter(torch.tensor(np.asarray(a)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_w = nn.ParameterList([t(np.asarray(params[f"patch{i}_kernel"]).transpose(3, 2, 0, 1))
                                             for i in range(len(space.patch_sizes))])
            self.patch_b = nn.ParameterList([t(params[f"patch{i}_bias"]) for i in range(len(space.patch_sizes))])
            self.cls = nn.ParameterList([t(params[f"cls{i}"]) for i in range(len(space.patch_sizes))])
            self.pos = nn.ParameterList([t(params[f"pos{i}"]) for i in range(len(space.patch_sizes))])
            self.blocks = nn.ModuleList()
            for i in range(space.depth):
                p, b = params[f"block_{i}"], nn.Module()
                for name in ("norm1_scale", "norm1_bias", "norm2_scale", "norm2_bias", "v_bias", "proj_bias",
                             "fc1_bias", "fc2_bias", "qk_bias"):
                    setattr(b, name, t(p[name]))
                b.qk = t(np.asarray(p["qk_kernel"]).transpose(0, 2, 3, 1))       # [opt, 2, A, C] (out, in)
                for name in ("v", "proj", "fc1", "fc2"):
                    setattr(b, name, t(np.asarray(p[f"{name}_kernel"]).T))
                self.blocks.append(b)
            self.norm_w, self.norm_b = t(params["norm_scale"]), t(params["norm_bias"])
            self.head_w, self.head_b = t(np.asarray(params["head_kernel"]).T), t(params["head_bias"])

        def forward(self, x, arch, side):
            pi = int(arch["patch"])
            ie = torch.as_tensor(space.embed_index(arch, side))
            d = len(ie)
            eps = cfg.norm_epsilon
            hs = space.hidden_scheme()
            h = F.conv2d(x, self.patch_w[pi][ie], self.patch_b[pi][ie], stride=space.patch_sizes[pi])
            h = h.flatten(2).transpose(1, 2)
            h = torch.cat([self.cls[pi][..., ie].expand(h.shape[0], 1, d), h], 1) + self.pos[pi][..., ie]
            for i, b in enumerate(self.blocks):
                op = int(arch["ops"][i])
                if op == 0:
                    continue
                heads = int(space.heads[op - 1])
                iq = torch.as_tensor(widths.index_set(cfg.qkv_dim, int(space.qkv_widths[arch["qkv"][i]]), hs,
                                                      side=side))
                im = torch.as_tensor(widths.index_set(cfg.mlp_dim, int(space.mlp_widths[arch["mlp"][i]]), hs,
                                                      side=side))
                u = F.layer_norm(h, (d,), b.norm1_scale[ie], b.norm1_bias[ie], eps)
                wqk = b.qk[op - 1][:, iq][:, :, ie]
                q = F.linear(u, wqk[0], b.qk_bias[op - 1, 0, iq])
                k = F.linear(u, wqk[1], b.qk_bias[op - 1, 1, iq])
                v = F.linear(u, b.v[iq][:, ie], b.v_bias[iq])
                bsz, tok, a = q.shape
                sp = lambda z: z.view(bsz, tok, heads, a // heads).transpose(1, 2)
                w = torch.softmax(sp(q) @ sp(k).transpose(-1, -2) * space.scale, -1)
                o = (w @ sp(v)).transpose(1, 2).reshape(bsz, tok, a)
                h = h + F.linear(o, b.proj[ie][:, iq], b.proj_bias[ie])
                u = F.layer_norm(h, (d,), b.norm2_scale[ie], b.norm2_bias[ie], eps)
                u = F.gelu(F.linear(u, b.fc1[im][:, ie], b.fc1_bias[im]))
                h = h + F.linear(u, b.fc2[ie][:, im], b.fc2_bias[ie])
            h = F.layer_norm(h[:, 0], (d,), self.norm_w[ie], self.norm_b[ie], eps)
            return F.linear(h, self.head_w[:, ie], self.head_b)

    return Net()


def bench_torch(cfg, space, batch, reps, sliced=True):
    import torch

    x, y = _data(space, batch)
    archs = _archs(space, reps + 2, seed=ARCH_SEED + 1)
    state = training.init_supernet_state(cfg, space)
    net = torch_superformer(space, jax.device_get(state.params), torch)
    xt, yt = torch.tensor(x).permute(0, 3, 1, 2).contiguous(), torch.tensor(y).long()
    # same weights, same subnet -> same logits (checks that both sides compute one network)
    fwd = jax.jit(lambda p, xx, a: training.supernet_forward(space, p, xx, a, int(archs[0]["patch"])))
    with torch.no_grad():
        ref = sum(net(xt, archs[0], s) for s in space.sides()).numpy()
    diff = float(np.abs(np.asarray(fwd(state.params, x, archs[0])) - ref).max())

    c = cfg.supernet
    opt = torch.optim.AdamW(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    torch_archs = itertools.cycle(archs)

    def torch_step():
        a = next(torch_archs)
        opt.zero_grad()
        logits = sum(net(xt, a, s) for s in space.sides())
        loss = torch.nn.functional.cross_entropy(logits, yt, label_smoothing=c.label_smoothing)
        loss.backward()
        opt.step()

    step = training.make_supernet_step(cfg, space)
    box = {"state": state}

    def jax_step(a):
        box["state"], m = step(box["state"], {"x": x, "y": y, "arch": a, "patch": int(a["patch"])},
                               jax.random.key(0))
        jax.block_until_ready(m)

    compile_s = 0.0
    for patch in sorted({int(a["patch"]) for a in archs}):  # first call of each patch size: compile (+ one step)
        compile_s += benchmark.time_call(lambda: jax_step(next(a for a in archs if int(a["patch"]) == patch)))
    jax_archs = itertools.cycle(archs)
    peers = {"jaxlab": lambda: jax_step(next(jax_archs)), "PyTorch": torch_step}
    if sliced and len(space.sides()) == 1:
        peers["JAX sliced"] = sliced_steps(c, state.params, space, archs, x, y)
    times = benchmark.alternate(peers, reps)
    return times, compile_s, diff


def sliced_steps(c, params, space, archs, x, y):
    """The same architectures as standalone nets (`extract_subnet`), each with its own compiled
    step (compiled here, before timing): what slicing costs in XLA once compiles are free, the
    bound of any masking scheme that computed only the sampled widths."""
    tx = training.optimizer(c.lr, c.weight_decay, c.warmup_steps, c.loop.num_steps)
    onehot = jax.nn.one_hot(y, space.cfg.num_classes)
    nets = []
    for a in archs:
        model, p = models.extract_subnet(space, params, a)
        step = _standalone_step(c, model)
        st = train_lib.TrainState.create(params=p, tx=tx)
        st, m = step(st, {"x": x, "y": onehot}, jax.random.key(0))
        jax.block_until_ready(m)
        nets.append([step, st])
    order = itertools.cycle(nets)

    def run():
        net = next(order)
        net[1], m = net[0](net[1], {"x": x, "y": onehot}, jax.random.key(0))
        jax.block_until_ready(m)
    return run


def bench_population(cfg, space, params, p_size, batch, reps=3):
    x, _ = _data(space, batch)
    archs = _archs(space, p_size, seed=ARCH_SEED + 2, patch=0)
    pop = {k: jnp.stack([a[k] for a in archs]) for k in archs[0]}
    side = space.sides()[0]
    apply = lambda p, xx, a: models.Superformer(space).apply({"params": p}, xx, a, patch_index=0, side=side)
    vm = make_population_eval(apply)
    single = jax.jit(apply)
    t0 = time.perf_counter()
    jax.block_until_ready(vm(params, x, pop))
    c_vm = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(single(params, x, archs[0]))
    c_single = time.perf_counter() - t0

    times = benchmark.alternate({"jaxlab population call": lambda: jax.block_until_ready(vm(params, x, pop)),
                                 "jaxlab sequential": lambda: jax.block_until_ready(
                                     [single(params, x, a) for a in archs])}, reps)
    return times, c_vm, c_single


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="default")
    ap.add_argument("--sharing", default="", help="prefix | bilateral | cyclic (default: the config's)")
    ap.add_argument("--num-archs", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--eval-batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--no-sliced", dest="sliced", action="store_false",
                    help="(b) without the third peer, the architectures as standalone nets compiled one by one")
    benchmark.add_threads_argument(ap)
    args = ap.parse_args()
    cfg = config_lib.resolve(args.config, configs.get_config)
    sup = dataclasses.replace(cfg.supernet, aug=dataclasses.replace(cfg.supernet.aug, kind="none"))
    space_cfg = dataclasses.replace(cfg.space, sharing=args.sharing) if args.sharing else cfg.space
    cfg = dataclasses.replace(cfg, supernet=sup, space=space_cfg)
    space = Space(cfg.space)
    res = benchmark.Results()
    import torch

    with benchmark.torch_threads(benchmark.peer_threads(SETTING)):
        print(benchmark.device_line())
        print(benchmark.allocator_line(ALLOCATOR))
        print(f"config: {args.config}  sharing: {cfg.space.sharing}  batch {args.batch}  "
              f"image {cfg.space.image_size}  C={cfg.space.embed_dim} L={cfg.space.depth}  "
              f"torch threads {torch.get_num_threads()}")
        t_mask, n_mask, t_slice, n_slice = bench_masked_vs_recompiled(cfg, space, args.num_archs, args.batch)
        res.table(f"(a) Supernet training over {args.num_archs} architectures, compile included (one run each)",
                  ["jaxlab masked", "JAX recompiled sliced"], unit="s", extras=["compiles"]).add(
            "supernet training", {"jaxlab masked": t_mask, "JAX recompiled sliced": t_slice},
            compiles=f"{n_mask} / {n_slice}")
        times, c_j, diff = bench_torch(cfg, space, args.batch, args.reps, sliced=args.sliced)
        res.table("(b) Superformer train step vs PyTorch eager slicing", list(times), unit="ms",
                  extras=["jaxlab compile (s)", "logits max diff"]).add(
            f"train step, batch {args.batch}", times,
            **{"jaxlab compile (s)": f"{c_j:.1f}", "logits max diff": f"{diff:.1e}"})
        state = training.init_supernet_state(cfg, space)
        times, c_vm, c_single = bench_population(cfg, space, state.params, args.population, args.eval_batch)
        res.table(f"(c) Population evaluation, P={args.population}, {args.eval_batch} images",
                  ["jaxlab population call", "jaxlab sequential"], unit="ms",
                  extras=["compile (s) population call / single"]).add(
            "population eval", times, **{"compile (s) population call / single": f"{c_vm:.1f} / {c_single:.1f}"})
    res.note(f"medians of {args.reps} (b) and 3 (c) alternating repeats")
    return res


if __name__ == "__main__":
    benchmark.run(main)
