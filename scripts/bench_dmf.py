"""Benchmark jaxlab.dmf against a PyTorch eager loop written as Arora et al.'s code is.

    python scripts/bench_dmf.py                 # the issue's sizes (10k steps, 64 seeds)
    python scripts/bench_dmf.py --steps 2000    # quicker

(a) a depth-3 GD trajectory of `--steps` steps at n = 20 and n = 100, float64, both
    logging loss, gradient norm and the singular values of W every `--log-every` steps:
    jaxlab `train` (one jitted lax.scan) vs a PyTorch Python loop (autograd +
    torch.optim.SGD, `.item()`/`svdvals` at log steps);
(b) 64 seeds: 64 sequential `train` calls (one device) vs one vmapped `sweep` on one
    device and the same sweep with its run axis sharded over all `--cpu-devices` CPU
    devices (n = 20, depth 3);
(c) achieved FLOP/s of the scanned GD step at n = 100..400 (XLA cost analysis of one
    step x steps / time) as a fraction of measured float64 matmul FLOP/s (jnp.dot, n = 1024);
(d) peer check of the completion protocol: a port of Arora et al.'s loop (MSE on the
    observed entries, GroupRMSprop) against `train(..., mask=, optimizer="group_rmsprop")`
    from the same factors: loss curves must agree.

Medians over `--repeats` runs; compile time reported apart (first call minus steady state).
`--cpu-devices` (default: the number of CPUs) CPU devices are created before JAX starts;
everything except the sharded sweep of (b) runs on the first one. The host allocator is
tuned first (`jaxlab.core.runtime.tune_host_allocator`, as in the `jaxlab` command line).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np


def _median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def torch_loop(factors, target, lr, steps, log_every):
    """Arora et al.-style eager loop: Python for-loop, autograd, optimizer.step()."""
    import torch

    ws = [torch.tensor(np.asarray(f), dtype=torch.float64, requires_grad=True) for f in factors]
    tgt = torch.tensor(np.asarray(target), dtype=torch.float64)
    opt = torch.optim.SGD(ws, lr=lr)
    log = {"loss": [], "grad_norm": [], "sv": []}
    for t in range(steps):
        e2e = ws[0]
        for w in ws[1:]:
            e2e = w @ e2e
        loss = 0.5 * (e2e - tgt).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        if t % log_every == 0:
            with torch.no_grad():
                log["loss"].append(loss.item())
                log["grad_norm"].append(torch.sqrt(sum((w.grad ** 2).sum() for w in ws)).item())
                log["sv"].append(torch.linalg.svdvals(e2e.detach()).numpy())
        opt.step()
    return log, [w.detach().numpy() for w in ws]


def torch_completion(factors, target, mask, lr, steps, log_every, alpha=0.99, eps=1e-4):
    """Arora et al.-style completion loop: MSE over observed entries, GroupRMSprop
    (one bias-corrected second moment for the whole parameter group), Python loop."""
    import torch

    ws = [torch.tensor(np.asarray(f), dtype=torch.float64, requires_grad=True) for f in factors]
    tgt = torch.tensor(np.asarray(target), dtype=torch.float64)
    us, vs = np.nonzero(np.asarray(mask))
    us, vs = torch.tensor(us), torch.tensor(vs)
    ys = tgt[us, vs]
    square_avg, losses = 0.0, []
    for t in range(steps):
        e2e = ws[0]
        for w in ws[1:]:
            e2e = w @ e2e
        loss = (e2e[us, vs] - ys).pow(2).mean()
        for w in ws:
            w.grad = None
        loss.backward()
        if t % log_every == 0:
            losses.append(loss.item())
        with torch.no_grad():
            square_avg = alpha * square_avg + (1 - alpha) * sum((w.grad ** 2).sum() for w in ws)
            avg = (square_avg / (1 - alpha ** (t + 1))).sqrt() + eps
            for w in ws:
                w.add_(w.grad, alpha=-lr / avg.item())
    return losses


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--seeds", type=int, default=64)
    p.add_argument("--sweep-steps", type=int, default=10000)
    p.add_argument("--flops-steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", default="20,100")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch intra-op threads (1 is fastest for these small matmuls on a shared CPU; "
                        "0: torch's default)")
    p.add_argument("--flops-sizes", default="100,200,300,400")
    p.add_argument("--completion-steps", type=int, default=2000)
    p.add_argument("--cpu-devices", type=int, default=os.cpu_count() or 1,
                   help="CPU devices to create (jax_num_cpu_devices); (b) shards its sweep over all of them")
    args = p.parse_args()
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)  # before JAX's first computation
    from jaxlab.core.runtime import tune_host_allocator

    tuned = tune_host_allocator()

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    from jaxlab import dmf
    from jaxlab.core.flops import xla_flops

    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}; jax {jax.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); {jax.device_count()} CPU devices; host allocator tuned: {tuned}; "
          f"load average {os.getloadavg()[0]:.1f}")
    depth, lr = 3, 3e-3
    with jax.enable_x64(True):
        print(f"\n(a) depth-{depth} GD trajectory, {args.steps} steps, float64, "
              f"singular values every {args.log_every} steps\n")
        print("| n | jaxlab steady (s) | jaxlab compile (s) | torch eager loop (s) | speed-up | max rel. loss diff |")
        print("|---|---|---|---|---|---|")
        for n in [int(x) for x in args.sizes.split(",")]:
            key = jax.random.PRNGKey(0)
            target = dmf.low_rank_target(key, n, 3)
            fs = dmf.init_factors(jax.random.PRNGKey(1), n, depth, 1e-4)
            run = lambda: dmf.train(fs, target, lr=lr, steps=args.steps,
                                    log_every=args.log_every).loss.block_until_ready()
            t0 = time.perf_counter()
            run()
            first = time.perf_counter() - t0
            tj = _median_time(run, args.repeats)
            tt = _median_time(lambda: torch_loop(fs, target, lr, args.steps, args.log_every), args.repeats)
            log, _ = torch_loop(fs, target, lr, args.steps, args.log_every)
            jl = np.asarray(dmf.train(fs, target, lr=lr, steps=args.steps, log_every=args.log_every).loss)
            diff = float(np.max(np.abs(jl - np.array(log["loss"])) / np.abs(np.array(log["loss"]))))
            print(f"| {n} | {tj:.3f} | {first - tj:.2f} | {tt:.3f} | {tt / tj:.1f}x | {diff:.1e} |", flush=True)

        ndev = jax.device_count()
        print(f"\n(b) {args.seeds} seeds, n=20, depth {depth}, {args.sweep_steps} steps, log every {args.log_every}; "
              f"sharded over {ndev} CPU devices\n")
        n = 20
        target = dmf.low_rank_target(jax.random.PRNGKey(0), n, 3)
        key = jax.random.PRNGKey(2)

        def vm(devices):
            return dmf.sweep(key, target, depth=depth, seeds=args.seeds, init_scales=[1e-4], lrs=[lr],
                             steps=args.sweep_steps, log_every=args.log_every, devices=devices)

        sweeps = {}
        for devices in (1, None):
            t0 = time.perf_counter()
            out = vm(devices).to_numpy()
            first = time.perf_counter() - t0
            sweeps[devices] = (_median_time(lambda: vm(devices).loss.block_until_ready(), args.repeats), first, out)

        def seq():
            for s in range(args.seeds):
                fs = dmf.init_factors(jax.random.fold_in(key, s), n, depth, 1e-4)
                dmf.train(fs, target, lr=lr, steps=args.sweep_steps, log_every=args.log_every).loss.block_until_ready()

        seq()  # compile
        ts = _median_time(seq, max(1, args.repeats // 2))
        same = all(np.array_equal(a, b)
                   for a, b in zip(jax.tree.leaves(sweeps[1][2]), jax.tree.leaves(sweeps[None][2])))
        print("| mode | devices | time (s) | speed-up |\n|---|---|---|---|")
        print(f"| {args.seeds} sequential train calls | 1 | {ts:.2f} | 1.0x |")
        for devices, label in ((1, "one vmapped sweep"), (None, "one vmapped sweep, sharded")):
            tv, first, _ = sweeps[devices]
            print(f"| {label} (compile {first - tv:.2f} s apart) | {1 if devices else ndev} | {tv:.2f} "
                  f"| {ts / tv:.1f}x |")
        print(f"\nsharded sweep == one-device sweep (every array, exactly): {same}", flush=True)

        print(f"\n(c) achieved FLOP/s of the scanned depth-{depth} GD step (float64)\n")
        m = 1024
        a = jax.random.normal(jax.random.PRNGKey(0), (m, m))
        mm = jax.jit(lambda x: x @ x)
        mm(a).block_until_ready()
        peak = 2 * m**3 / _median_time(lambda: mm(a).block_until_ready(), 5)
        print(f"measured float64 matmul ({m}x{m}): {peak / 1e9:.1f} GFLOP/s\n")
        print("| n | XLA FLOPs / step | step time (ms) | GFLOP/s | fraction of matmul |")
        print("|---|---|---|---|---|")
        for n in [int(x) for x in args.flops_sizes.split(",")]:
            target = dmf.low_rank_target(jax.random.PRNGKey(0), n, 3)
            fs = dmf.init_factors(jax.random.PRNGKey(1), n, depth, 1e-4)

            def one_step(fs):
                g = jax.grad(dmf.loss_fn)(fs, target)
                return [f - lr * x for f, x in zip(fs, g)]

            flops = xla_flops(one_step, fs)
            steps = args.flops_steps
            run = lambda: dmf.train(fs, target, lr=lr, steps=steps, log_every=steps).loss.block_until_ready()
            run()
            t = _median_time(run, args.repeats) / steps
            print(f"| {n} | {flops:.3g} | {t * 1e3:.3f} | {flops / t / 1e9:.1f} | {flops / t / peak:.2f} |", flush=True)

        steps = args.completion_steps
        print(f"\n(d) Arora et al.'s completion (100x100, rank 5, 2000 entries, depth 3, GroupRMSprop lr 1e-2), "
              f"{steps} steps\n")
        from jaxlab.dmf import data as dmf_data

        target = dmf.arora_target(jax.random.PRNGKey(1), 100, 5)
        mask = dmf_data.random_mask(jax.random.PRNGKey(2), target.shape, 2000)
        fs = dmf.init_factors(jax.random.PRNGKey(3), 100, 3, 1e-3)
        run = lambda: dmf.train(fs, target, mask=mask, lr=1e-2, steps=steps, optimizer="group_rmsprop",
                                log_every=100).loss.block_until_ready()
        t0 = time.perf_counter()
        run()
        first = time.perf_counter() - t0
        tj = _median_time(run, args.repeats)
        t0 = time.perf_counter()
        tl = torch_completion(fs, target, mask, 1e-2, steps, 100)
        tt = time.perf_counter() - t0
        jl = np.asarray(dmf.train(fs, target, mask=mask, lr=1e-2, steps=steps, optimizer="group_rmsprop",
                                  log_every=100).loss)
        diff = float(np.max(np.abs(jl - np.array(tl)) / np.abs(np.array(tl))))
        print("| jaxlab (s) | compile (s) | torch port (s) | speed-up | max rel. loss diff | final loss |\n"
              "|---|---|---|---|---|---|")
        print(f"| {tj:.2f} | {first - tj:.2f} | {tt:.2f} | {tt / tj:.1f}x | {diff:.1e} | {jl[-1]:.3g} |", flush=True)


if __name__ == "__main__":
    from jaxlab.dmf import single_threaded_lapack

    with single_threaded_lapack():  # jax's CPU SVD via SciPy's OpenBLAS; see jaxlab/dmf/threads.py
        main()
