"""Where convolution time goes on XLA:CPU, and what `jaxlab.nn.conv` changes.

Two tables:

1. Per layer: value and both gradients of `sum(tanh(conv(x, w)))`, XLA's convolution
   (`lax.conv_general_dilated`) against patches times the kernel
   (`jaxlab.nn.conv.conv_general_dilated` with `JAXLAB_CONV=patches`), alternating calls,
   medians; the column `auto` says which one `jaxlab.nn.conv.prefers_patches` picks.
2. Per operation (`jaxlab.core.profiling.op_times`) of MH-UI's PGD-20 attack on its
   default multi-exit CNN, with `JAXLAB_CONV=xla` and with the default `auto`.
3. Per layer against PyTorch (`--torch`, needs the `bench` extra): the same value and
   both gradients with jaxlab's choice (`JAXLAB_CONV=auto`) and with `torch.nn.functional.
   conv2d` + `backward()` (NCHW, oneDNN), in turns of `--block` calls, medians: whether
   the convolution kernels themselves, before any fusion or dispatch, are ahead or
   behind. Turns of one call understate both peers on all cores (each one's worker
   threads still spin when the other starts), XLA's most.

    python scripts/profile_conv.py [--batch 64] [--repeats 15] [--pgd-batch 256] [--threads 1|all|both]
    python scripts/profile_conv.py --torch [--block 10] [--threads both]
"""

from __future__ import annotations

import argparse
import os
import sys

from jaxlab.core import benchmark

SETTING = benchmark.configure_threads()  # before jax and torch start their thread pools

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402

from jaxlab.core import profiling, runtime  # noqa: E402
from jaxlab.nn import conv  # noqa: E402

DN = ("NHWC", "HWIO", "NHWC")
LAYERS = [  # (side, c_in, c_out, kernel, stride, groups)
    (8, 1, 32, 3, 1, 1), (8, 32, 32, 3, 1, 1), (4, 64, 64, 3, 1, 1), (2, 128, 128, 3, 1, 1),
    (4, 64, 128, 3, 2, 1), (16, 16, 32, 3, 2, 1), (32, 3, 16, 3, 1, 1),
    (16, 32, 32, 3, 1, 32), (8, 96, 96, 5, 1, 96), (16, 32, 32, 3, 2, 32),
]


def layer_table(batch: int, repeats: int) -> list[str]:
    opts = runtime.cpu_compiler_options()
    rows = ["| input | kernel | stride | groups | XLA (ms) | patches (ms) | XLA / patches | auto picks |",
            "|---|---|---|---|---|---|---|---|"]
    for side, c, f, k, s, g in LAYERS:
        rng = np.random.default_rng(side * 1000 + c)
        x = jnp.asarray(rng.normal(size=(batch, side, side, c)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(k, k, c // g, f)) * 0.1, jnp.float32)

        def grads(fn):
            def loss(x, w):
                return jnp.sum(jnp.tanh(fn(x, w, (s, s), "SAME", dimension_numbers=DN, feature_group_count=g)))
            return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), compiler_options=opts)

        os.environ["JAXLAB_CONV"] = "patches"
        fx, fp = grads(lax.conv_general_dilated), grads(conv.conv_general_dilated)
        jax.block_until_ready((fx(x, w), fp(x, w)))
        times = benchmark.alternate({"xla": lambda: jax.block_until_ready(fx(x, w)),
                                     "patches": lambda: jax.block_until_ready(fp(x, w))}, repeats, warmup=0)
        os.environ["JAXLAB_CONV"] = "auto"
        out = -(-side // s)
        pick = "patches" if conv.prefers_patches(c // g, (k, k), (out, out), g > 1) else "XLA"
        mx, mp = benchmark.median(times["xla"]), benchmark.median(times["patches"])
        rows.append(f"| {batch}x{side}x{side}x{c} | {k}x{k}x{c // g}x{f} | {s} | {g} | {mx * 1e3:.2f} | "
                    f"{mp * 1e3:.2f} | {mx / mp:.2f} | {pick} |")
    return rows


def torch_table(table, batch: int, repeats: int, block: int = 10) -> None:
    """Per layer: jaxlab's convolution (auto choice) against PyTorch's, value and both
    gradients, one row each in `table` (peers jaxlab, PyTorch), and their sum."""
    import torch
    import torch.nn.functional as F

    opts = runtime.cpu_compiler_options()
    os.environ["JAXLAB_CONV"] = "auto"
    total = {"jaxlab": 0.0, "PyTorch": 0.0}
    for side, c, f, k, s, g in LAYERS:
        rng = np.random.default_rng(side * 1000 + c)
        xn = rng.normal(size=(batch, side, side, c)).astype(np.float32)
        wn = (rng.normal(size=(k, k, c // g, f)) * 0.1).astype(np.float32)
        x, w = jnp.asarray(xn), jnp.asarray(wn)

        def loss(x, w, s=s, g=g):
            return jnp.sum(jnp.tanh(conv.conv_general_dilated(x, w, (s, s), "SAME", dimension_numbers=DN,
                                                              feature_group_count=g)))

        fj = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), compiler_options=opts)
        xt = torch.from_numpy(xn.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
        wt = torch.from_numpy(wn.transpose(3, 2, 0, 1).copy()).requires_grad_(True)

        def ft(xt=xt, wt=wt, s=s, k=k, g=g):
            xt.grad = wt.grad = None
            out = torch.tanh(F.conv2d(xt, wt, stride=s, padding=k // 2, groups=g)).sum()
            out.backward()
            return out

        jax.block_until_ready(fj(x, w))
        ft()
        times = benchmark.alternate({"jaxlab": lambda: jax.block_until_ready(fj(x, w)), "PyTorch": ft}, repeats,
                                    warmup=1, block=block)
        for peer in total:
            total[peer] += benchmark.median(times[peer])
        out = -(-side // s)
        pick = "patches" if conv.prefers_patches(c // g, (k, k), (out, out), g > 1) else "XLA"
        table.add(f"{batch}x{side}x{side}x{c}, kernel {k}x{k}x{c // g}x{f}, stride {s}, groups {g}", times,
                  **{"jaxlab runs": pick})
    table.add("sum of the layers", total)


def pgd_profiles(batch: int) -> list[str]:
    from jaxlab.mhui import attacks, configs, models
    from jaxlab.nn.cnn import SmallCNN

    cfg = configs.get_config("default").model
    model = models.MultiExit(SmallCNN(stages=cfg.stages, blocks_per_stage=cfg.blocks_per_stage, norm=cfg.norm))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (batch, 8, 8, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
    params, extra = models.init_model(model, jax.random.key(0), x[:2])
    out = []
    for mode in ("xla", "auto"):
        os.environ["JAXLAB_CONV"] = mode

        def loss(xx, yy):
            logits = models.forward(model, params, extra, xx)[0][-1]
            return optax.softmax_cross_entropy_with_integer_labels(logits, yy)

        fn = jax.jit(lambda xx, yy, key: attacks.pgd(loss, xx, yy, key, eps=0.1, step_size=0.0125, num_steps=20),
                     compiler_options=runtime.cpu_compiler_options())
        times = profiling.op_times(fn, x, y, jax.random.key(1), calls=5)
        out += [f"### PGD-20, batch {batch}, JAXLAB_CONV={mode}", "", profiling.format_table(times, top=8), ""]
    os.environ["JAXLAB_CONV"] = "auto"
    return out


def step_profile(batch: int) -> list[str]:
    """Per operation, the classifier's training step as `scripts/bench_core.py` times it
    (the engine's `make_train_step`, AdamW, SmallCNN stages 32-64 on 8x8 digits)."""
    from jaxlab.core import train
    from jaxlab.nn import SmallCNN

    model = SmallCNN(num_classes=10, stages=(32, 64), blocks_per_stage=2)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (batch, 8, 8, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
    params = model.init(jax.random.key(0), x[:1])["params"]
    state = train.TrainState.create(params=params, tx=optax.adamw(1e-3, weight_decay=1e-4))

    def loss_fn(p, extra, b, key):
        logits = model.apply({"params": p}, b[0])
        return optax.softmax_cross_entropy_with_integer_labels(logits, b[1]).mean(), ({}, None)

    step = train.make_train_step(loss_fn)
    times = profiling.op_times(step, state, (x, y), jax.random.key(0), calls=30, feed_back=True)
    return [f"### Classifier train step (bench_core), batch {batch}", "", profiling.format_table(times, top=10), ""]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--pgd-batch", type=int, default=256)
    p.add_argument("--torch", action="store_true",
                   help="only the per-layer table against PyTorch (a 1-thread and an all-threads column)")
    p.add_argument("--block", type=int, default=10,
                   help="with --torch: consecutive calls per peer's turn (1 alternates call by call)")
    benchmark.add_threads_argument(p)
    args = p.parse_args()
    runtime.tune_host_allocator()
    if args.torch:
        import torch

        with benchmark.torch_threads(benchmark.peer_threads(SETTING)):
            print(benchmark.device_line(), f"(torch threads {torch.get_num_threads()})")
            res = benchmark.Results()
            table = res.table(f"Convolution layers, value and both gradients, batch {args.batch}, "
                              f"turns of {args.block} calls",
                              ["jaxlab", "PyTorch"], extras=["jaxlab runs"])
            torch_table(table, args.batch, args.repeats, args.block)
        return res
    with benchmark.load_watch():
        print(benchmark.device_line(), "\n")
        print("\n".join(layer_table(args.batch, args.repeats)), "\n")
        print("\n".join(step_profile(args.batch)))
        print("\n".join(pgd_profiles(args.pgd_batch)))
    return None


if __name__ == "__main__":
    if "--torch" in sys.argv:
        benchmark.run(main)
    else:
        main()
