"""Benchmark: the Flax StyleGAN2 generator of jaxlab.video2stylegan vs the same generator written in
PyTorch (eager, NCHW, in the style of NVlabs/stylegan2-ada-pytorch), same weights.

    python scripts/bench_video2stylegan.py [--resolution 32] [--batch 16] [--repeats 10] [--block 1]
                                           [--threads both|1|all] [--up-conv transpose|upsample]
                                           [--torch-modulation activations|grouped]

Measures (medians of alternating repeats): generator forward+backward (loss = mean G(z)²,
gradients for all parameters), generator forward, and encoder + generator on video frames
(the library's per-frame `encode` function against the same ViT encoder written in PyTorch
feeding the PyTorch generator); the first JAX call (compile) is reported apart. Both peers
compute the up-sampling convolutions in the form `--up-conv` names (`GanConfig.up_conv`; the
default's is StyleGAN2's transposed convolution then the FIR, as NVlabs' `conv2d_resample`).
PyTorch modulates as StyleGAN2 trains (`fused_modconv=False`: the activations times the styles,
one convolution with the shared kernel, the outputs times the demodulation), as jaxlab does;
`--torch-modulation grouped` gives it per-sample kernels in one grouped convolution over the
batch instead (StyleGAN2's inference path), slower on the CPU. The weights
are copied from Flax to PyTorch and the outputs compared first. The host allocator is tuned
as the `jaxlab` command tunes it (`runtime.tune_host_allocator`; PyTorch shares it). Load
average before and after; a 1-thread and an all-threads column per peer (see
`jaxlab.core.benchmark`).
"""

from __future__ import annotations

import argparse
import math
import time

from jaxlab.core import benchmark, runtime

SETTING = benchmark.configure_threads()  # before jax and torch start their thread pools
ALLOCATOR = runtime.tune_host_allocator()  # as the `jaxlab` command does; PyTorch shares it

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def torch_generator(params, cfg, modulation="activations"):
    import torch
    import torch.nn.functional as F

    from jaxlab.video2stylegan import fir
    from jaxlab.video2stylegan.models import NOISE_CONST, channels_at, num_ws

    t = {jax.tree_util.keystr(k): torch.tensor(np.asarray(v)) for k, v in jax.tree_util.tree_leaves_with_path(params)}
    for v in t.values():
        v.requires_grad_(True)
    f1 = torch.tensor(fir.setup_filter())
    fk = (torch.outer(f1, f1) * 4)[None, None]
    sqrt2 = math.sqrt(2)

    def p(*names):
        return t["".join(f"['{n}']" for n in names)]

    def eq_linear(x, *path, lr_mul=1.0):
        w, b = p(*path, "kernel"), p(*path, "bias")
        return x @ (w * (lr_mul / math.sqrt(w.shape[0]))) + b * lr_mul

    def upsample(x):
        b, c, h, w = x.shape
        up = x.new_zeros(b, c, 2 * h, 2 * w)
        up[:, :, ::2, ::2] = x
        return F.conv2d(F.pad(up, (2, 1, 2, 1)), fk.expand(c, 1, 4, 4), groups=c)

    def fir_after_transpose(y):  # conv2d_resample(up=2)'s FIR on the (2H + 1)-wide transposed-conv output
        return F.conv2d(F.pad(y, (1, 1, 1, 1)), fk.expand(y.shape[1], 1, 4, 4), groups=y.shape[1])

    def modconv(x, weight, s, demod, up=False):
        wt = weight.permute(3, 2, 0, 1)  # [Cout, Cin, k, k]
        k = wt.shape[-1]
        if modulation == "activations":  # StyleGAN2's training path: x·s, one shared conv, ·d
            x = x * s[:, :, None, None]
            if up:  # conv2d_resample(up=2): stride-2 transposed conv (kernel flipped), then the FIR
                y = F.conv_transpose2d(x, wt.flip(2, 3).transpose(0, 1), stride=2)
                y = fir_after_transpose(y)
            else:
                y = F.conv2d(x, wt, padding=k // 2)
            if demod:
                y = y * torch.rsqrt(s.square() @ wt.square().sum(dim=(2, 3)).T + 1e-8)[:, :, None, None]
            return y
        b, cin, h, w = x.shape  # grouped: per-sample weights, one grouped conv over the batch
        wb = wt[None] * s[:, None, :, None, None]
        if demod:
            wb = wb * torch.rsqrt(wb.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        if up:
            wtr = wb.flip(3, 4).transpose(1, 2).reshape(b * cin, -1, k, k)
            y = F.conv_transpose2d(x.reshape(1, b * cin, h, w), wtr, stride=2, groups=b)
            y = y.reshape(b, -1, y.shape[-2], y.shape[-1])
            return fir_after_transpose(y)
        y = F.conv2d(x.reshape(1, b * cin, h, w), wb.reshape(-1, cin, k, k), padding=k // 2, groups=b)
        return y.reshape(b, -1, h, w)

    noise = {}

    def layer(x, w, name, idx, up=False):
        if up and cfg.up_conv == "upsample":
            x = upsample(x)
        s = eq_linear(w, "synthesis_net", name, "affine")
        x = modconv(x, p("synthesis_net", name, "kernel"), s, True, up=up and cfg.up_conv == "transpose")
        h = x.shape[-1]
        if name not in noise:
            n = jax.random.normal(jax.random.fold_in(jax.random.key(NOISE_CONST), idx), (1, h, h, 1))
            noise[name] = torch.tensor(np.asarray(n)).permute(0, 3, 1, 2)
        x = x + noise[name] * p("synthesis_net", name, "noise_strength")
        x = F.leaky_relu(x + p("synthesis_net", name, "bias")[None, :, None, None], 0.2) * sqrt2
        return x.clamp(-256, 256)

    def torgb(x, w, name):
        s = eq_linear(w, "synthesis_net", name, "affine") / math.sqrt(x.shape[1])
        y = modconv(x, p("synthesis_net", name, "kernel"), s, False)
        return (y + p("synthesis_net", name, "bias")[None, :, None, None]).clamp(-256, 256)

    def forward(z):
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for i in range(cfg.mapping_layers):
            x = F.leaky_relu(eq_linear(x, "mapping_net", f"fc{i}", lr_mul=cfg.mapping_lr_mul), 0.2) * sqrt2
        return synthesis(x[:, None].repeat(1, num_ws(cfg.resolution), 1))

    def synthesis(ws):  # W+ [B, num_ws, w_dim] -> images [B, 3, R, R]
        c4 = channels_at(4, cfg.channel_base, cfg.channel_max)
        h = p("synthesis_net", "const").permute(2, 0, 1)[None].expand(ws.shape[0], c4, 4, 4)
        h = layer(h, ws[:, 0], "b4_conv1", 0)
        img = torgb(h, ws[:, 1], "b4_torgb")
        for k in range(3, int(round(math.log2(cfg.resolution))) + 1):
            r = 2 ** k
            h = layer(h, ws[:, 2 * k - 5], f"b{r}_conv0", 2 * k - 5, up=True)
            h = layer(h, ws[:, 2 * k - 4], f"b{r}_conv1", 2 * k - 4)
            img = upsample(img) + torgb(h, ws[:, 2 * k - 3], f"b{r}_torgb")
        return img

    forward.synthesis = synthesis
    return forward, list(t.values())


def torch_encoder(params, e, w_avg):
    """The W+ encoder (`models.Encoder`: a pre-norm ViT, mean-pooled, two linear heads) in PyTorch,
    reading the Flax parameters `params`; `e` is the `EncoderConfig`. Images `[B, R, R, 3]`."""
    import torch
    import torch.nn.functional as F

    t = {jax.tree_util.keystr(k): torch.tensor(np.asarray(v)) for k, v in jax.tree_util.tree_leaves_with_path(params)}
    w_avg = torch.tensor(np.asarray(w_avg))

    def p(*names):
        return t["".join(f"['{n}']" for n in names)]

    def lin(x, *path):
        return x @ p(*path, "kernel") + p(*path, "bias")

    def norm(x, *path):
        return F.layer_norm(x, x.shape[-1:], p(*path, "scale"), p(*path, "bias"), eps=1e-6)

    def forward(x):
        b, r, q, d, h = x.shape[0], x.shape[1], e.patch_size, e.embed_dim, e.num_heads
        n = (r // q) ** 2
        patches = x.reshape(b, r // q, q, r // q, q, 3).permute(0, 1, 3, 2, 4, 5).reshape(b, n, q * q * 3)
        x = lin(patches, "vit", "patch_embed", "proj").reshape(b, n, d) + p("vit", "pos_embedding")
        for i in range(e.depth):
            blk = ("vit", "encoder", f"block_{i}")
            y = norm(x, *blk, "norm1")
            qkv = [lin(y, *blk, "attention", m).reshape(b, n, h, d // h).transpose(1, 2)
                   for m in ("query", "key", "value")]
            y = F.scaled_dot_product_attention(*qkv).transpose(1, 2).reshape(b, n, d)
            x = x + lin(y, *blk, "attention", "out")
            y = F.gelu(lin(norm(x, *blk, "norm2"), *blk, "mlp", "fc1"))
            x = x + lin(y, *blk, "mlp", "fc2")
        feats = norm(x, "vit", "encoder", "final_norm").mean(1)
        delta = torch.cat([lin(feats, "head_coarse").reshape(b, e.reuse_start, -1),
                           lin(feats, "head_fine").reshape(b, -1, w_avg.shape[0])], 1)
        return w_avg + e.delta_scale * delta

    proj = "['vit']['patch_embed']['proj']['kernel']"
    t[proj] = t[proj].reshape(-1, e.embed_dim)  # [p, p, 3, D] -> [p * p * 3, D], the patches' (row, column, channel)
    return forward


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--block", type=int, default=1,
                    help="consecutive calls per turn of each peer (1: alternate call by call)")
    ap.add_argument("--up-conv", choices=["transpose", "upsample"], default="transpose",
                    help="the generator's up-sampling convolutions (GanConfig.up_conv)")
    ap.add_argument("--torch-modulation", choices=["activations", "grouped"], default="activations",
                    help="how the PyTorch peer applies the styles")
    benchmark.add_threads_argument(ap)
    args = ap.parse_args()
    import torch

    from jaxlab.video2stylegan import configs, encoder, gan

    config = configs.get_config("default")
    config.faces.resolution = config.gan.resolution = args.resolution
    config.gan.up_conv = args.up_conv
    cfg = config.gan
    g, _ = gan.make_models(cfg)
    params = gan.init_state(cfg, 0).g.params
    # non-zero noise strengths so that the noise path is compared too
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.full_like(v, 0.1) if "noise_strength" in jax.tree_util.keystr(p) else v, params)
    z = np.random.default_rng(0).normal(size=(args.batch, cfg.z_dim)).astype(np.float32)

    # compiled with the options of the library's GAN step (`gan.make_gan_step`)
    opts = runtime.cpu_compiler_options(reductions=True)
    fwd = jax.jit(lambda p, z: g.apply({"params": p}, z, "const"), compiler_options=opts)
    step = jax.jit(jax.value_and_grad(lambda p, z: jnp.mean(g.apply({"params": p}, z, "const") ** 2)),
                   compiler_options=opts)
    t0 = time.perf_counter()
    jax.block_until_ready(fwd(params, z))
    c_fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(step(params, z))
    c_step = time.perf_counter() - t0

    tfwd, tparams = torch_generator(params, cfg, args.torch_modulation)
    zt = torch.tensor(z)
    with torch.no_grad():
        diff = float(np.abs(tfwd(zt).permute(0, 2, 3, 1).numpy() - np.asarray(fwd(params, z))).max())

    def torch_step():
        for q in tparams:
            q.grad = None
        tfwd(zt).square().mean().backward()

    def torch_fwd():
        with torch.no_grad():
            tfwd(zt)

    # encoder + generator on video frames: the library's per-frame `encode` function (jitted as
    # `encoder.make_encode_fn` compiles it) against the PyTorch encoder feeding the same generator;
    # the zero-initialised heads get random weights so that the comparison checks them
    enc_params = encoder.init_encoder_state(config).params
    heads = jax.random.split(jax.random.key(1), 4)
    enc_params = {**enc_params, **{h: {"kernel": 0.05 * jax.random.normal(k1, enc_params[h]["kernel"].shape),
                                       "bias": 0.05 * jax.random.normal(k2, enc_params[h]["bias"].shape)}
                                   for h, k1, k2 in (("head_coarse", *heads[:2]), ("head_fine", *heads[2:]))}}
    w_avg = 0.1 * jax.random.normal(jax.random.key(2), (cfg.w_dim,))
    frames = np.random.default_rng(1).uniform(-1, 1, (args.batch, args.resolution, args.resolution, 3))
    frames = frames.astype(np.float32)
    encode = encoder.make_encode_fn(config)[False]
    t0 = time.perf_counter()
    jax.block_until_ready(encode(enc_params, params, w_avg, frames))
    c_enc = time.perf_counter() - t0
    tenc = torch_encoder(enc_params, config.encoder, w_avg)
    framest = torch.tensor(frames)
    with torch.no_grad():
        enc_diff = float(np.abs(tfwd.synthesis(tenc(framest)).permute(0, 2, 3, 1).numpy()
                                - np.asarray(encode(enc_params, params, w_avg, frames)[1])).max())

    def torch_encode():
        with torch.no_grad():
            tfwd.synthesis(tenc(framest))

    with benchmark.torch_threads(benchmark.peer_threads(SETTING)):
        print(benchmark.device_line())
        print(benchmark.allocator_line(ALLOCATOR))
        torch_fwd(), torch_step()  # warm-up
        fwd_t = benchmark.alternate({"jaxlab": lambda: jax.block_until_ready(fwd(params, z)), "PyTorch": torch_fwd},
                                    args.repeats, block=args.block)
        step_t = benchmark.alternate({"jaxlab": lambda: jax.block_until_ready(step(params, z)),
                                      "PyTorch": torch_step}, args.repeats, block=args.block)
        enc_t = benchmark.alternate({"jaxlab": lambda: jax.block_until_ready(encode(enc_params, params, w_avg, frames)),
                                     "PyTorch": torch_encode}, args.repeats, block=args.block)
    print(f"G at {args.resolution}px, batch {args.batch}, channels <= {cfg.channel_max}; max |jax - torch| "
          f"output difference {diff:.2e}; encoder + G on {args.batch} frames: {enc_diff:.2e}")
    res = benchmark.Results()
    t = res.table(f"StyleGAN2 generator, {args.resolution}px, batch {args.batch}", ["jaxlab", "PyTorch"], unit="ms",
                  extras=["jaxlab compile (s)"])
    t.add("forward", fwd_t, **{"jaxlab compile (s)": f"{c_fwd:.2f}"})
    t.add("forward + backward", step_t, **{"jaxlab compile (s)": f"{c_step:.2f}"})
    t.add("encoder + generator, per frame", enc_t, **{"jaxlab compile (s)": f"{c_enc:.2f}"})
    res.note(f"frames/s = {args.batch} / forward time; medians of {args.repeats} repeats, the peers alternating "
             + ("call by call" if args.block == 1 else f"in turns of {args.block} calls"))
    return res


if __name__ == "__main__":
    benchmark.run(main)
