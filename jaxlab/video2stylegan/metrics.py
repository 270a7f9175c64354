"""Reconstruction and temporal metrics of encoded videos (NumPy).

    MSE      mean over pixels and channels of (x̂ − x)², images in [−1, 1]
    SSIM     scikit-image's default: 7x7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03,
             mean over the window-valid pixels and over channels (data range 2 for [−1, 1])
    flicker  mean over t ≥ 1 and pixels of ((x̂_t − x̂_{t−1}) − (x_t − x_{t−1}))²: the frame-to-frame
             change of the reconstruction that the input does not have
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

__all__ = ["mse", "ssim", "flicker"]


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
