"""Task distortion for coding for machines: the distance between what a frozen detector computes on
the decoded image and on the original (end-to-end ICM, Le et al., ICASSP 2021; LSMnet, Fischer et
al., 2021), here for the pretrained SSDLite person detector (:mod:`ssc.tasks.ssdlite`).

The detector sees a squashed 300x300 view of a whole image, so a 640x480 photo reaches it at about
half size. A training crop is therefore shrunk to ``tile`` pixels (150: 0.59x a 256 crop) and
``(300 // tile)**2`` crops share one 300x300 view (a mosaic), which is also one detector pass for
the whole batch. Two terms, both per crop (its tile of the view):

- **features:** the squared error of the two backbone maps the box predictors read (block 13's
  expansion, Conv_1), normalised by the original's energy in the tile;
- **outputs:** the binary KL of the per-anchor person probabilities on the two backbone maps' 1,683
  anchors (each belongs to the tile its centre lies in; the extra maps' anchors span several crops) plus the box encodings' smooth-L1 weighted by the original's person
  probability, as the Omni feature codec is distilled (:func:`ssc.omni.train_ssd.output_distill`).

The attribution to crops is approximate: the detector's receptive field crosses tile borders, so a
crop's damage also moves its neighbours' maps (on noise crops, a neighbour gets up to a third of
it). One view per crop would avoid that at four detector passes per batch of four.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: the detector's square input, in pixels
VIEW = 300


@dataclass
class TaskLossOptions:
    """A codec config's ``task`` section: ``loss = bpp + lambda_q * (pixel * 255^2 * MSE + weight * task)``."""

    detector: str = "ssdlite-person"
    #: the task term's weight, one for all quality levels or one per level (calibrated so that at
    #: the start the task term stands in for the pixel term's removed share at every level)
    weight: float | list[float] = 1.0
    #: the pixel term's share: decodes stay recognisable to a person
    pixel: float = 0.25
    #: pixels a crop occupies in the detector's view
    tile: int = 150
    #: weight of the output term (KL and boxes) against the feature term
    outputs: float = 1.0
    #: extra weight of the anchors the original believes hold a person (see :func:`focus_weights`)
    focus: float = 20.0

    @classmethod
    def from_config(cls, raw: dict | None) -> "TaskLossOptions | None":
        opts = section_options(cls, raw, "task")
        if opts is None:
            return None
        if opts.detector != "ssdlite-person":
            raise ValueError(f"task.detector: only 'ssdlite-person' can train a codec, got {opts.detector!r}")
        if not 32 <= opts.tile <= VIEW:
            raise ValueError(f"task.tile must lie in [32, {VIEW}], got {opts.tile}")
        return opts


def section_options(cls, raw: dict | None, section: str):
    """A config section's options dataclass ``cls`` from ``raw`` (None when absent): unknown keys and
    an empty ``weight`` list are refused by name."""
    if not raw:
        return None
    unknown = set(raw) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown {section} options {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
    opts = cls(**raw)
    if isinstance(opts.weight, list) and not opts.weight:
        raise ValueError(f"{section}.weight: an empty list")
    return opts


def level_weights(opts, num_qualities: int, section: str = "task") -> torch.Tensor:
    """(num_qualities,) a config section's term weight per quality level (``opts.weight``: one value
    for every level or one per level)."""
    w = opts.weight if isinstance(opts.weight, list) else [opts.weight] * num_qualities
    if len(w) != num_qualities:
        raise ValueError(f"{section}.weight has {len(w)} values for {num_qualities} quality levels")
    return torch.tensor(w, dtype=torch.float32)


def binary_kl(logits: torch.Tensor, pt: torch.Tensor) -> torch.Tensor:
    """Per-anchor binary KL(teacher || student) of person probabilities (``logits`` the student's,
    ``pt`` the teacher's, same shape): BCE(s; t) - H(t)."""
    return (F.binary_cross_entropy_with_logits(logits, pt, reduction="none")
            - F.binary_cross_entropy(pt, pt, reduction="none"))


def focus_weights(logits: torch.Tensor, pt: torch.Tensor, focus: float) -> torch.Tensor:
    """Per-anchor weights ``1 + focus * max(p_t, p_s)`` (constants of the step): of the detector's
    anchors a handful hold a person, and unweighted the easy background ones would set a KL term."""
    return 1 + focus * torch.maximum(pt, torch.sigmoid(logits.detach()))


class DetectorDistortion(torch.nn.Module):
    """``forward(x, x_hat) -> (B,)`` task distortion of decoded crops ``x_hat`` against originals
    ``x`` (both (B, 3, H, W) in [0, 1]). The detector is frozen; gradients reach ``x_hat`` only."""

    def __init__(self, opts: TaskLossOptions, device: str | torch.device = "cpu") -> None:
        super().__init__()
        from .tasks.ssdlite.anchors import grid_anchors
        from .tasks.ssdlite.detector import SSDLitePerson

        self.opts = opts
        self.det = SSDLitePerson(device)
        self.det.net.requires_grad_(False).eval()
        self.k = VIEW // opts.tile
        grids = [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
        a = grid_anchors(grids, self.det.spec)
        centre = torch.stack([(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2], 1)
        tiles = self._tile_of(centre * VIEW)
        # the four extra maps' anchors (half the view and more) see several crops at once: no tile owns them
        local = sum(h * w * n for (h, w), n in zip(grids[:2], self.det.spec.per_location()[:2]))
        tiles[local:] = self.k * self.k
        self.register_buffer("anchor_tile", tiles, persistent=False)
        self.cell_tiles = {s: self._tile_of((torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij"), -1)
                                             .reshape(-1, 2).float() + 0.5) * VIEW / n) for s, n in ((16, 19), (32, 10))}

    def _tile_of(self, yx: torch.Tensor) -> torch.Tensor:
        """Tile index (row-major; k*k for outside every tile) of view positions ``yx`` (N, 2) in pixels."""
        t = self.opts.tile
        r, c = (yx[:, 0] // t).long(), (yx[:, 1] // t).long()
        inside = (r < self.k) & (c < self.k)
        return torch.where(inside, r * self.k + c, torch.full_like(r, self.k * self.k))

    def mosaic(self, x: torch.Tensor) -> torch.Tensor:
        """(ceil(B / k^2), 3, 300, 300) views in [-1, 1]: each crop shrunk to ``tile`` px (antialiased),
        k x k per view, grey elsewhere."""
        b, t, k = x.shape[0], self.opts.tile, self.k
        small = F.interpolate(x.float(), (t, t), mode="bilinear", align_corners=False, antialias=True)
        n = -(-b // (k * k))
        view = x.new_full((n, 3, VIEW, VIEW), 0.5, dtype=torch.float32)
        for i in range(b):
            v, j = divmod(i, k * k)
            r, c = divmod(j, k)
            view[v, :, r * t:(r + 1) * t, c * t:(c + 1) * t] = small[i]
        return (view * 2 - 1).contiguous(memory_format=torch.channels_last)

    def _maps(self, view: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        net = self.det.net
        maps = net.backbone_maps(view)
        enc, logits = net.predict_heads(net.with_extras(maps))
        return maps, enc, logits[..., 1]

    def _per_tile(self, v: torch.Tensor, tiles: torch.Tensor, b: int) -> torch.Tensor:
        """(B,) sums of ``v`` (n_views, L) over the positions of each crop's tile."""
        k2 = self.k * self.k
        out = v.new_zeros(v.shape[0], k2 + 1).index_add_(1, tiles.to(v.device), v)[:, :k2]
        return out.reshape(-1)[:b]

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        with torch.no_grad():
            t_maps, t_enc, t_log = self._maps(self.mosaic(x))
            pt = torch.sigmoid(t_log)
        s_maps, s_enc, s_log = self._maps(self.mosaic(x_hat))
        feat = 0
        for s, tm, sm in zip((16, 32), t_maps, s_maps):
            tiles = self.cell_tiles[s]
            err = self._per_tile(((sm - tm) ** 2).mean(1).flatten(1), tiles, b)
            energy = self._per_tile((tm ** 2).mean(1).flatten(1), tiles, b)
            feat = feat + err / energy.clamp(min=1e-6) / 2
        kl = self._per_tile(binary_kl(s_log, pt) * focus_weights(s_log, pt, self.opts.focus), self.anchor_tile, b)
        box = self._per_tile(F.smooth_l1_loss(s_enc, t_enc, reduction="none").sum(-1) * pt, self.anchor_tile, b)
        norm = self._per_tile(torch.ones_like(pt), self.anchor_tile, b).clamp(min=1)
        return feat + self.opts.outputs * (kl + box) / norm * 100
