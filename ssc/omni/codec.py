"""The Omni-ICM variant of the group-independent codec ("gi-omni"): GroupCodec with an information
filter before quantisation and a feature head after decoding (Feng et al., ECCV 2022, inside the
group-independent coding of Feng et al., ICCV 2023).

Its streams are ordinary ssc streams (same bitstream, same exact entropy path, the filtered latents
are what is coded). They decode two ways: to features for the detector the head was distilled from
(``ssc analyze --domain features``), or to pixels through the inherited synthesis transform."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..models.codec import GroupCodec
from ..models.registry import register_model
from .feature_head import FeatureHead
from .filter import InformationFilter
from .synth_head import SynthSSDHead

#: feature heads by the detector family they feed: an FPN pyramid at the image's own scale
#: (torchvision's Faster/Mask R-CNN), or an early backbone map of a fixed-input SSD (SSDLite) written
#: from the codec's own first synthesis stage
HEADS = ("fpn", "ssd-synth")


class OmniCodec(GroupCodec):
    """GroupCodec + InformationFilter (optional: ``info_filter``) + a feature head (+ a projector used
    only by the SSL loss). ``teacher_backend`` / ``teacher`` name the detector the head was distilled
    from; ``head`` is "fpn" (:class:`FeatureHead`) or "ssd-synth" (:class:`SynthSSDHead`)."""

    #: its latents also feed the feature head, which a pixel-fidelity refinement would not see
    refinable = False

    def __init__(self, teacher: str = "det-ref", feature_channels: int = 128, head_width: int = 192,
                 head_blocks: int = 2, proj_dim: int = 128, head: str = "fpn", teacher_backend: str = "torchvision",
                 info_filter: bool = True, **codec_cfg) -> None:
        super().__init__(**codec_cfg)
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        self.teacher = teacher
        self.teacher_backend = teacher_backend
        # without the filter the coded latents are the pixel codec's own: its streams, bit for bit
        self.filter = InformationFilter(self.M) if info_filter else None
        if head == "ssd-synth":
            self.feature_head: nn.Module = SynthSSDHead(self.M, self.N, head_width, head_blocks, swin=self.g_s.swin["3"])
            embed_in = head_width
        else:
            self.feature_head = FeatureHead(self.M, feature_channels, head_width, head_blocks)
            embed_in = feature_channels
        self.projector = nn.Sequential(nn.Linear(embed_in, 256), nn.GELU(), nn.Linear(256, proj_dim))

    def encode_y(self, x: torch.Tensor, pyr: list[torch.Tensor], quality: torch.Tensor) -> torch.Tensor:
        y = super().encode_y(x, pyr, quality)
        return self.filter(y, pyr[4]) if self.filter is not None else y

    def from_analysis(self, y_raw: torch.Tensor, pyr: list[torch.Tensor], quality: torch.Tensor) -> torch.Tensor:
        """:meth:`encode_y` from the analysis output before the gain (cached when the analysis is frozen)."""
        y = y_raw.float() * self._gains(quality, self.log_gain)
        return self.filter(y, pyr[4]) if self.filter is not None else y

    def dequantize(self, y_hat: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """Decoded latents back to the analysis scale (what the feature head reads)."""
        return y_hat.float() * self._gains(quality, self.log_inv_gain)

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor, quality: torch.Tensor, hard: bool = False
                         ) -> tuple["OrderedDict[str, torch.Tensor]", torch.Tensor, torch.Tensor]:
        """Training pass: (feature pyramid, bits (B,), pixels (B,))."""
        y_ste, bits_y, bits_z, pyr = self.latent_forward(x, mask, quality, hard)
        feats = self.feature_head(self.dequantize(y_ste, quality), pyr[self.feature_head.level])
        return feats, bits_y + bits_z, mask.sum((1, 2, 3))

    def embed(self, feats: "OrderedDict[str, torch.Tensor]", support: torch.Tensor) -> torch.Tensor:
        """SSL embedding: the 1/16 features averaged over the group's support, projected."""
        return self.embed_map(feats["0"], support)

    def embed_map(self, fmap: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """SSL embedding of a map on the latent grid (B, C, h, w), averaged over the support."""
        w = support / support.sum((2, 3), keepdim=True).clamp(min=1)
        return self.projector((fmap * w).sum((2, 3)))


@register_model("gi-omni")
def gi_omni(**cfg) -> OmniCodec:
    """Omni-ICM feature codec: gi-hyper-ckbd + information filter + detector feature head."""
    return OmniCodec(**cfg)
