"""Group-local analysis / synthesis / hyper transforms (Feng et al., ICCV 2023).

Every stage multiplies its output by the group's support at that scale, and attention runs in
Group-Independent Swin blocks, so a group's latents are a function of its own pixels and mask only.
Hyper synthesis, context and entropy-parameter networks are :class:`ExactParamNet` so their outputs
are bit-exact across devices.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import GDN, ExactConv2d, ExactParamNet, GroupIndependentSwinBlock


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=2, padding=k // 2, output_padding=1)


def _swin_stack(dim: int, depth: int, heads: int, window: int) -> nn.ModuleList:
    return nn.ModuleList(
        GroupIndependentSwinBlock(dim, heads=heads, window=window, shifted=bool(i % 2)) for i in range(depth)
    )


def _group_ids(support: torch.Tensor) -> torch.Tensor:
    """Token group ids for a single-group crop: 1 inside the support, 0 outside."""
    return support[:, 0].long()


class AnalysisTransform(nn.Module):
    """x (B, 3, H, W) -> y (B, M, H/16, W/16); GI Swin blocks at 1/4 and 1/8."""

    def __init__(self, N: int, M: int, depth: int, heads: int, window: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([conv(3, N), conv(N, N), conv(N, N), conv(N, M)])
        self.gdns = nn.ModuleList([GDN(N) for _ in range(3)])
        self.swin = nn.ModuleDict({"2": _swin_stack(N, depth, heads, window), "3": _swin_stack(N, depth, heads, window)})

    def forward(self, x: torch.Tensor, pyr: list[torch.Tensor]) -> torch.Tensor:
        x = x * pyr[0]
        for k, conv in enumerate(self.convs, start=1):
            x = conv(x)
            if k < 4:
                x = self.gdns[k - 1](x)
            x = x * pyr[k]
            for blk in self.swin[str(k)] if str(k) in self.swin else ():
                x = blk(x, _group_ids(pyr[k]), pyr[k])
        return x


class SynthesisTransform(nn.Module):
    """y_hat (B, M, H/16, W/16) -> x_hat (B, 3, H, W); GI Swin blocks at 1/8 and 1/4."""

    def __init__(self, N: int, M: int, depth: int, heads: int, window: int) -> None:
        super().__init__()
        self.deconvs = nn.ModuleList([deconv(M, N), deconv(N, N), deconv(N, N), deconv(N, 3)])
        self.igdns = nn.ModuleList([GDN(N, inverse=True) for _ in range(3)])
        self.swin = nn.ModuleDict({"3": _swin_stack(N, depth, heads, window), "2": _swin_stack(N, depth, heads, window)})

    def forward(self, y: torch.Tensor, pyr: list[torch.Tensor]) -> torch.Tensor:
        x = y * pyr[4]
        for i, deconv in enumerate(self.deconvs):
            k = 3 - i  # output level
            x = deconv(x)
            if i < 3:
                x = self.igdns[i](x)
            x = x * pyr[k]
            for blk in self.swin[str(k)] if str(k) in self.swin else ():
                x = blk(x, _group_ids(pyr[k]), pyr[k])
        return x


class HyperAnalysis(nn.Module):
    """y (B, M, h, w) -> z (B, Nz, h/4, w/4) (encoder only, float)."""

    def __init__(self, M: int, Nz: int) -> None:
        super().__init__()
        self.c1 = conv(M, Nz, 3, 1)
        self.c2 = conv(Nz, Nz)
        self.c3 = conv(Nz, Nz)
        self.act = nn.ReLU()

    def forward(self, y: torch.Tensor, pyr: list[torch.Tensor]) -> torch.Tensor:
        z = self.act(self.c1(y)) * pyr[4]
        z = self.act(self.c2(z)) * pyr[5]
        return self.c3(z) * pyr[6]


def hyper_synthesis(M: int, Nz: int) -> ExactParamNet:
    """z_hat -> hyper features (2M channels at the y resolution), sub-pixel upsampling."""
    return ExactParamNet([
        ExactConv2d(Nz, 4 * Nz, 3), nn.PixelShuffle(2), nn.ReLU(),
        ExactConv2d(Nz, 4 * M, 3), nn.PixelShuffle(2), nn.ReLU(),
        ExactConv2d(M, 2 * M, 3),
    ])


def checkerboard_pattern(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(1, 1, h, w) bool, True on anchor positions ((i + j) even), relative to the crop origin."""
    i = torch.arange(h, device=device).view(-1, 1)
    j = torch.arange(w, device=device).view(1, -1)
    return ((i + j) % 2 == 0).view(1, 1, h, w)


def checkerboard_context(M: int, kernel: int = 5) -> ExactConv2d:
    """Context convolution of He et al. (CVPR 2021, checkerboard context model): the kernel only sees
    positions of the opposite colour, so anchors get a constant context and non-anchors see anchors."""
    d = torch.arange(kernel) - kernel // 2
    pattern = ((d.view(-1, 1) + d.view(1, -1)) % 2 != 0).float()
    return ExactConv2d(M, 2 * M, kernel, weight_mask=pattern)


def entropy_parameters(M: int, extra: int = 0) -> ExactParamNet:
    """[hyper features, ``extra`` side channels (coverage), context] (4M + extra) -> [means, scales]
    (2M), 1x1 convolutions."""
    return ExactParamNet([ExactConv2d(4 * M + extra, 3 * M, 1), nn.ReLU(), ExactConv2d(3 * M, 2 * M, 1)])
