"""Baselines of the target's future that need no network: constant velocity and the nearest
neighbour in the training set.

Both read the target's observed trajectory from the vectorised layout (`polylines`): every
row whose vectors carry the `is_target` feature, each vector's start point `(xs, ys)` and
time feature `(step - last) / num_obs`, in the target frame (origin at the last observed
position, heading along +x).

LSTM encoder-decoder (`HistoryLSTM`, trained like VectorNet with `--config.model.name=lstm`):
an LSTM reads the target's history oldest first, one step per slot (x, y and whether the
slot was observed, coordinates divided by `coord_scale`); a second LSTM, started from the
encoder's state, runs `num_future` steps on zero inputs and a dense layer turns each of its
outputs into a displacement, summed into positions. The architecture of the Argoverse
LSTM baselines is not specified beyond "encoder-decoder": this one is a reconstruction.

Nearest neighbour (in the spirit of the Argoverse benchmark's NN baseline; its map-lane
variants are not built): the training scene whose target history, compared at the time
offsets observed in both, is closest in mean squared distance gives its future, already in
the same frame; with `k > 1` the k nearest give k guesses (for minADE/minFDE over K), and,
for the probabilistic metrics (p-minFDE, brier-minFDE), each guess the probability
softmax(-d_j / mean(d)) of its history distance d_j among the k (reconstruction: the Argoverse NN
baseline's probabilities are not specified; equal probabilities would add the constant
min(log k, -log 0.05) and (1 - 1/k)^2).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.nn.linear import Dense
from jaxlab.vectornet.polylines import FEATURES

__all__ = ["constant_velocity", "target_history", "nearest_neighbour", "guess_probs", "HistoryLSTM"]

_IS_TARGET = FEATURES.index("is_target")
_TIME = FEATURES.index("time")


def constant_velocity(vectors: np.ndarray, vec_mask: np.ndarray, num_obs: int, num_future: int,
                      window: int = 5) -> np.ndarray:
    """Constant-velocity baseline `[N, T, 2]` from the target row (row 0) of the layout:
    the mean velocity over the last `window` observed vectors, extrapolated from the origin."""
    v0, m0 = np.asarray(vectors[:, 0], np.float64), np.asarray(vec_mask[:, 0])
    n_valid = m0.sum(-1)
    out = np.zeros((len(v0), num_future, 2))
    for i in range(len(v0)):
        rows = v0[i, :n_valid[i]][-window:]
        steps = -rows[0, 4] * num_obs  # time feature of the first vector is (step - last) / num_obs
        vel = (rows[-1, 2:4] - rows[0, 0:2]) / max(steps, 1.0)
        out[i] = vel[None] * np.arange(1, num_future + 1)[:, None]
    return out


def target_history(vectors: np.ndarray, vec_mask: np.ndarray, num_obs: int) -> tuple[np.ndarray, np.ndarray]:
    """`(xy [N, num_obs, 2], valid [N, num_obs])`: the target's position `k` steps before its
    last observation at slot `k` (slot 0, the origin, is always valid)."""
    v = np.asarray(vectors, np.float64)
    m = np.asarray(vec_mask, bool) & (v[..., _IS_TARGET] > 0.5)
    n = v.shape[0]
    xy = np.zeros((n, num_obs, 2))
    valid = np.zeros((n, num_obs), bool)
    valid[:, 0] = True
    scene, row, col = np.nonzero(m)
    k = np.rint(-v[scene, row, col, _TIME] * num_obs).astype(np.int64)
    keep = (k >= 1) & (k < num_obs)
    scene, row, col, k = scene[keep], row[keep], col[keep], k[keep]
    xy[scene, k] = v[scene, row, col, 0:2]
    valid[scene, k] = True
    return xy, valid


def nearest_neighbour(train: dict, test: dict, num_obs: int, k: int = 1, chunk: int = 1024,
                      return_probs: bool = False):
    """Futures of the `k` training scenes nearest to each test scene: `[N, T, 2]` for k = 1,
    else `[N, k, T, 2]` (nearest first). `train` and `test` hold `vectors` and `vec_mask`;
    `train` also `future`. Distances are exact (matrix products, in chunks of test scenes).
    With `return_probs`, `(futures, probs [N, k])`, the guesses' probabilities (module docstring)."""
    if k < 1 or k > len(train["future"]):
        raise ValueError(f"k must lie in [1, {len(train['future'])}] (the training scenes), got {k}")
    xa, ma = target_history(train["vectors"], train["vec_mask"], num_obs)
    xb, mb = target_history(test["vectors"], test["vec_mask"], num_obs)
    wa, wb = ma.astype(np.float64), mb.astype(np.float64)
    sq_a = np.sum(xa ** 2, -1) * wa                                     # [Na, H]
    out, dists = [], []
    for lo in range(0, len(xb), chunk):
        xq, wq = xb[lo:lo + chunk], wb[lo:lo + chunk]
        sq_q = np.sum(xq ** 2, -1) * wq
        cross = np.einsum("qhc,nhc->qn", xq * wq[..., None], xa * wa[..., None])
        both = wq @ wa.T                                                  # slots observed in both
        sse = sq_q @ wa.T + wq @ sq_a.T - 2 * cross
        dist = np.where(both > 0, np.maximum(sse, 0) / np.maximum(both, 1), np.inf)
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        out.append(np.asarray(train["future"])[order])
        dists.append(np.take_along_axis(dist, order, axis=1))
    pred = np.concatenate(out).astype(np.float64)
    pred = pred[:, 0] if k == 1 else pred
    return (pred, guess_probs(np.concatenate(dists))) if return_probs else pred


def guess_probs(dist: np.ndarray) -> np.ndarray:
    """`[N, k]` probabilities softmax(-d / mean(d)) of guesses at distances `dist [N, k]` (nearest
    guesses likeliest; scale-free; an infinite distance gets 0, all infinite or all 0 gives equal)."""
    finite = np.isfinite(dist)
    scale = np.array([d[f].mean() if f.any() else 1.0 for d, f in zip(dist, finite)])[:, None]
    logits = np.where(finite, -dist / np.where(scale > 0, scale, 1.0), -np.inf)
    logits = np.where(finite.any(axis=1, keepdims=True), logits, 0.0)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _history_jnp(vectors, vec_mask, num_obs: int):
    """`target_history` on device: `(xy [B, H, 2], valid [B, H])`, slot k = k steps back."""
    m = vec_mask & (vectors[..., _IS_TARGET] > 0.5)
    k = jnp.rint(-vectors[..., _TIME] * num_obs).astype(jnp.int32)
    onehot = jax.nn.one_hot(k, num_obs, dtype=vectors.dtype) * m[..., None].astype(vectors.dtype)
    onehot = onehot * (k >= 1)[..., None]
    xy = jnp.einsum("bpvh,bpvc->bhc", onehot, vectors[..., 0:2])
    valid = jnp.sum(onehot, axis=(1, 2)) > 0
    return xy, valid.at[:, 0].set(True)


class HistoryLSTM(nn.Module):
    """LSTM encoder-decoder baseline (reconstruction; see the module docstring). Called like
    `VectorNet` (`vectors, vec_mask, kind`), returns the future `[B, num_future, 2]`."""

    num_obs: int
    num_future: int
    width: int = 64
    coord_scale: float = 10.0

    @nn.compact
    def __call__(self, vectors, vec_mask, kind, node_mask=None):
        del kind, node_mask
        xy, valid = _history_jnp(vectors, vec_mask, self.num_obs)
        seq = jnp.concatenate([xy / self.coord_scale, valid[..., None].astype(xy.dtype)], -1)[:, ::-1]
        carry, _ = nn.RNN(nn.OptimizedLSTMCell(self.width), return_carry=True, name="encoder")(seq)
        zeros = jnp.zeros((xy.shape[0], self.num_future, 1), xy.dtype)
        out = nn.RNN(nn.OptimizedLSTMCell(self.width), name="decoder")(zeros, initial_carry=carry)
        return jnp.cumsum(Dense(2, name="head")(out), axis=1) * self.coord_scale
