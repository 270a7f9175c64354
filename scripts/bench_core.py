"""Step time of the reference classifier: jaxlab against an equivalent PyTorch loop.

Both train the same CNN (conv3x3 + GroupNorm + ReLU blocks, 2x2 average pooling between
stages, global average pooling, linear head) with AdamW on the same digits batches of the
same size, in one process. Prints a markdown table of steady-state medians, the ratio,
and jaxlab's compile time apart.

    python scripts/bench_core.py [--steps 200] [--batch-size 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np


def bench_jax(x, y, batch_size, steps, stages, blocks):
    import jax
    import jax.numpy as jnp
    import optax

    from jaxlab.core import train
    from jaxlab.nn import SmallCNN

    model = SmallCNN(num_classes=10, stages=stages, blocks_per_stage=blocks)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    state = train.TrainState.create(params=params, tx=optax.adamw(1e-3, weight_decay=1e-4))

    def loss_fn(p, extra, batch, key):
        logits = model.apply({"params": p}, batch[0])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean(), ({}, None)

    step = train.make_train_step(loss_fn)
    key = jax.random.key(0)
    batches = [(x[i * batch_size % len(x):][:batch_size], y[i * batch_size % len(x):][:batch_size])
               for i in range(steps)]
    batches = [b for b in batches if len(b[0]) == batch_size]
    t0 = time.perf_counter()
    state, m = step(state, batches[0], key)
    jax.block_until_ready(m["loss"])
    compile_s = time.perf_counter() - t0
    times = []
    for b in batches[1:]:
        t0 = time.perf_counter()
        state, m = step(state, b, key)
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t0)
    return statistics.median(times), compile_s, float(m["loss"]), jax.devices()[0].device_kind


def bench_torch(x, y, batch_size, steps, stages, blocks):
    import torch
    from torch import nn

    layers, c_in = [], 1
    for i, width in enumerate(stages):
        if i > 0:
            layers.append(nn.AvgPool2d(2))
        for _ in range(blocks):
            layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False),
                       nn.GroupNorm(min(8, width), width), nn.ReLU()]
            c_in = width
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y.astype(np.int64))
    times, loss = [], None
    for i in range(steps):
        lo = i * batch_size % len(x)
        xb, yb = xt[lo:lo + batch_size], yt[lo:lo + batch_size]
        if len(xb) != batch_size:
            continue
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(xb), yb)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]), loss.item()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = p.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from jaxlab.data import load_digits

    x, y = load_digits("train")
    stages, blocks = (32, 64), 2  # the classifier's default config
    jax_s, compile_s, jax_loss, device = bench_jax(x, y, args.batch_size, args.steps, stages, blocks)
    torch_s, torch_loss = bench_torch(x, y, args.batch_size, args.steps, stages, blocks)
    print(f"device: {device} ({platform.processor() or platform.machine()}), torch threads: "
          f"{torch.get_num_threads()}, batch {args.batch_size}, {args.steps} steps")
    print()
    print("| implementation | median step (ms) | compile (s) | final loss |")
    print("|---|---|---|---|")
    print(f"| jaxlab (jit, donated state) | {jax_s * 1e3:.2f} | {compile_s:.2f} | {jax_loss:.3f} |")
    print(f"| PyTorch eager | {torch_s * 1e3:.2f} | - | {torch_loss:.3f} |")
    print()
    print(f"speed-up (PyTorch / jaxlab): {torch_s / jax_s:.2f}x")


if __name__ == "__main__":
    main()
