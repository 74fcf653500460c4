"""SSDLite-MobileNetV2 (Sandler et al., CVPR 2018, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", section 6.2) as laid out by the TensorFlow Object Detection API: the MobileNetV2
feature extractor (depth multiplier 1), the SSDLite extra layers (1x1 then depthwise-separable 3x3
stride 2) and one depthwise-separable box predictor per feature map (Liu et al., ECCV 2016, SSD).

Convolutions pad as TensorFlow's ``SAME`` does: the odd pixel goes after (bottom/right), which differs
from PyTorch's symmetric padding at stride 2. Batch normalisation is folded into the convolutions by
:mod:`.convert`, so every layer here is a convolution with a bias.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: (expansion, output channels, repeats, first stride) of MobileNetV2's inverted residual stages.
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
#: SSDLite extra layers: (1x1 channels, 3x3 stride-2 output channels), TF names layer_19_{1,2}_Conv2d_{2..5}.
EXTRA_LAYERS = [(256, 512), (128, 256), (128, 256), (64, 128)]
#: The first block of the backbone's tail: the first box predictor reads its expansion.
TAIL_START = 13
#: Channels of the six feature maps the box predictors read.
FEATURE_CHANNELS = [576, 1280, 512, 256, 256, 128]


def same_padding(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) of one spatial axis."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Conv2d):
    """Conv2d (bias on, BN folded) with TensorFlow SAME padding, optionally followed by ReLU6."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, relu6: bool = True) -> None:
        super().__init__(cin, cout, k, stride=stride, groups=groups, bias=True)
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        pad: tuple[int, int] = (0, 0)
        if k > 1:
            ph, pw = same_padding(x.shape[-2], k, s), same_padding(x.shape[-1], k, s)
            if ph[0] == ph[1] and pw[0] == pw[1]:
                pad = (ph[0], pw[0])  # symmetric: the convolution pads by itself
            else:
                x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        x = F.conv2d(x, self.weight, self.bias, self.stride, pad, 1, self.groups)
        return F.relu6(x, inplace=True) if self.relu6 else x


class InvertedResidual(nn.Module):
    """expand (1x1, ReLU6; absent when the expansion is 1), depthwise 3x3 (ReLU6), linear projection,
    residual when shapes allow. ``expanded`` keeps the expansion output (SSD reads block 13's)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = SameConv(cin, hidden) if expansion != 1 else None
        self.depthwise = SameConv(hidden, hidden, 3, stride, groups=hidden)
        self.project = SameConv(hidden, cout, relu6=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(e))
        return (x + y if self.residual else y), e


class SeparablePredictor(nn.Module):
    """SSDLite box predictor head: depthwise 3x3 (ReLU6) then a 1x1 convolution with bias."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = SameConv(cin, cin, 3, groups=cin)
        self.pointwise = SameConv(cin, cout, relu6=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SSDLiteMobileNetV2(nn.Module):
    """Image in [-1, 1] (B, 3, H, W) -> six feature maps, box encodings (B, A, 4) and class logits
    (B, A, num_classes + 1) over the A anchors, ordered as the TF graph orders them (feature map,
    row, column, anchor)."""

    def __init__(self, num_classes: int = 1, anchors_per_location: tuple[int, ...] = (3, 6, 6, 6, 6, 6)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.anchors_per_location = anchors_per_location
        self.stem = SameConv(3, 32, 3, 2)
        blocks, cin = [], 32
        for t, c, n, s in MOBILENET_V2:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.ModuleList(blocks)
        self.head = SameConv(cin, 1280)  # TF: Conv_1
        extras, cin = [], 1280
        for mid, out in EXTRA_LAYERS:
            extras.append(nn.Sequential(SameConv(cin, mid), SameConv(mid, mid, 3, 2, groups=mid), SameConv(mid, out)))
            cin = out
        self.extras = nn.ModuleList(extras)
        self.box_heads = nn.ModuleList(SeparablePredictor(c, a * 4) for c, a in zip(FEATURE_CHANNELS, anchors_per_location))
        self.cls_heads = nn.ModuleList(
            SeparablePredictor(c, a * (num_classes + 1)) for c, a in zip(FEATURE_CHANNELS, anchors_per_location))

    def trunk(self, x: torch.Tensor, stop: int = TAIL_START) -> torch.Tensor:
        """MobileNetV2 up to block ``stop - 1``: its output, the input of block ``stop``. The default is
        block 12's output (96 channels, stride 16), the input of the block whose expansion the first
        box predictor reads; ``stop=6`` gives block 5's (32 channels, stride 8)."""
        if not 0 < stop <= TAIL_START:
            raise ValueError(f"the trunk stops after one of blocks 0 to {TAIL_START - 1}, got stop={stop}")
        x = self.stem(x)
        for blk in self.blocks[:stop]:
            x = blk(x)[0]
        return x

    def tail_maps(self, x: torch.Tensor, start: int = TAIL_START) -> list[torch.Tensor]:
        """Blocks ``start`` to 16 and Conv_1 on the input of block ``start`` (by default block 12's
        output): the two maps the box predictors read from the backbone, block 13's expansion (stride
        16, 576 channels) and Conv_1 (stride 32, 1280 channels), both after ReLU6."""
        if not 0 < start <= TAIL_START:
            raise ValueError(f"the tail starts at one of blocks 1 to {TAIL_START}, got start={start}")
        feats = []
        for i, blk in enumerate(self.blocks[start:], start):
            x, e = blk(x)
            if i == TAIL_START:
                feats.append(e)
        feats.append(self.head(x))
        return feats

    def backbone_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The two backbone maps the box predictors read (:meth:`tail_maps` of :meth:`trunk`)."""
        return self.tail_maps(self.trunk(x))

    def extra_maps(self, conv1: torch.Tensor) -> list[torch.Tensor]:
        """The four SSDLite extra maps, computed from Conv_1."""
        out, x = [], conv1
        for ex in self.extras:
            x = ex(x)
            out.append(x)
        return out

    def with_extras(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """The six feature maps from the two backbone maps: those two, then the four extras."""
        return [*maps, *self.extra_maps(maps[1])]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six feature maps: block 13's expansion (stride 16), Conv_1 (stride 32), four extras."""
        return self.with_extras(self.backbone_maps(x))

    def predict_heads(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Box predictors on the feature maps: (box encodings (B, A, 4), logits (B, A, C + 1))."""
        boxes, logits = [], []
        for f, bh, ch in zip(feats, self.box_heads, self.cls_heads):
            b = f.shape[0]
            boxes.append(bh(f).permute(0, 2, 3, 1).reshape(b, -1, 4))
            logits.append(ch(f).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes + 1))
        return torch.cat(boxes, 1), torch.cat(logits, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predict_heads(self.features(x))
