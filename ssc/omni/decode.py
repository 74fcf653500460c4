"""Feature-domain decoding (Omni-ICM path): the selected groups' latents -> the detector's feature
pyramid, with no pixel synthesis. Reads exactly what a pixel decode of those groups reads."""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..decode import codec_for_stream, decode_groups, select_groups
from ..bitstream import StreamHeader, StreamReader
from ..bitstream.format import DEFAULT_MAX_PIXELS, quality_value
from ..errors import BitstreamError, SSCError, WeightsError
from ..models.layers import support_pyramid
from ..models.zoo import LoadedCodec


@dataclass
class FeatureDecodeResult:
    features: "OrderedDict[str, torch.Tensor]"  # detector pyramid at the image's own scale
    group_map: np.ndarray  # (H, W) ids of the groups whose masks were read, -1 elsewhere
    header: StreamHeader
    decoded: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    bytes_read: int = 0
    seconds: float = 0.0


def require_feature_codec(codec: LoadedCodec) -> None:
    if not hasattr(codec.model, "feature_head"):
        raise WeightsError(f"model {codec.card.name} has no feature head: feature-domain decoding needs a stream "
                           f"coded with an Omni model (e.g. ssc encode --model gi-omni-person)")


@torch.no_grad()
def decode_features(source: bytes | str | Path, codec: LoadedCodec | None = None, groups: Iterable[int] | None = None,
                    classes: Iterable[str] | None = None, device: str = "cpu",
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> FeatureDecodeResult:
    """Decode the selected groups (all by default) to the feature pyramid of the detector the
    codec's feature head was distilled from (``codec.model.teacher``)."""
    t0 = time.perf_counter()
    with StreamReader(source, max_pixels=max_pixels) as rd:
        hdr = rd.header
        chosen = select_groups(hdr, groups, classes)
        codec = codec_for_stream(hdr, codec, device)
        require_feature_codec(codec)
        model = codec.model
        head = model.feature_head
        level = head.level  # the support-pyramid level of the head's per-group grid
        parts: list[tuple[torch.Tensor, torch.Tensor, int, int]] = []

        def collect(e, sel, tiles) -> None:
            if e.scale:  # fails this group only: its latents are at 1/2**scale of the grid the head composes
                raise SSCError(f"coded at 1/{1 << e.scale} size; the feature path reads full-size groups only")
            q = torch.tensor([quality_value(e.quality)])
            mine = []
            for (tx, ty, _, _), m, y_hat in tiles:
                support = support_pyramid(m, 4)[level]
                f0 = head.level0(model.dequantize(y_hat, q), support)
                if not torch.isfinite(f0).all():  # only forged latents (valid CRC, absurd values) get here
                    raise BitstreamError("segment decodes to non-finite features (corrupt or forged)")
                mine.append((f0, support, tx, ty))
            parts.extend(mine)  # a group contributes only when all its tiles decode

        decoded, failed, labels = decode_groups(rd, codec, chosen, collect)
        if not parts:
            raise BitstreamError("no selected group could be decoded: " + ("; ".join(failed.values()) or "none selected"))
        feats = head.compose(hdr.height, hdr.width, parts)
        res = FeatureDecodeResult(feats, labels, hdr, decoded, failed, rd.bytes_read)
    res.seconds = time.perf_counter() - t0
    return res

