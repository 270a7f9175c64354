"""On-device augmentation (spec sec. 2.4), images `[B, H, W, C]` in [0, 1], soft labels `[B, K]`.

weak (superformer): RandomResizedCrop (bicubic, square crops, area U(min_scale, 1)) + horizontal
flip + RandomErasing (prob p, per-pixel normal fill) + CutMix (Beta(alpha, alpha), prob p).
strong (retraining, reconstruction of rand-m9 + ColorJitter 0.4 at this scale): crop + flip +
brightness/contrast/saturation jitter + RandomErasing, no CutMix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlab.vitas.configs import AugConfig

__all__ = ["augment"]


def _crop(key, img, min_scale):
    h = img.shape[0]
    k1, k2 = jax.random.split(key)
    side = jnp.sqrt(jax.random.uniform(k1, (), minval=min_scale, maxval=1.0)) * h
    off = jax.random.uniform(k2, (2,)) * (h - side)
    s = h / side
    return jax.image.scale_and_translate(img, img.shape, (0, 1), jnp.array([s, s]), -off * s, "cubic",
                                         antialias=False)


def _box(key, h, frac):
    """A square box `[h, h]` mask covering about `frac` of the image at a random centre."""
    side = jnp.sqrt(frac) * h
    c = jax.random.uniform(key, (2,)) * h
    r = jnp.arange(h) + 0.5
    inside = lambda cc: (r >= cc - side / 2) & (r < cc + side / 2)
    return inside(c[0])[:, None] & inside(c[1])[None, :]


def augment(key: jax.Array, x: jax.Array, y: jax.Array, cfg: AugConfig) -> tuple[jax.Array, jax.Array]:
    """Augmented `(images, soft labels)`; `cfg.kind == "none"` returns the inputs."""
    if cfg.kind == "none":
        return x, y
    b, h = x.shape[0], x.shape[1]
    ks = jax.random.split(key, 8)
    x = jax.vmap(lambda k, im: _crop(k, im, cfg.crop_min_scale))(jax.random.split(ks[0], b), x)
    flip = jax.random.bernoulli(ks[1], 0.5, (b,))
    x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
    if cfg.kind == "strong":
        j = cfg.jitter
        u = jax.random.uniform(ks[2], (3, b, 1, 1, 1), minval=1 - j, maxval=1 + j)
        x = x * u[0]
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * u[1] + mean
        grey = x.mean(-1, keepdims=True)
        x = jnp.clip((x - grey) * u[2] + grey, 0.0, 1.0)
    frac = jax.random.uniform(ks[3], (b,), minval=0.02, maxval=1 / 3)
    box = jax.vmap(lambda k, f: _box(k, h, f))(jax.random.split(ks[4], b), frac)
    erase = jax.random.bernoulli(ks[5], cfg.erase_prob, (b,))[:, None, None] & box
    x = jnp.where(erase[..., None], jax.random.normal(ks[6], x.shape), x)
    if cfg.kind == "weak" and cfg.cutmix_prob > 0:
        k1, k2, k3 = jax.random.split(ks[7], 3)
        lam = jax.random.beta(k1, cfg.cutmix_alpha, cfg.cutmix_alpha)
        use = jax.random.bernoulli(k3, cfg.cutmix_prob)
        m = _box(k2, h, 1.0 - lam) & use
        area = m.mean()
        x = jnp.where(m[None, :, :, None], jnp.roll(x, 1, axis=0), x)
        y = (1.0 - area) * y + area * jnp.roll(y, 1, axis=0)
    return x, y
