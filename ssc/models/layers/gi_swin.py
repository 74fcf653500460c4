"""Group-Independent Swin block (Feng et al., ICCV 2023, "Semantically Structured Image Compression
via Irregular Group-Based Decoupling").

Windowed self-attention (Liu et al., Swin, ICCV 2021) in which a token may only attend to tokens of
its own group. The attention mask is built per image, shape (B * nW, N, N): timm's Swin shares one
shift mask across the batch, which cannot express groups that differ from image to image. Shifted
windows keep Swin's region separation, so tokens that wrapped around the border never meet.
Padding tokens get group id -1 and attend only to each other.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _regions(hp: int, wp: int, ws: int, shift: int, device: torch.device) -> torch.Tensor:
    """Swin shift regions in rolled coordinates, (hp, wp) ints in [0, 9)."""
    reg = torch.zeros(hp, wp, dtype=torch.long, device=device)
    if shift == 0:
        return reg
    cnt = 0
    for hs in (slice(0, hp - ws), slice(hp - ws, hp - shift), slice(hp - shift, hp)):
        for wsl in (slice(0, wp - ws), slice(wp - ws, wp - shift), slice(wp - shift, wp)):
            reg[hs, wsl] = cnt
            cnt += 1
    return reg


def _to_windows(t: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, ...) -> (B * nW, ws * ws, ...)."""
    b, h, w = t.shape[:3]
    rest = t.shape[3:]
    t = t.reshape(b, h // ws, ws, w // ws, ws, *rest)
    t = t.transpose(2, 3)
    return t.reshape(b * (h // ws) * (w // ws), ws * ws, *rest)


def _from_windows(t: torch.Tensor, ws: int, b: int, h: int, w: int) -> torch.Tensor:
    rest = t.shape[2:]
    t = t.reshape(b, h // ws, w // ws, ws, ws, *rest).transpose(2, 3)
    return t.reshape(b, h, w, *rest)


def group_window_attention_mask(group_ids: torch.Tensor, window: int, shift: int = 0) -> torch.Tensor:
    """Boolean mask (B * nW, N, N), True where attention is allowed: same group id and, for shifted
    windows, same Swin shift region. ``group_ids`` is (B, H, W) with H, W multiples of ``window``
    (already rolled when shifted)."""
    b, h, w = group_ids.shape
    reg = _regions(h, w, window, shift, group_ids.device)
    key = (group_ids + 1) * 9 + reg.unsqueeze(0)
    kw = _to_windows(key, window)  # (B*nW, N)
    return kw.unsqueeze(2) == kw.unsqueeze(1)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.heads = heads
        self.window = window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.rel_bias, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("rel_index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.rel_bias[self.rel_index.reshape(-1)].reshape(n, n, self.heads).permute(2, 0, 1)
        # one masked attention over every window: a window inside one group gets exactly the bias,
        # a mixed one also -inf between groups (no gather/scatter of window subsets, cheap backward)
        mask = bias.unsqueeze(0).masked_fill(~allowed.unsqueeze(1), float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class GroupIndependentSwinBlock(nn.Module):
    """Pre-norm Swin block on (B, C, H, W) features; attention restricted to same-group tokens and the
    output zeroed outside ``support`` so no information leaks into other groups' positions."""

    def __init__(self, dim: int, heads: int = 4, window: int = 8, shifted: bool = False, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.window = window
        self.shift = window // 2 if shifted else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, group_ids: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """``group_ids`` (B, H, W) long; ``support`` (B, 1, H, W) in {0, 1}."""
        b, c, h, w = x.shape
        ws = self.window
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        t = x.permute(0, 2, 3, 1)
        g = group_ids
        if (hp, wp) != (h, w):
            t = F.pad(t, (0, 0, 0, wp - w, 0, hp - h))
            g = F.pad(g, (0, wp - w, 0, hp - h), value=-1)
        if self.shift:
            t = torch.roll(t, (-self.shift, -self.shift), (1, 2))
            g = torch.roll(g, (-self.shift, -self.shift), (1, 2))
        allowed = group_window_attention_mask(g, ws, self.shift)
        a = self.attn(_to_windows(self.norm1(t), ws), allowed)
        a = _from_windows(a, ws, b, hp, wp)
        if self.shift:
            a = torch.roll(a, (self.shift, self.shift), (1, 2))
        t = x.permute(0, 2, 3, 1) + a[:, :h, :w]
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2) * support
