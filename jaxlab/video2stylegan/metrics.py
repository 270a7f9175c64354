"""Reconstruction and temporal metrics of encoded videos (NumPy).

    MSE      mean over pixels and channels of (x̂ − x)², images in [−1, 1]
    SSIM     scikit-image's default: 7x7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03,
             mean over the window-valid pixels and over channels (data range 2 for [−1, 1])
    flicker  mean over t ≥ 1 and pixels of ((x̂_t − x̂_{t−1}) − (x_t − x_{t−1}))²: the frame-to-frame
             change of the reconstruction that the input does not have
    NME      landmark error normalised by the inter-ocular distance: per frame,
             mean_k ‖ℓ̂_k − ℓ_k‖ / ‖ℓ_eye_r_outer − ℓ_eye_l_outer‖ (the outer eye corners of the
             face model's ground truth, `faces.LANDMARK_NAMES`, as in 300-W's inter-ocular
             normalisation), then the mean over frames
    identity similarity
             mean over frames of cos(e(x̂_t), e(x_t)), e = the `proc_id` embedding
    pair AUC the probability that a same-identity pair has a higher cosine than a
             different-identity pair (ties count 1/2), over all pairs of a set of embeddings
    FD       Fréchet distance of Gaussians fitted to two sets of features:
             ‖μ_a − μ_b‖² + tr Σ_a + tr Σ_b − 2 tr (Σ_a^½ Σ_b Σ_a^½)^½; under the self-trained
             `proc_3dmm` + `proc_id` features (`auxnets.AuxNets.features`) it is "FD-proc", not FID
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.stats import rankdata

from jaxlab.video2stylegan.faces import LANDMARK_NAMES

__all__ = ["mse", "ssim", "flicker", "video_metrics", "landmark_nme", "identity_similarity", "pair_auc",
           "frechet_distance", "EYE_OUTER"]

EYE_OUTER = (LANDMARK_NAMES.index("eye_r_outer"), LANDMARK_NAMES.index("eye_l_outer"))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def _ssim_channel(x: np.ndarray, y: np.ndarray, data_range: float, win: int) -> float:
    k1, k2 = 0.01, 0.03
    n = win * win
    cov = n / (n - 1)
    ux, uy = uniform_filter(x, win), uniform_filter(y, win)
    uxx, uyy, uxy = uniform_filter(x * x, win), uniform_filter(y * y, win), uniform_filter(x * y, win)
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    p = (win - 1) // 2
    return float(s[p:-p, p:-p].mean())


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 2.0, win: int = 7) -> float:
    """Mean SSIM of images `[..., H, W, C]` (averaged over leading axes and channels)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a2, b2 = a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:])
    vals = [_ssim_channel(x[..., c], y[..., c], data_range, win) for x, y in zip(a2, b2) for c in range(a.shape[-1])]
    return float(np.mean(vals))


def flicker(recon: np.ndarray, frames: np.ndarray) -> float:
    """Temporal flicker of `recon [T, H, W, C]` against `frames [T, H, W, C]` (T >= 2)."""
    d = np.diff(np.asarray(recon, np.float64), axis=0) - np.diff(np.asarray(frames, np.float64), axis=0)
    return float(np.mean(d ** 2))


def video_metrics(frames: np.ndarray, encoded: dict, reuse_start: int) -> dict:
    """Per encoding mode of `encoded` (`{mode: (ws, reconstruction)}`): MSE, SSIM and flicker against
    `frames`, and the largest change of the fine W+ entries (`reuse_start` on) from the first frame."""
    return {name: {"mse": mse(rec, frames), "ssim": ssim(rec, frames), "flicker": flicker(rec, frames),
                   "fine_latent_max_change": float(np.abs(ws[:, reuse_start:] - ws[:1, reuse_start:]).max())}
            for name, (ws, rec) in encoded.items()}


def landmark_nme(pred: np.ndarray, target: np.ndarray, eyes: tuple[int, int] = EYE_OUTER) -> float:
    """Mean NME of landmarks `pred`, `target` `[..., K, 2]`, each frame's error divided by the
    distance between its target landmarks `eyes` (by default the outer eye corners)."""
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if p.shape != t.shape or p.shape[-1] != 2:
        raise ValueError(f"landmarks must be [..., K, 2] of one shape, got {p.shape} and {t.shape}")
    iod = np.linalg.norm(t[..., eyes[0], :] - t[..., eyes[1], :], axis=-1)
    return float(np.mean(np.linalg.norm(p - t, axis=-1).mean(-1) / iod))


def identity_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of paired embeddings `a`, `b` `[N, D]` (normalised here)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return float(np.mean(np.sum(a * b, -1)))


def pair_auc(emb: np.ndarray, labels: np.ndarray) -> float:
    """Pair AUC of embeddings `emb [N, D]` with identity `labels [N]`: over all pairs i < j,
    P(cos of a same-identity pair > cos of a different-identity pair), ties 1/2 (Mann-Whitney U)."""
    e = np.asarray(emb, np.float64)
    e = e / np.linalg.norm(e, axis=-1, keepdims=True)
    i, j = np.triu_indices(len(e), 1)
    sim = np.sum(e[i] * e[j], -1)
    same = np.asarray(labels)[i] == np.asarray(labels)[j]
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    if not n_pos or not n_neg:
        raise ValueError("pair_auc needs both same- and different-identity pairs")
    ranks = rankdata(sim)
    return float((ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to features `a [N, D]` and `b [M, D]` (sample
    means and covariances, float64). The matrix square root is taken of the symmetric
    Σ_a^½ Σ_b Σ_a^½, whose trace root equals tr (Σ_a Σ_b)^½, by eigendecomposition."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"features must be [N, D] and [M, D] with N, M >= 2, got {a.shape} and {b.shape}")
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(ca)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root_a @ cb @ root_a
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)))
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca) + np.trace(cb) - 2 * cross)
