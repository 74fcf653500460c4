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


class OmniCodec(GroupCodec):
    """GroupCodec + InformationFilter + FeatureHead (+ a projector used only by the SSL loss)."""

    def __init__(self, teacher: str = "det-ref", feature_channels: int = 128, head_width: int = 192,
                 head_blocks: int = 2, proj_dim: int = 128, **codec_cfg) -> None:
        super().__init__(**codec_cfg)
        self.teacher = teacher
        self.filter = InformationFilter(self.M)
        self.feature_head = FeatureHead(self.M, feature_channels, head_width, head_blocks)
        self.projector = nn.Sequential(nn.Linear(feature_channels, 256), nn.GELU(), nn.Linear(256, proj_dim))

    def encode_y(self, x: torch.Tensor, pyr: list[torch.Tensor], quality: torch.Tensor) -> torch.Tensor:
        return self.filter(super().encode_y(x, pyr, quality), pyr[4])

    def dequantize(self, y_hat: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """Decoded latents back to the analysis scale (what the feature head reads)."""
        return y_hat.float() * self._gains(quality, self.log_inv_gain)

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor, quality: torch.Tensor, hard: bool = False
                         ) -> tuple["OrderedDict[str, torch.Tensor]", torch.Tensor, torch.Tensor]:
        """Training pass: (feature pyramid, bits (B,), pixels (B,))."""
        y_ste, bits_y, bits_z, pyr = self.latent_forward(x, mask, quality, hard)
        feats = self.feature_head(self.dequantize(y_ste, quality), pyr[4])
        return feats, bits_y + bits_z, mask.sum((1, 2, 3))

    def embed(self, feats: "OrderedDict[str, torch.Tensor]", support: torch.Tensor) -> torch.Tensor:
        """SSL embedding: the 1/16 features averaged over the group's support, projected."""
        w = support / support.sum((2, 3), keepdim=True).clamp(min=1)
        return self.projector((feats["0"] * w).sum((2, 3)))


@register_model("gi-omni")
def gi_omni(**cfg) -> OmniCodec:
    """Omni-ICM feature codec: gi-hyper-ckbd + information filter + detector feature head."""
    return OmniCodec(**cfg)
