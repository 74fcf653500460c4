"""Distortion metrics, whole image or restricted to one group's pixels."""
from __future__ import annotations

import math

import numpy as np


def mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error over all channels, on ``mask`` pixels only when given (uint8 scale)."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            raise ValueError("empty mask")
        d = d[mask]
    return float(d.mean())


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, peak: float = 255.0) -> float:
    """PSNR in dB (inf for identical inputs)."""
    e = mse(a, b, mask)
    return math.inf if e == 0 else 10 * math.log10(peak * peak / e)


def bpp(num_bytes: int, pixels: int) -> float:
    return 8.0 * num_bytes / pixels


#: Scale weights of Wang, Simoncelli & Bovik, "Multi-scale structural similarity for image quality
#: assessment" (Asilomar 2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int = 11, sigma: float = 1.5):
    import torch

    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_terms(a, b, win, c1: float, c2: float):
    """Mean SSIM and mean contrast-structure term per channel (valid Gaussian filtering)."""
    import torch.nn.functional as F

    ch = a.shape[1]
    k = win.numel()
    wx = win.view(1, 1, 1, k).expand(ch, 1, 1, k)
    wy = win.view(1, 1, k, 1).expand(ch, 1, k, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, wx, groups=ch), wy, groups=ch)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return (lum * cs).mean((2, 3)), cs.mean((2, 3))


def ms_ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """MS-SSIM of two (H, W, 3) images (5 scales, 11x11 Gaussian window with sigma 1.5, K1=0.01,
    K2=0.03, 2x2 average pooling between scales; channels averaged). Needs min(H, W) >= 176."""
    import torch
    import torch.nn.functional as F

    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    win = _gaussian_window()
    if min(a.shape[:2]) < win.numel() * 2 ** (len(MS_SSIM_WEIGHTS) - 1):
        raise ValueError(f"image {a.shape[1]}x{a.shape[0]} too small for 5-scale MS-SSIM (need >= 176 px)")
    ta = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64)).permute(2, 0, 1)[None]
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    w = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64)
    vals = []
    for i in range(len(MS_SSIM_WEIGHTS)):
        ssim, cs = _ssim_terms(ta, tb, win, c1, c2)
        vals.append(ssim if i == len(MS_SSIM_WEIGHTS) - 1 else cs)
        if i < len(MS_SSIM_WEIGHTS) - 1:
            ta, tb = F.avg_pool2d(ta, 2), F.avg_pool2d(tb, 2)
    stack = torch.relu(torch.stack(vals, 0))  # (scales, 1, C)
    return float(torch.prod(stack ** w.view(-1, 1, 1), 0).mean())
