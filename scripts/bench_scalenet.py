"""Benchmark of the ScaleNet super-supernet (jaxlab) against per-architecture slicing.

    python scripts/bench_scalenet.py [--config smoke|default|path.py[:variant]] [--num-archs 50] [--resolution R]

1. Supernet training over N sampled architectures at one resolution, compile included:
   masks (one compiled step serves every architecture) vs per-architecture slicing in
   JAX (a standalone network per architecture: one compile per shape).
2. Population evaluation of P = 32 architectures: one vmapped call vs P sequential calls
   of the jitted single-architecture forward (compile reported apart).
3. One training step of the masked JAX supernet vs a PyTorch slicing supernet of the
   same size (OFA/BCNet style: weights sliced per call), same architecture and batch.

Prints a markdown table of medians and ratios and the devices.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import config as config_lib
from jaxlab.nas.population import make_population_eval
from jaxlab.scalenet import configs, sampler, supernet
from jaxlab.scalenet.models import extract_subnet
from jaxlab.scalenet.space import Space


def _time(fn, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_masks_vs_slicing(cfg, space, n, r, batch):
    net, state = supernet.init_state(cfg, space)
    step = supernet.make_step(cfg, net)
    rng = np.random.default_rng(0)
    archs = [sampler.sample_hierarchical(space, rng, side=i % 2)[0] for i in range(n)]
    x = jnp.asarray(np.random.default_rng(1).random((batch, r, r, 3), np.float32))
    y = jnp.asarray(np.random.default_rng(2).integers(0, space.cfg.num_classes, batch), jnp.int32)
    t0 = time.perf_counter()
    for a in archs:
        state, m = step(state, {"x": x, "y": y, "arch": a}, jax.random.key(0))
    jax.block_until_ready(m)
    t_mask = time.perf_counter() - t0

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
    return t_mask, t_slice, n_compiles


def bench_population(cfg, space, net, params, p_size, r, batch):
    rng = np.random.default_rng(3)
    archs = [sampler.sample_hierarchical(space, rng)[0] for _ in range(p_size)]
    pop = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *archs)
    x = jnp.asarray(np.random.default_rng(1).random((batch, r, r, 3), np.float32))
    apply = lambda p, x, a: net.apply({"params": p}, x, a)
    vm = make_population_eval(apply)
    single = jax.jit(apply)
    t = time.perf_counter()
    jax.block_until_ready(vm(params, x, pop))
    c_vm = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(single(params, x, archs[0]))
    c_single = time.perf_counter() - t
    t_vm = _time(lambda: vm(params, x, pop), 3)
    t_seq = _time(lambda: [single(params, x, a) for a in archs], 3)
    return t_vm, t_seq, c_vm, c_single


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
    archs = [sampler.sample_hierarchical(space, rng, side=i % 2)[0] for i in range(reps + 2)]
    x = torch.rand(batch, 3, r, r)
    y = torch.randint(0, space.cfg.num_classes, (batch,))
    ts = []
    for a in archs:
        t = time.perf_counter()
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x, a), y)
        loss.backward()
        opt.step()
        ts.append(time.perf_counter() - t)
    t_torch = statistics.median(ts[2:])

    jnet, state = supernet.init_state(cfg, space)
    step = supernet.make_step(cfg, jnet)
    xj = jnp.asarray(x.permute(0, 2, 3, 1).numpy())
    yj = jnp.asarray(y.numpy(), jnp.int32)
    t = time.perf_counter()
    state, m = step(state, {"x": xj, "y": yj, "arch": archs[0]}, jax.random.key(0))
    jax.block_until_ready(m)
    c_jax = time.perf_counter() - t
    ts = []
    for a in archs[1:]:
        t = time.perf_counter()
        state, m = step(state, {"x": xj, "y": yj, "arch": a}, jax.random.key(0))
        jax.block_until_ready(m)
        ts.append(time.perf_counter() - t)
    n_params = sum(p.numel() for p in net.parameters())
    j_params = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(state.params))
    return statistics.median(ts[1:]), t_torch, c_jax, n_params, j_params, torch.get_num_threads()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="smoke")
    ap.add_argument("--num-archs", type=int, default=50)
    ap.add_argument("--population", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--resolution", type=int, default=0, help="input side (0: the config's largest)")
    args = ap.parse_args()
    cfg = config_lib.resolve(args.config, configs.get_config)
    space = Space(cfg.space)
    r = args.resolution or max(int(x) for g in space.cfg.res_grid for x in g)
    print(f"devices: {jax.devices()}  config: {args.config}  resolution {r}  batch {args.batch}")
    rows = []
    t_mask, t_slice, nc = bench_masks_vs_slicing(cfg, space, args.num_archs, r, args.batch)
    rows.append((f"supernet training, {args.num_archs} archs, compile incl.", f"{t_mask:.2f} s (1 compile)",
                 f"{t_slice:.2f} s ({nc} compiles)", t_slice / t_mask))
    net, state = supernet.init_state(cfg, space)
    t_vm, t_seq, c_vm, c_single = bench_population(cfg, space, net, state.params, args.population, r, args.batch)
    rows.append((f"population eval P={args.population} (compile apart: {c_vm:.1f} s vs {c_single:.1f} s)",
                 f"{t_vm * 1e3:.1f} ms (vmapped)", f"{t_seq * 1e3:.1f} ms (sequential)", t_seq / t_vm))
    t_j, t_t, c_j, n_t, n_j, threads = bench_torch(cfg, space, r, args.batch, args.reps)
    rows.append((f"train step, masked JAX vs PyTorch slicing ({n_j} / {n_t} params; jax compile {c_j:.1f} s; "
                 f"torch threads {threads})", f"{t_j * 1e3:.1f} ms (jaxlab)", f"{t_t * 1e3:.1f} ms (torch)", t_t / t_j))
    print()
    print("| benchmark | jaxlab | peer | peer / jaxlab |")
    print("|---|---|---|---|")
    for name, a, b, ratio in rows:
        print(f"| {name} | {a} | {b} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
