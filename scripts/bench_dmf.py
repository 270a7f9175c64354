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

Medians over `--repeats` runs, the peers of (a), (b) and (d) alternating; compile time
reported apart (first call minus steady state); load average before and after; a 1-thread
and an all-threads column per peer (`--threads both|1|all`, see `jaxlab.core.benchmark`).
`--cpu-devices` (default: the number of usable CPUs) CPU devices are created before JAX starts;
everything except the sharded sweep of (b) runs on the first one. The host allocator is
tuned first (`jaxlab.core.runtime.tune_host_allocator`, as in the `jaxlab` command line).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from jaxlab.core import benchmark

SETTING = benchmark.configure_threads()  # before jax and torch start their thread pools

import jax  # noqa: E402
import numpy as np  # noqa: E402


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
    p.add_argument("--flops-sizes", default="100,200,300,400")
    p.add_argument("--completion-steps", type=int, default=2000)
    p.add_argument("--cpu-devices", type=int, default=len(os.sched_getaffinity(0)),
                   help="CPU devices to create (jax_num_cpu_devices); (b) shards its sweep over all of them")
    benchmark.add_threads_argument(p)
    args = p.parse_args()
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)  # before JAX's first computation
    from jaxlab.core.runtime import tune_host_allocator

    tuned = tune_host_allocator()

    import torch

    torch.set_num_threads(benchmark.peer_threads(SETTING))
    from jaxlab import dmf
    from jaxlab.core.flops import xla_flops

    print(benchmark.device_line())
    print(f"{platform.processor() or platform.machine()}; {jax.device_count()} CPU devices; "
          f"host allocator tuned: {tuned}")
    res = benchmark.Results()
    depth, lr = 3, 3e-3
    with jax.enable_x64(True):
        ta = res.table(f"(a) depth-{depth} GD trajectory, {args.steps} steps, float64, singular values every "
                       f"{args.log_every} steps", ["jaxlab", "PyTorch"], unit="s",
                       extras=["jaxlab compile (s)", "max rel. loss diff"])
        for n in [int(x) for x in args.sizes.split(",")]:
            key = jax.random.PRNGKey(0)
            target = dmf.low_rank_target(key, n, 3)
            fs = dmf.init_factors(jax.random.PRNGKey(1), n, depth, 1e-4)
            run = lambda: dmf.train(fs, target, lr=lr, steps=args.steps,
                                    log_every=args.log_every).loss.block_until_ready()
            first = benchmark.time_call(run)
            log, _ = torch_loop(fs, target, lr, args.steps, args.log_every)
            times = benchmark.alternate({"jaxlab": run, "PyTorch": lambda: torch_loop(fs, target, lr, args.steps,
                                                                                        args.log_every)},
                                        args.repeats, warmup=0)
            tj = benchmark.median(times["jaxlab"])
            jl = np.asarray(dmf.train(fs, target, lr=lr, steps=args.steps, log_every=args.log_every).loss)
            diff = float(np.max(np.abs(jl - np.array(log["loss"])) / np.abs(np.array(log["loss"]))))
            ta.add(f"n = {n}", times, **{"jaxlab compile (s)": f"{first - tj:.2f}",
                                         "max rel. loss diff": f"{diff:.1e}"})

        ndev = jax.device_count()
        n = 20
        target = dmf.low_rank_target(jax.random.PRNGKey(0), n, 3)
        key = jax.random.PRNGKey(2)

        def vm(devices):
            return dmf.sweep(key, target, depth=depth, seeds=args.seeds, init_scales=[1e-4], lrs=[lr],
                             steps=args.sweep_steps, log_every=args.log_every, devices=devices)

        def seq():
            for s in range(args.seeds):
                fs = dmf.init_factors(jax.random.fold_in(key, s), n, depth, 1e-4)
                dmf.train(fs, target, lr=lr, steps=args.sweep_steps, log_every=args.log_every).loss.block_until_ready()

        outs, firsts = {}, {}
        for devices in (1, None):
            t0 = time.perf_counter()
            outs[devices] = vm(devices).to_numpy()
            firsts[devices] = time.perf_counter() - t0
        seq()  # compile
        times = benchmark.alternate({"one vmapped sweep, 1 device": lambda: vm(1).loss.block_until_ready(),
                                     "one vmapped sweep, sharded": lambda: vm(None).loss.block_until_ready(),
                                     "sequential train calls": seq}, max(1, args.repeats // 2), warmup=0)
        same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(outs[1]), jax.tree.leaves(outs[None])))
        meds = [benchmark.median(v) for v in times.values()]
        compiles = f"{firsts[1] - meds[0]:.2f} / {firsts[None] - meds[1]:.2f}"
        res.table(f"(b) {args.seeds} seeds, n=20, depth {depth}, {args.sweep_steps} steps, "
                  f"log every {args.log_every}", list(times), unit="s",
                  extras=["sharded over", "compile (s) 1 device / sharded", "sharded == 1 device"]).add(
            "sweep", times, **{"sharded over": f"{ndev} CPU devices",
                               "compile (s) 1 device / sharded": compiles,
                               "sharded == 1 device": str(same)})

        res.note(f"\n### (c) achieved FLOP/s of the scanned depth-{depth} GD step (float64)\n")
        m = 1024
        a = jax.random.normal(jax.random.PRNGKey(0), (m, m))
        mm = jax.jit(lambda x: x @ x)
        mm(a).block_until_ready()
        peak = 2 * m**3 / _median_time(lambda: mm(a).block_until_ready(), 5)
        res.note(f"measured float64 matmul ({m}x{m}): {peak / 1e9:.1f} GFLOP/s\n")
        res.note("| n | XLA FLOPs / step | step time (ms) | GFLOP/s | fraction of matmul |")
        res.note("|---|---|---|---|---|")
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
            res.note(f"| {n} | {flops:.3g} | {t * 1e3:.3f} | {flops / t / 1e9:.1f} | {flops / t / peak:.2f} |")

        steps = args.completion_steps
        from jaxlab.dmf import data as dmf_data

        target = dmf.arora_target(jax.random.PRNGKey(1), 100, 5)
        mask = dmf_data.random_mask(jax.random.PRNGKey(2), target.shape, 2000)
        fs = dmf.init_factors(jax.random.PRNGKey(3), 100, 3, 1e-3)
        run = lambda: dmf.train(fs, target, mask=mask, lr=1e-2, steps=steps, optimizer="group_rmsprop",
                                log_every=100).loss.block_until_ready()
        first = benchmark.time_call(run)
        tl = torch_completion(fs, target, mask, 1e-2, steps, 100)
        times = benchmark.alternate({"jaxlab": run, "PyTorch": lambda: torch_completion(fs, target, mask, 1e-2, steps,
                                                                                         100)},
                                    args.repeats, warmup=0)
        tj = benchmark.median(times["jaxlab"])
        jl = np.asarray(dmf.train(fs, target, mask=mask, lr=1e-2, steps=steps, optimizer="group_rmsprop",
                                  log_every=100).loss)
        diff = float(np.max(np.abs(jl - np.array(tl)) / np.abs(np.array(tl))))
        res.table(f"(d) Arora et al.'s completion (100x100, rank 5, 2000 entries, depth 3, GroupRMSprop lr 1e-2), "
                  f"{steps} steps", ["jaxlab", "PyTorch"], unit="s",
                  extras=["jaxlab compile (s)", "max rel. loss diff", "final loss"]).add(
            "completion", times, **{"jaxlab compile (s)": f"{first - tj:.2f}", "max rel. loss diff": f"{diff:.1e}",
                                    "final loss": f"{jl[-1]:.3g}"})
    return res


if __name__ == "__main__":
    from jaxlab.dmf import single_threaded_lapack

    with single_threaded_lapack():  # jax's CPU SVD via SciPy's OpenBLAS; see jaxlab/dmf/threads.py
        benchmark.run(main)
