"""The W+ encoder with temporal reuse: training on clips and video encoding.

    key frame x_0:   w_0 = w̄ + E(x_0)                          (all num_ws entries)
    frame t:         w_t = [ w̄ + E_coarse(x_t) ;  w_0[k:] ]     (k = reuse_start; fine entries reused)
    loss on a clip:  l2 · ( ‖G(w_0) − x_0‖² + ‖G(w_t) − x_t‖² ) / 2   (per-pixel means; G frozen, const noise)
                     + landmark · L_lmk + mesh · L_mesh + identity · L_id   (over both frames of the clip)

L_lmk, L_mesh and L_id (`auxnets.encoder_terms`) compare the frozen `proc_landmarks`,
`proc_3dmm` and `proc_id` on the reconstruction and on the input; a term of weight 0 is not
traced, so with all three at 0 the loss is the pixel loss alone. With `reuse=False` (the
per-frame baseline) every frame encodes all of W+. Reconstruction: the paper's encoder heads,
split, losses and their weights are not published (spec §2.3, §2.5).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import runtime
from jaxlab.core import train as train_lib
from jaxlab.video2stylegan import auxnets, gan, models
from jaxlab.video2stylegan.models import Encoder, num_ws

__all__ = ["make_encoder", "init_encoder_state", "make_loss_fn", "uses_aux", "clip_batch", "encode_frames",
           "encode_both", "throughput", "INIT_E", "CLIPS"]

INIT_E, CLIPS = 0x6901, 0x6902


def make_encoder(config) -> Encoder:
    e = config.encoder
    return Encoder(num_ws=num_ws(config.gan.resolution), w_dim=config.gan.w_dim, reuse_start=e.reuse_start,
                   patch_size=e.patch_size, embed_dim=e.embed_dim, depth=e.depth, num_heads=e.num_heads,
                   delta_scale=e.delta_scale)


def init_encoder_state(config) -> train_lib.TrainState:
    r = config.gan.resolution
    enc = make_encoder(config)
    params = enc.init(jax.random.fold_in(jax.random.key(config.seed), INIT_E), jnp.zeros((1, r, r, 3)),
                      jnp.zeros((config.gan.w_dim,)))["params"]
    return train_lib.TrainState.create(params=params, tx=optax.adam(config.encoder.lr))


def encode_pair(enc: Encoder, params, x0, xt, w_avg, reuse: bool, k: int):
    """`(w_0, w_t)`, each `[B, num_ws, w_dim]`; with reuse w_t[:, k:] is w_0[:, k:]."""
    w0 = enc.apply({"params": params}, x0, w_avg)
    if reuse:
        coarse = enc.apply({"params": params}, xt, w_avg, coarse_only=True)
        return w0, jnp.concatenate([coarse, w0[:, k:]], axis=1)
    return w0, enc.apply({"params": params}, xt, w_avg)


def uses_aux(config) -> bool:
    """Whether the encoder's loss has a landmark, mesh or identity term (a non-zero weight)."""
    e = config.encoder
    return e.landmark > 0 or e.mesh > 0 or e.identity > 0


def make_loss_fn(config, g_params, w_avg, aux=None):
    """`loss_fn(params, extra, (x0, xt), key)` for `core.train.make_train_step` (the generator is frozen).

    `aux`: the frozen `auxnets.AuxNets`, needed when a landmark, mesh or identity weight is non-zero.
    """
    enc = make_encoder(config)
    g, _ = gan.make_models(config.gan)
    e = config.encoder
    if uses_aux(config) and aux is None:
        raise ValueError("encoder.landmark, encoder.mesh or encoder.identity is non-zero: pass the auxiliary "
                         "networks (auxnets.load_aux)")

    def loss_fn(params, extra, batch, key):
        del extra, key
        x0, xt = batch
        w0, wt = encode_pair(enc, params, x0, xt, w_avg, e.reuse, e.reuse_start)
        y = gan.generate(g, g_params, jnp.concatenate([w0, wt]), noise_mode="const")
        y0, yt = y[: x0.shape[0]], y[x0.shape[0]:]
        l0, lt = jnp.mean((y0 - x0) ** 2), jnp.mean((yt - xt) ** 2)
        loss, metrics = e.l2 * (l0 + lt) / 2, {"mse_key": l0, "mse_frame": lt}
        if uses_aux(config):
            extra_loss, terms = auxnets.encoder_terms(aux, jnp.concatenate([x0, xt]), y, e)
            loss, metrics = loss + extra_loss, {**metrics, **terms}
        return loss, (metrics, None)

    return loss_fn


def clip_batch(config, videos: np.ndarray, step: int):
    """`(x_0, x_t)` `[B, R, R, 3]`: a random video, its first frame and a random later frame."""
    rng = np.random.default_rng([config.seed, CLIPS, step])
    b = config.encoder.batch_size
    v = rng.integers(0, videos.shape[0], b)
    t = rng.integers(1, videos.shape[1], b)
    return videos[v, 0], videos[v, t]


def make_encode_fn(config):
    """Jitted `(enc_params, g_params, w_avg, frames [T, R, R, 3], reuse) -> (ws [T, num_ws, w_dim], recon)`.

    Frame 0 is the key frame; with reuse, frames t >= 1 run only the coarse head and take W+
    entries from `reuse_start` on from frame 0, so those entries are identical across frames.
    """
    enc = make_encoder(config)
    g, _ = gan.make_models(config.gan)
    k = config.encoder.reuse_start

    def generate(gp, ws):  # toRGB's shared-kernel product suits the XLA dot thunks chosen below
        with models.one_by_one_form("shared"):
            return gan.generate(g, gp, ws, noise_mode="const")

    def per_frame(ep, gp, w_avg, frames):
        ws = enc.apply({"params": ep}, frames, w_avg)
        return ws, generate(gp, ws)

    def reused(ep, gp, w_avg, frames):
        w0 = enc.apply({"params": ep}, frames[:1], w_avg)
        coarse = enc.apply({"params": ep}, frames[1:], w_avg, coarse_only=True)
        fine = jnp.broadcast_to(w0[:, k:], (coarse.shape[0], w0.shape[1] - k, w0.shape[2]))
        rest = jnp.concatenate([coarse, fine], axis=1)
        ws = jnp.concatenate([w0, rest], axis=0)
        return ws, generate(gp, ws)

    # YNNPACK for reductions, XLA's own (Eigen) thunks for the dots: the ViT's ~40 small matrix
    # products ([1024, 96] x [96, 96 | 384]) ran faster there, and the generator the same. Per-frame
    # encoding of 16 frames at 32 px, medians of 40 interleaved calls: 27.7 -> 24.9 ms on two
    # cores, 39.5 -> 37.1 ms on one, against YNNPACK's dots (`gan.make_gan_step`'s options)
    opts = runtime.cpu_compiler_options(reductions=True, dots="eigen")
    return {True: jax.jit(reused, compiler_options=opts), False: jax.jit(per_frame, compiler_options=opts)}


def encode_frames(encode_fns, enc_params, g_params, w_avg, frames, reuse: bool):
    ws, recon = encode_fns[bool(reuse)](enc_params, g_params, w_avg, jnp.asarray(frames))
    return np.asarray(ws), np.asarray(recon)


def encode_both(encode_fns, enc_params, g_params, w_avg, frames) -> dict:
    """`{"per_frame"|"reuse": (ws, reconstruction)}` of `frames`, encoded both ways."""
    return {"reuse" if reuse else "per_frame": encode_frames(encode_fns, enc_params, g_params, w_avg, frames, reuse)
            for reuse in (False, True)}


def throughput(encode_fns, enc_params, g_params, w_avg, frames, reps: int = 3) -> dict:
    """`{"per_frame"|"reuse": {"frames_per_s", "first_call_s"}}`: encoder + generator frames/s of one
    batch of `frames` (median of `reps` calls after the first, whose time, compile included, is apart)."""
    frames, out = jnp.asarray(frames), {}
    for reuse in (False, True):
        times = []
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            jax.block_until_ready(encode_fns[reuse](enc_params, g_params, w_avg, frames))
            times.append(time.perf_counter() - t0)
        out["reuse" if reuse else "per_frame"] = {"frames_per_s": len(frames) / float(np.median(times[1:])),
                                                  "first_call_s": times[0]}
    return out
