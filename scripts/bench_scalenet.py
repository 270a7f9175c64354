"""Benchmark of the ScaleNet super-supernet (jaxlab) against per-architecture slicing.

    python scripts/bench_scalenet.py [--config smoke|default|path.py[:variant]] [--num-archs 50] [--resolution R]

1. Supernet training over N sampled architectures at one resolution, compile included:
   masks (one compiled step serves every architecture), width/depth buckets (one compile
   per bucket, `jaxlab.scalenet.buckets`) and per-architecture slicing in JAX (a
   standalone network per architecture: one compile per shape).
2. Population evaluation of P = 32 architectures: one call of
   `jaxlab.nas.population.make_population_eval` (on CPU a `lax.map` over architectures),
   the whole population vmapped, and P sequential calls of the jitted single-architecture
   forward (compile reported apart).
3. Training steps over sampled architectures of the masked and the bucketed JAX
   supernet vs a PyTorch slicing supernet of the same size (OFA/BCNet style: weights
   sliced per call), same architectures and batch; and for one architecture, the masked
   step, its bucket, the extracted standalone subnet and PyTorch (where the gap goes).

Prints the devices, the load average before and after, and markdown tables of medians
and ratios with a 1-thread and an all-threads column per peer (`--threads both|1|all`,
see `jaxlab.core.benchmark`); the peers of 2 and 3 alternate call by call.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

from jaxlab.core import benchmark

SETTING = benchmark.configure_threads()  # before jax and torch start their thread pools

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxlab.core import config as config_lib  # noqa: E402
from jaxlab.core import train as train_lib  # noqa: E402
from jaxlab.nas.population import make_population_eval  # noqa: E402
from jaxlab.scalenet import buckets, configs, sampler, supernet  # noqa: E402
from jaxlab.scalenet.models import extract_subnet  # noqa: E402
from jaxlab.scalenet.space import Space  # noqa: E402


def bench_masks_vs_slicing(cfg, space, n, r, batch):
    rng = np.random.default_rng(0)
    archs = [sampler.sample_hierarchical(space, rng, side=i % 2)[0] for i in range(n)]
    x = jnp.asarray(np.random.default_rng(1).random((batch, r, r, 3), np.float32))
    y = jnp.asarray(np.random.default_rng(2).integers(0, space.cfg.num_classes, batch), jnp.int32)
    t_mask = {}
    for mode in ("off", "on"):
        net, state = supernet.init_state(cfg, space)
        step = supernet.make_step(with_buckets(cfg, mode), net)
        t0 = time.perf_counter()
        for a in archs:
            state, m = step(state, {"x": x, "y": y, "arch": a}, jax.random.key(0))
        jax.block_until_ready(m)
        t_mask[mode] = time.perf_counter() - t0

    # per-architecture slicing: one standalone network (one compile) per architecture
    params = {"params": state.params}
    tx = optax.sgd(0.01, momentum=0.9, nesterov=True)
    t0 = time.perf_counter()
    n_compiles = 0
    cache = {}
    for a in archs:
        model, variables = extract_subnet(space, params, a, side=int(a["side"]))
        key = repr(model)
        if key not in cache:
            n_compiles += 1

            def loss(p, bs, x, y, model=model):
                logits, new = model.apply({"params": p, "batch_stats": bs}, x, train=True, mutable=["batch_stats"])
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new

            @jax.jit
            def sstep(p, o, bs, x, y, loss=loss):
                (l, new), g = jax.value_and_grad(loss, has_aux=True)(p, bs, x, y)
                upd, o = tx.update(g, o, p)
                return optax.apply_updates(p, upd), o, l

            cache[key] = sstep
        p = variables["params"]
        o = tx.init(p)
        p, o, l = cache[key](p, o, variables["batch_stats"], x, y)
    jax.block_until_ready(l)
    t_slice = time.perf_counter() - t0
    n_buckets = len({buckets.choose_bucket(space, a) for a in archs})
    return t_mask, t_slice, n_compiles, n_buckets


def bench_population(cfg, space, net, params, p_size, r, batch, reps):
    rng = np.random.default_rng(3)
    archs = [sampler.sample_hierarchical(space, rng)[0] for _ in range(p_size)]
    pop = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *archs)
    x = jnp.asarray(np.random.default_rng(1).random((batch, r, r, 3), np.float32))
    apply = lambda p, x, a: net.apply({"params": p}, x, a)
    one_call = make_population_eval(apply)            # CPU: lax.map over architectures
    vm = make_population_eval(apply, chunk=None)      # the whole population vmapped
    single = jax.jit(apply)
    compiles = {"jaxlab population call": benchmark.time_call(lambda: jax.block_until_ready(one_call(params, x, pop))),
                "jaxlab vmapped": benchmark.time_call(lambda: jax.block_until_ready(vm(params, x, pop))),
                "single": benchmark.time_call(lambda: jax.block_until_ready(single(params, x, archs[0])))}
    times = benchmark.alternate({
        "jaxlab population call": lambda: jax.block_until_ready(one_call(params, x, pop)),
        "jaxlab vmapped": lambda: jax.block_until_ready(vm(params, x, pop)),
        "jaxlab sequential": lambda: jax.block_until_ready([single(params, x, a) for a in archs])}, repeats=reps)
    return times, compiles


def torch_supernet(space, torch):
    """A PyTorch slicing super-supernet of the same layout (weights sliced per call)."""
    import torch.nn.functional as F

    nn = torch.nn
    cfg = space.cfg

    def hsig(x):
        return F.relu6(x + 3.0) / 6.0

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            P = lambda *s: nn.Parameter(torch.randn(*s) * 0.1)
            self.stem = P(space.super_stem, 3, 3, 3)
            self.stem_bn = nn.ParameterList([nn.Parameter(torch.ones(space.super_stem)),
                                             nn.Parameter(torch.zeros(space.super_stem))])
            self.blocks = nn.ModuleList()
            for l in space.layers:
                cin, cout = int(space.super_channels[l["in_slot"]]), int(space.super_channels[l["out_slot"]])
                hid = cin * l["expand"]
                se = max(1, hid // cfg.se_div)
                ops = nn.ModuleList()
                for k in cfg.kernels:
                    m = nn.Module()
                    m.expand = P(hid, cin, 1, 1)
                    m.bn1 = nn.ParameterList([nn.Parameter(torch.ones(hid)), nn.Parameter(torch.zeros(hid))])
                    m.dw = P(hid, 1, k, k)
                    m.bn2 = nn.ParameterList([nn.Parameter(torch.ones(hid)), nn.Parameter(torch.zeros(hid))])
                    m.se1 = P(se, hid)
                    m.se1b = nn.Parameter(torch.zeros(se))
                    m.se2 = P(hid, se)
                    m.se2b = nn.Parameter(torch.zeros(hid))
                    m.proj = P(cout, hid, 1, 1)
                    m.bn3 = nn.ParameterList([nn.Parameter(torch.ones(cout)), nn.Parameter(torch.zeros(cout))])
                    ops.append(m)
                self.blocks.append(ops)
            self.head = P(cfg.head_channels, int(space.super_channels[-1]), 1, 1)
            self.head_bn = nn.ParameterList([nn.Parameter(torch.ones(cfg.head_channels)),
                                             nn.Parameter(torch.zeros(cfg.head_channels))])
            self.fc = nn.Linear(cfg.head_channels, cfg.num_classes)

        @staticmethod
        def sl(n_total, n, side):
            return slice(0, n) if side == 0 else slice(n_total - n, n_total)

        def forward(self, x, arch):
            side = int(arch["side"])
            ch = [int(c) for c in arch["channels"]]
            act = F.hardswish
            bn = lambda h, p, s: F.batch_norm(h, None, None, p[0][s], p[1][s], training=True)
            s0 = self.sl(space.super_stem, ch[0], side)
            h = act(bn(F.conv2d(x, self.stem[s0], stride=cfg.stem_stride, padding=1), self.stem_bn, s0))
            for li, l in enumerate(space.layers):
                op = int(arch["ops"][li])
                if op == 0:
                    continue
                m = self.blocks[li][op - 1]
                cin, cout = ch[l["in_slot"]], ch[l["out_slot"]]
                hid = cin * l["expand"]
                se = max(1, hid // cfg.se_div)
                Ci = int(space.super_channels[l["in_slot"]])
                si = self.sl(Ci, cin, side)
                sh = self.sl(Ci * l["expand"], hid, side)
                ss = self.sl(max(1, Ci * l["expand"] // cfg.se_div), se, side)
                so = self.sl(int(space.super_channels[l["out_slot"]]), cout, side)
                z = h
                if l["expand"] != 1:
                    z = act(bn(F.conv2d(z, m.expand[sh, si]), m.bn1, sh))
                k = m.dw.shape[-1]
                z = act(bn(F.conv2d(z, m.dw[sh], stride=l["stride"], padding=k // 2, groups=hid), m.bn2, sh))
                s = z.mean((2, 3))
                s = F.relu(F.linear(s, m.se1[ss, sh], m.se1b[ss]))
                s = hsig(F.linear(s, m.se2[sh, ss], m.se2b[sh]))
                z = z * s[:, :, None, None]
                z = bn(F.conv2d(z, m.proj[so, sh]), m.bn3, so)
                if l["stride"] == 1 and cin == cout:
                    z = z + h
                h = z
            sl_ = self.sl(int(space.super_channels[-1]), ch[-1], side)
            h = act(bn(F.conv2d(h, self.head[:, sl_]), self.head_bn, slice(None)))
            return self.fc(h.mean((2, 3)))

    return Net()


def bench_torch(cfg, space, r, batch, reps):
    import torch

    torch.manual_seed(0)
    net = torch_supernet(space, torch)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    rng = np.random.default_rng(4)
    archs = [sampler.sample_hierarchical(space, rng, side=i % 2)[0] for i in range(reps + 1)]
    x = torch.rand(batch, 3, r, r)
    y = torch.randint(0, space.cfg.num_classes, (batch,))
    torch_archs = itertools.cycle(archs)

    def torch_step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x, next(torch_archs)), y)
        loss.backward()
        opt.step()

    xj = jnp.asarray(x.permute(0, 2, 3, 1).numpy())
    yj = jnp.asarray(y.numpy(), jnp.int32)
    peers, compiles, j_params = {}, {}, 0
    for name, mode in (("jaxlab masked", "off"), ("jaxlab buckets", "on")):
        jnet, state = supernet.init_state(cfg, space)
        step = supernet.make_step(with_buckets(cfg, mode), jnet)
        box = {"state": state, "archs": itertools.cycle(archs)}

        def jax_step(step=step, box=box):
            box["state"], m = step(box["state"], {"x": xj, "y": yj, "arch": next(box["archs"])}, jax.random.key(0))
            jax.block_until_ready(m)

        # compile every bucket the timed calls will meet before timing
        t0 = time.perf_counter()
        for a in {buckets.choose_bucket(space, a) if mode == "on" else 0: a for a in archs}.values():
            box["state"], m = step(box["state"], {"x": xj, "y": yj, "arch": a}, jax.random.key(0))
        jax.block_until_ready(m)
        compiles[name] = time.perf_counter() - t0
        peers[name] = jax_step
        j_params = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(box["state"].params))
    times = benchmark.alternate(peers | {"PyTorch": torch_step}, repeats=reps)
    n_params = sum(p.numel() for p in net.parameters())
    return times, compiles, n_params, j_params, torch.get_num_threads()


def with_buckets(cfg, mode):
    return dataclasses.replace(cfg, supernet=dataclasses.replace(cfg.supernet, buckets=mode))


def bench_gap(cfg, space, r, batch, reps):
    """One architecture, three train steps: the masked supernet (every layer at its
    largest width), the same architecture extracted as a standalone JAX network, and the
    PyTorch slicing supernet. masked / extracted is the cost of masking; extracted /
    PyTorch is the cost of the framework's kernels."""
    import torch

    torch.manual_seed(0)
    arch = sampler.sample_hierarchical(space, np.random.default_rng(5), side=0)[0]
    tnet = torch_supernet(space, torch)
    opt = torch.optim.SGD(tnet.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.rand(batch, 3, r, r)
    y = torch.randint(0, space.cfg.num_classes, (batch,))

    def torch_step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(tnet(x, arch), y).backward()
        opt.step()

    xj, yj = jnp.asarray(x.permute(0, 2, 3, 1).numpy()), jnp.asarray(y.numpy(), jnp.int32)
    jnet, state = supernet.init_state(cfg, space)
    step = supernet.make_step(with_buckets(cfg, "off"), jnet)
    bstep = supernet.make_step(with_buckets(cfg, "on"), jnet)
    model, variables = extract_subnet(space, {"params": state.params}, arch, side=int(arch["side"]))
    box = {"state": state, "bucket": jax.tree_util.tree_map(jnp.array, state)}

    def masked_step():
        box["state"], m = step(box["state"], {"x": xj, "y": yj, "arch": arch}, jax.random.key(0))
        jax.block_until_ready(m)

    def bucket_step():
        box["bucket"], m = bstep(box["bucket"], {"x": xj, "y": yj, "arch": arch}, jax.random.key(0))
        jax.block_until_ready(m)

    def loss(p, extra, b, key):
        logits, new = model.apply({"params": p, "batch_stats": extra}, b[0], train=True, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, b[1]).mean(), ({}, new["batch_stats"])

    sub_step = train_lib.make_train_step(loss)
    sub = {"state": train_lib.TrainState.create(params=variables["params"], extra=variables["batch_stats"],
                                                tx=optax.sgd(0.01, momentum=0.9, nesterov=True))}

    def extracted_step():
        sub["state"], m = sub_step(sub["state"], (xj, yj), jax.random.key(0))
        jax.block_until_ready(m)

    return benchmark.alternate({"jaxlab masked": masked_step, "jaxlab bucket": bucket_step,
                                "jaxlab extracted": extracted_step, "PyTorch slicing": torch_step}, repeats=reps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="smoke")
    ap.add_argument("--num-archs", type=int, default=50)
    ap.add_argument("--population", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--resolution", type=int, default=0, help="input side (0: the config's largest)")
    benchmark.add_threads_argument(ap)
    args = ap.parse_args()
    cfg = config_lib.resolve(args.config, configs.get_config)
    space = Space(cfg.space)
    r = args.resolution or max(int(x) for g in space.cfg.res_grid for x in g)
    res = benchmark.Results()
    with benchmark.torch_threads(benchmark.peer_threads(SETTING)):
        print(benchmark.device_line())
        print(f"config: {args.config}  resolution {r}  batch {args.batch}")
        t_mask, t_slice, nc, nb = bench_masks_vs_slicing(cfg, space, args.num_archs, r, args.batch)
        res.table(f"Supernet training over {args.num_archs} architectures, compile included (one run each)",
                  ["jaxlab masks", "jaxlab buckets", "JAX per-architecture slicing"], unit="s",
                  extras=["compiles"]).add(
            "supernet training", {"jaxlab masks": t_mask["off"], "jaxlab buckets": t_mask["on"],
                                  "JAX per-architecture slicing": t_slice}, compiles=f"1 / {nb} / {nc}")
        net, state = supernet.init_state(cfg, space)
        times, c = bench_population(cfg, space, net, state.params, args.population, r, args.batch, args.reps)
        res.table(f"Population evaluation, P={args.population}, batch {args.batch}",
                  ["jaxlab population call", "jaxlab vmapped", "jaxlab sequential"], unit="ms",
                  extras=["compile (s) population call / vmapped / single"]).add(
            "population eval", times, **{"compile (s) population call / vmapped / single":
                                         " / ".join(f"{v:.1f}" for v in c.values())})
        times, c_j, n_t, n_j, threads = bench_torch(cfg, space, r, args.batch, args.reps)
        res.table("Supernet train step over sampled architectures: masked / bucketed JAX vs PyTorch slicing supernet",
                  ["jaxlab masked", "jaxlab buckets", "PyTorch"], unit="ms",
                  extras=["params jaxlab / PyTorch", "jaxlab compile (s) masked / buckets"]).add(
            f"train step, batch {args.batch}", times,
            **{"params jaxlab / PyTorch": f"{n_j} / {n_t}",
               "jaxlab compile (s) masked / buckets": f"{c_j['jaxlab masked']:.1f} / {c_j['jaxlab buckets']:.1f}"})
        res.table("Where the gap goes: one architecture, masked supernet vs its bucket vs the extracted subnet "
                  "vs PyTorch", ["jaxlab masked", "jaxlab bucket", "jaxlab extracted", "PyTorch slicing"],
                  unit="ms").add(
            f"train step, batch {args.batch}", bench_gap(cfg, space, r, args.batch, args.reps))
    res.note(f"medians of {args.reps} alternating repeats; PyTorch threads {threads}")
    return res


if __name__ == "__main__":
    benchmark.run(main)
