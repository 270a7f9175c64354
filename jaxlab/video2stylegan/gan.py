"""StyleGAN2 training: one state for G, D and the EMA generator, one jitted step for both players.

    G:  L_G = softplus(−D(G(z)))                          + [every pl_every]  pl_weight·pl_every·(‖J_wᵀ y‖ − a)²
    D:  L_D = softplus(D(G(z))) + softplus(−D(x))         + [every r1_every]  (γ/2)·r1_every·‖∇ₓD(x)‖²

(Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", and
stylegan2-ada-pytorch `training/loss.py`). Path length: y ~ N(0, 1)/√(H·W) per pixel, the
gradient of Σ G(w)·y with respect to ws, its length sqrt(mean over ws of Σ_dim g²), the running
mean a with decay 0.01, on a batch shrunk by `pl_batch_shrink`. Lazy regularisation scales the
Adam lr by k/(k+1) and the betas by ^(k/(k+1)). Style mixing: with probability p, ws from a
second z from a random cutoff in [1, num_ws) on (one cutoff per batch). G-EMA:
β = 0.5^(batch / ema_nimg), ema_nimg = min(ema_kimg·1000, images seen · ema_rampup).

Deviation (documented): on a regularisation step the penalty is added to the main loss and one
optimizer update is made per network (the reference makes a separate update for the
regulariser); the penalty weights are multiplied by the interval as in the reference.

Both penalties differentiate the networks twice. On the CPU their convolutions are traced as
patches and one matrix product (`jaxlab.nn.conv`, `second_order_convs`): XLA's own convolution
gave the kernel gradients of the twice-differentiated 3x3 layers a batch-minor layout that
Eigen ran at about 0.3 GFLOP/s, 2 s per layer, and a regularisation step of the 32 px
`default` GAN took 23.7 s (R1 and path length; 9.4 s path length alone) against 0.42 s for a
plain step (one core, medians of calls of the jitted step on one state). With these terms as
patches the step takes 0.95 s (R1 and path length), 0.64 s (path length) and 0.43 s (plain).
The plain path keeps XLA's convolutions, which are faster there (0.42 against 0.74 s with
every convolution as patches). Later, with the generator's up-sampling convolutions in
StyleGAN2's transposed form (`up_conv="transpose"`, `fir.upsample_conv2d`): 0.33 s plain,
0.47 s path length, 0.76 s R1 and path length, against 0.36, 0.57 and 0.88 s with
`up_conv="upsample"` measured the same way on the same day (one core, medians of 5 calls
after 2, each on a fresh copy of one initial state).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import runtime
from jaxlab.core import train as train_lib
from jaxlab.nn import conv as conv_lib
from jaxlab.video2stylegan.models import Discriminator, Generator

__all__ = ["GanState", "make_models", "init_state", "make_gan_step", "r1_penalty", "second_order_convs", "truncate",
           "mix_styles", "map_ws", "generate", "samples", "ema_beta"]

INIT_G, INIT_D, STEP_Z, STEP_NOISE, STEP_MIX = 0x6701, 0x6702, 0x6703, 0x6704, 0x6705
SAMPLES = 0x6802


class GanState(flax.struct.PyTreeNode):
    """Generator and discriminator train states (each with its own Adam), the EMA generator's
    parameters, the tracked w̄ and the path-length running mean. `step` counts iterations."""

    step: jax.Array
    g: train_lib.TrainState
    d: train_lib.TrainState
    g_ema: Any
    w_avg: jax.Array
    pl_mean: jax.Array


def make_models(gc) -> tuple[Generator, Discriminator]:
    """The G and D of a `GanConfig`."""
    g = Generator(resolution=gc.resolution, z_dim=gc.z_dim, w_dim=gc.w_dim, mapping_layers=gc.mapping_layers,
                  mapping_lr_mul=gc.mapping_lr_mul, channel_base=gc.channel_base, channel_max=gc.channel_max,
                  conv_clamp=gc.conv_clamp or None, up_conv=gc.up_conv)
    d = Discriminator(resolution=gc.resolution, channel_base=gc.channel_base, channel_max=gc.channel_max,
                      mbstd_group=gc.mbstd_group)
    return g, d


def _adam(lr: float, interval: int) -> optax.GradientTransformation:
    ratio = interval / (interval + 1) if interval > 0 else 1.0
    return optax.adam(lr * ratio, b1=0.0 ** ratio, b2=0.99 ** ratio, eps=1e-8)


def init_state(gc, seed: int) -> GanState:
    g, d = make_models(gc)
    root = jax.random.key(seed)
    r = gc.resolution
    gp = g.init({"params": jax.random.fold_in(root, INIT_G), "noise": root}, jnp.zeros((1, gc.z_dim)))["params"]
    dp = d.init(jax.random.fold_in(root, INIT_D), jnp.zeros((max(gc.mbstd_group, 1), r, r, 3)))["params"]
    g_state = train_lib.TrainState.create(params=gp, tx=_adam(gc.g_lr, gc.pl_every if gc.pl_weight > 0 else 0))
    d_state = train_lib.TrainState.create(params=dp, tx=_adam(gc.d_lr, gc.r1_every if gc.r1_gamma > 0 else 0))
    return GanState(step=jnp.zeros((), jnp.int32), g=g_state, d=d_state, g_ema=jax.tree.map(jnp.copy, gp),
                    w_avg=jnp.zeros((gc.w_dim,)), pl_mean=jnp.zeros(()))


def map_ws(g: Generator, params, z) -> jax.Array:
    """`z [B, z_dim] -> ws [B, num_ws, w_dim]` (w broadcast)."""
    w = g.apply({"params": params}, z, method=Generator.mapping)
    return jnp.repeat(w[:, None], g.num_ws, axis=1)


def truncate(ws, w_avg, psi: float, cutoff: int | None = None):
    """`w̄ + ψ(w − w̄)` on the first `cutoff` entries of ws (all when None)."""
    t = w_avg + psi * (ws - w_avg)
    if cutoff is None:
        return t
    idx = jnp.arange(ws.shape[1])[None, :, None]
    return jnp.where(idx < cutoff, t, ws)


def mix_styles(ws, ws2, key, prob: float):
    """Style mixing: with probability `prob`, entries from a cutoff c ~ U[1, num_ws) on come from ws2."""
    n = ws.shape[1]
    kc, kp = jax.random.split(key)
    cutoff = jax.random.randint(kc, (), 1, n)
    cutoff = jnp.where(jax.random.uniform(kp, ()) < prob, cutoff, n)
    return jnp.where(jnp.arange(n)[None, :, None] < cutoff, ws, ws2)


def generate(g: Generator, params, ws, key=None, noise_mode: str = "const"):
    rngs = {"noise": key} if key is not None else {}
    return g.apply({"params": params}, ws, noise_mode, method=Generator.synthesis, rngs=rngs)


def samples(gc, state, seed: int, n: int = 32) -> np.ndarray:
    """`n` truncated (`gc.truncation_psi`) samples of the G-EMA of `state`, latents fixed by `seed`."""
    g, _ = make_models(gc)
    z = jax.random.normal(jax.random.fold_in(jax.random.key(seed), SAMPLES), (n, gc.z_dim))
    return np.asarray(generate(g, state.g_ema, truncate(map_ws(g, state.g_ema, z), state.w_avg, gc.truncation_psi)))


def second_order_convs():
    """A context in which the convolutions traced are computed as patches on the CPU backend
    (`jaxlab.nn.conv.use("patches")`), for the terms that are differentiated twice (see the
    module docstring); nothing changes on other backends."""
    return conv_lib.use("patches") if jax.default_backend() == "cpu" else contextlib.nullcontext()


def r1_penalty(d_fn, x) -> jax.Array:
    """Mean over the batch of ‖∇ₓ D(x)_i‖² (the R1 gradient penalty without γ/2); `d_fn`'s
    convolutions are traced under `second_order_convs`."""
    with second_order_convs():
        grads = jax.grad(lambda xx: jnp.sum(d_fn(xx)))(x)
    return jnp.mean(jnp.sum(jnp.square(grads), axis=(1, 2, 3)))


def ema_beta(gc, step) -> jax.Array:
    nimg = gc.ema_kimg * 1000.0
    if gc.ema_rampup > 0:
        nimg = jnp.minimum(nimg, (step + 1) * gc.batch_size * gc.ema_rampup)
    return 0.5 ** (gc.batch_size / jnp.maximum(nimg, 1e-8))


def make_gan_step(gc, *, jit: bool = True):
    """`step(state, real [B, R, R, 3] in [-1, 1], key) -> (state, metrics)`: a G update, then a D update
    against fakes of the updated G, then the EMA generator. On a lazy-regularisation step the
    penalty (× its interval) joins the main loss in one update (`gc.lazy_updates="joint"`), or
    takes a second update of its own, with the same optimizer, at the parameters the main update
    left ("separate", as stylegan2-ada's Greg/Dreg phases)."""
    g, d = make_models(gc)
    r1_w = gc.r1_gamma / 2 * gc.r1_every
    pl_w = gc.pl_weight * gc.pl_every
    joint = gc.lazy_updates == "joint"

    def sample_ws(gp, key, n):
        kz1, kz2, km = jax.random.split(key, 3)
        ws = map_ws(g, gp, jax.random.normal(kz1, (n, gc.z_dim)))
        if gc.style_mixing > 0:
            ws = mix_styles(ws, map_ws(g, gp, jax.random.normal(kz2, (n, gc.z_dim))), km, gc.style_mixing)
        return ws

    def d_apply(dp, x):
        return d.apply({"params": dp}, x)

    def step(state: GanState, real, key):
        b = real.shape[0]
        kg, kd, kn1, kn2, kpl, kpn = jax.random.split(key, 6)
        do_pl = state.step % gc.pl_every == 0
        do_r1 = state.step % gc.r1_every == 0

        def pl_term(gp):  # the path-length penalty and the updated running mean of the lengths
            nb = max(b // gc.pl_batch_shrink, 1)
            wsp = sample_ws(gp, kpl, nb)
            r = gc.resolution
            noise = jax.random.normal(kpn, (nb, r, r, 3)) / math.sqrt(r * r)
            with second_order_convs():
                gw = jax.grad(lambda w: jnp.sum(generate(g, gp, w, kn2, "random") * noise))(wsp)
            lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(gw), axis=2), axis=1))
            mean = state.pl_mean + gc.pl_decay * (jnp.mean(lengths) - state.pl_mean)
            pen = jnp.mean(jnp.square(lengths - jax.lax.stop_gradient(mean)))
            return pen, jax.lax.stop_gradient(mean)

        def g_loss(gp):
            ws = sample_ws(gp, kg, b)
            img = generate(g, gp, ws, kn1, "random")
            loss = jnp.mean(jax.nn.softplus(-d_apply(state.d.params, img)))

            if gc.pl_weight > 0 and joint:  # not traced at all when off
                pen, pl_mean = jax.lax.cond(do_pl, lambda: pl_term(gp), lambda: (jnp.zeros(()), state.pl_mean))
            else:
                pen, pl_mean = jnp.zeros(()), state.pl_mean
            w_mean = jnp.mean(jax.lax.stop_gradient(ws[:, 0]), axis=0)
            return loss + pl_w * pen, (loss, pen, pl_mean, w_mean)

        (_, (g_main, pl_pen, pl_mean, w_mean)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(state.g.params)
        g_state = state.g.apply_gradients(g_grads)
        if gc.pl_weight > 0 and not joint:  # a second G update on the penalty alone, at the updated G
            def g_reg(gs):
                (_, (pen, mean)), grads = jax.value_and_grad(
                    lambda gp: (lambda pm: (pl_w * pm[0], pm))(pl_term(gp)), has_aux=True)(gs.params)
                return gs.apply_gradients(grads), pen, mean
            g_state, pl_pen, pl_mean = jax.lax.cond(do_pl, g_reg, lambda gs: (gs, jnp.zeros(()), state.pl_mean),
                                                    g_state)
        fake = jax.lax.stop_gradient(generate(g, g_state.params, sample_ws(g_state.params, kd, b), kn2, "random"))

        def d_loss(dp):
            lf, lr = d_apply(dp, fake), d_apply(dp, real)
            loss = jnp.mean(jax.nn.softplus(lf)) + jnp.mean(jax.nn.softplus(-lr))
            r1 = jnp.zeros(())
            if gc.r1_gamma > 0 and joint:
                r1 = jax.lax.cond(do_r1, lambda: r1_penalty(lambda x: d_apply(dp, x), real), lambda: jnp.zeros(()))
            return loss + r1_w * r1, (loss, r1, jnp.mean(lr), jnp.mean(lf))

        (_, (d_main, r1, d_real, d_fake)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(state.d.params)
        d_state = state.d.apply_gradients(d_grads)
        if gc.r1_gamma > 0 and not joint:  # a second D update on R1 alone, at the updated D
            def d_reg(ds):
                r1v, grads = jax.value_and_grad(lambda dp: r1_penalty(lambda x: d_apply(dp, x), real))(ds.params)
                return ds.apply_gradients(jax.tree.map(lambda gr: r1_w * gr, grads)), r1v
            d_state, r1 = jax.lax.cond(do_r1, d_reg, lambda ds: (ds, jnp.zeros(())), d_state)
        beta = ema_beta(gc, state.step)
        g_ema = jax.tree.map(lambda e, p: p + beta * (e - p), state.g_ema, g_state.params)
        w_avg = w_mean + gc.w_avg_beta * (state.w_avg - w_mean)
        new = state.replace(step=state.step + 1, g=g_state, d=d_state, g_ema=g_ema, w_avg=w_avg, pl_mean=pl_mean)
        metrics = {"loss": d_main + g_main, "g_loss": g_main, "d_loss": d_main, "r1": r1, "pl_penalty": pl_pen,
                   "d_real": d_real, "d_fake": d_fake, "g_grad_norm": optax.tree.norm(g_grads),
                   "d_grad_norm": optax.tree.norm(d_grads)}
        return new, metrics

    if not jit:
        return step
    # YNNPACK also for reductions on the CPU: the plain step 0.49 -> 0.44 s (32 px, one core)
    return jax.jit(step, donate_argnums=(0,), compiler_options=runtime.cpu_compiler_options(reductions=True))
