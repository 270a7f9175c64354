"""Step time of the reference classifier: jaxlab against an equivalent PyTorch loop.

Both train the same CNN (conv3x3 + GroupNorm + ReLU blocks, 2x2 average pooling between
stages, global average pooling, linear head) with AdamW on the same digits batches of the
same size, in one process, taking turns step by step. jaxlab's step is the engine's
`train.make_train_step`; its compile time is reported apart. Prints the load average
before and after, and a markdown table of median step times with a 1-thread and an
all-threads column per peer (see `jaxlab.core.benchmark` for what each means).

    python scripts/bench_core.py [--steps 200] [--batch-size 64] [--block 1] [--threads both|1|all]
"""

from __future__ import annotations

import argparse

from jaxlab.core import benchmark

SETTING = benchmark.configure_threads()  # before jax and torch start their thread pools

import numpy as np  # noqa: E402


def jax_peer(x, y, batch_size, stages, blocks):
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
    box = {"state": state, "i": 0, "loss": None}
    n = len(x) // batch_size

    def one():
        i = box["i"] % n
        b = (x[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size])
        box["state"], m = step(box["state"], b, key)
        box["loss"] = float(jax.block_until_ready(m["loss"]))
        box["i"] += 1

    return one, box


def torch_peer(x, y, batch_size, stages, blocks):
    import torch
    from torch import nn

    torch.manual_seed(0)
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
    box = {"i": 0, "loss": None}
    n = len(x) // batch_size

    def one():
        i = box["i"] % n
        xb, yb = xt[i * batch_size:(i + 1) * batch_size], yt[i * batch_size:(i + 1) * batch_size]
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(xb), yb)
        loss.backward()
        opt.step()
        box["loss"] = loss.item()
        box["i"] += 1

    return one, box


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--block", type=int, default=1,
                   help="consecutive steps per turn of each peer (1: alternate step by step)")
    benchmark.add_threads_argument(p)
    args = p.parse_args()
    import time

    import torch

    from jaxlab.data import load_digits

    x, y = load_digits("train")
    if args.batch_size > len(x) or args.steps < 2:
        raise SystemExit(f"--batch-size must be <= {len(x)} and --steps >= 2")
    stages, blocks = (32, 64), 2  # the classifier's default config
    jax_step, jax_box = jax_peer(x, y, args.batch_size, stages, blocks)
    t0 = time.perf_counter()
    jax_step()  # compiles
    compile_s = time.perf_counter() - t0
    torch_step, torch_box = torch_peer(x, y, args.batch_size, stages, blocks)
    with benchmark.torch_threads(benchmark.peer_threads(SETTING)):
        print(benchmark.device_line())
        times = benchmark.alternate({"jaxlab": jax_step, "PyTorch": torch_step}, repeats=args.steps - 1,
                                    block=args.block)
        print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, {args.steps} steps per peer "
              f"in turns of {args.block} (first step of each is a warm-up, jaxlab's includes compilation)")
    res = benchmark.Results()
    res.table("Classifier training step (SmallCNN 32-64, AdamW, digits)", ["jaxlab", "PyTorch"], unit="ms",
              extras=["jaxlab compile (s)", "final loss jaxlab / PyTorch"]).add(
        f"train step, batch {args.batch_size}", times, **{
            "jaxlab compile (s)": f"{compile_s:.2f}",
            "final loss jaxlab / PyTorch": f"{jax_box['loss']:.3f} / {torch_box['loss']:.3f}"})
    return res


if __name__ == "__main__":
    benchmark.run(main)
