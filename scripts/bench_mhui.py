"""PGD-20 throughput: jaxlab.mhui (JAX, jitted) vs the same attack in PyTorch, same network.

The network is MH-UI's multi-exit digits CNN (`jaxlab.mhui.models.MultiExit` around
`jaxlab.nn.SmallCNN`, the `default` config: stages 32-64-128, GroupNorm, 8x8x1 inputs); the attack is L-inf PGD
with a random start on the final head's cross-entropy. The PyTorch peer is written in
the usual PyTorch style (nn.Module, autograd in a Python loop) and gets the *same*
weights (copied from the Flax parameters) and the *same* random start, so both produce
the same adversarial images (checked below).

    python scripts/bench_mhui.py [--batch 256] [--steps 20] [--repeats 5] [--threads both|1|all]

jaxlab's side is the library's `jaxlab.mhui.attacks.pgd` (jitted around the model's
loss); PyTorch starts from the same random start (the library's own, read back with
`num_steps=0`). Prints the device, the load average before and after, the compile time
of the jaxlab attack apart, and a markdown table of median seconds per batch with a
1-thread and an all-threads column per peer (see `jaxlab.core.benchmark`).
"""

from __future__ import annotations

import argparse
import time

from jaxlab.core import benchmark

SETTING = benchmark.configure_threads()  # before jax and torch start their thread pools

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional  # noqa: E402

from jaxlab.mhui import attacks, configs, models  # noqa: E402
from jaxlab.nn.cnn import SmallCNN  # noqa: E402


class TorchSmallCNN(torch.nn.Module):
    """PyTorch twin of `jaxlab.nn.SmallCNN` (GroupNorm ConvBlocks, 2x2 avg-pool, GAP + linear)."""

    def __init__(self, stages, blocks_per_stage, groups=8, num_classes=10, in_ch=1):
        super().__init__()
        self.blocks = torch.nn.ModuleList()
        self.stage_of = []
        c = in_ch
        for i, w in enumerate(stages):
            for _ in range(blocks_per_stage):
                g = min(groups, w)
                while w % g:
                    g -= 1
                self.blocks.append(torch.nn.ModuleDict({
                    "conv": torch.nn.Conv2d(c, w, 3, padding=1, bias=False),
                    "norm": torch.nn.GroupNorm(g, w, eps=1e-6)}))
                self.stage_of.append(i)
                c = w
        self.fc = torch.nn.Linear(c, num_classes)

    def forward(self, x):  # x: [B, C, H, W]
        prev = 0
        for blk, stage in zip(self.blocks, self.stage_of):
            if stage != prev:
                x = functional.avg_pool2d(x, 2)
                prev = stage
            x = functional.relu(blk["norm"](blk["conv"](x)))
        return self.fc(x.mean(dim=(2, 3)))


def copy_weights(tnet: TorchSmallCNN, params) -> None:
    """Flax backbone params -> the PyTorch twin (conv HWIO -> OIHW, dense IO -> OI)."""
    bb = params["backbone"]
    with torch.no_grad():
        for i, blk in enumerate(tnet.blocks):
            p = bb[f"ConvBlock_{i}"]
            blk["conv"].weight.copy_(torch.from_numpy(np.asarray(p["Conv_0"]["kernel"]).transpose(3, 2, 0, 1).copy()))
            blk["norm"].weight.copy_(torch.from_numpy(np.array(p["GroupNorm_0"]["scale"])))
            blk["norm"].bias.copy_(torch.from_numpy(np.array(p["GroupNorm_0"]["bias"])))
        tnet.fc.weight.copy_(torch.from_numpy(np.asarray(bb["Dense_0"]["kernel"]).T.copy()))
        tnet.fc.bias.copy_(torch.from_numpy(np.array(bb["Dense_0"]["bias"])))


def torch_pgd(net, x, y, delta0, eps, step, steps):
    """L-inf PGD in PyTorch style, starting from x + delta0."""
    xa = (x + delta0).clamp(0, 1).detach()
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = functional.cross_entropy(net(xa), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, xa)
        with torch.no_grad():
            xa = xa + step * g.sign()
            xa = (x + (xa - x).clamp(-eps, eps)).clamp(0, 1)
    return xa.detach()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=5)
    benchmark.add_threads_argument(ap)
    args = ap.parse_args()
    cfg = configs.get_config("default").model
    model = models.MultiExit(SmallCNN(stages=cfg.stages, blocks_per_stage=cfg.blocks_per_stage, norm=cfg.norm,
                                      dropout_rate=0.0))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (args.batch, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, args.batch).astype(np.int32)
    params, extra = jax.jit(lambda k: models.init_model(model, k, jnp.asarray(x[:2])))(jax.random.key(0))
    step = 2.5 * args.eps / args.steps

    def loss(p, xx, yy):
        return optax.softmax_cross_entropy_with_integer_labels(models.forward(model, p, extra, xx)[0][-1], yy)

    @jax.jit
    def jax_pgd(p, x0, yy, key):
        return attacks.pgd(lambda a, b: loss(p, a, b), x0, yy, key, eps=args.eps, step_size=step,
                           num_steps=args.steps)

    xj, yj, key = jnp.asarray(x), jnp.asarray(y), jax.random.key(1)
    t0 = time.perf_counter()
    jax_pgd.lower(params, xj, yj, key).compile()
    compile_s = time.perf_counter() - t0
    # the library's random start (PGD with no steps returns it), handed to the PyTorch run
    start = np.asarray(attacks.pgd(lambda a, b: loss(params, a, b), xj, yj, key, eps=args.eps, step_size=step,
                                   num_steps=0))
    delta0 = start - x

    tnet = TorchSmallCNN(cfg.stages, cfg.blocks_per_stage).eval()
    copy_weights(tnet, params)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    yt = torch.from_numpy(y).long()
    dt = torch.from_numpy(delta0).permute(0, 3, 1, 2).contiguous()

    with benchmark.torch_threads(benchmark.peer_threads(SETTING)):
        # same network, same attack
        zj = np.asarray(jax.jit(lambda p, xx: models.forward(model, p, extra, xx)[0][-1])(params, xj))
        with torch.no_grad():
            zt = tnet(xt).numpy()
        adv_j = np.asarray(jax_pgd(params, xj, yj, key))
        adv_t = torch_pgd(tnet, xt, yt, dt, args.eps, step, args.steps).permute(0, 2, 3, 1).numpy()
        logit_err = float(np.abs(zj - zt).max())
        same = float(np.mean(np.abs(adv_j - adv_t) < 1e-4))
        print(benchmark.device_line())
        times = benchmark.alternate({
            "jaxlab": lambda: jax_pgd(params, xj, yj, key).block_until_ready(),
            "PyTorch": lambda: torch_pgd(tnet, xt, yt, dt, args.eps, step, args.steps)}, repeats=args.repeats)

    print(f"network: MultiExit(SmallCNN) stages={cfg.stages} blocks/stage={cfg.blocks_per_stage}, batch {args.batch}, "
          f"PGD-{args.steps} L-inf eps={args.eps}")
    print(f"check: max |logit diff| = {logit_err:.2e}; adversarial pixels equal (|diff|<1e-4): {same:.4f}")
    res = benchmark.Results()
    res.table(f"PGD-{args.steps} attack, batch {args.batch} (s / batch)", ["jaxlab", "PyTorch"], unit="s",
              extras=["jaxlab compile (s)", "pixels equal"]).add(
        "jaxlab attacks.pgd (jit) vs PyTorch eager autograd loop", times,
        **{"jaxlab compile (s)": f"{compile_s:.2f}", "pixels equal": f"{same:.4f}"})
    res.note(f"median of {args.repeats} alternating repeats; images/s = {args.batch} / (s / batch)")
    return res


if __name__ == "__main__":
    benchmark.run(main)
