"""Pose-head distortion for coding for machines: the distance between what a frozen BlazePose (Bazarevsky
et al., CVPR-W 2020) computes on a decoded person and on the original (end-to-end ICM, Le et al.,
ICASSP 2021), so that a codec learns what the person-mask and keypoint heads read (issue 38).

BlazePose runs as :class:`ssc.tasks.tflite_torch.TFLiteGraph`, the wheel's own ``.tflite`` graph executed
by PyTorch (the heads' inference stays on LiteRT; the two agree to 0.003 input pixels). A training
sample of the ``person`` kind (:mod:`ssc.data`) carries the square the head reads; the original group
and the decoded one, each shown over ``fill`` grey where the group holds nothing (as a persons-only
decode shows it), are cut to that square and resized to the network's 256 x 256 input, so the term
measures the coding's damage alone (what the fill costs, no codec can mend). Two terms:

- **mask:** the per-pixel binary KL of the person-mask probabilities at temperature
  ``mask_temperature`` (teacher: the original's; the network's logits reach the thousands, and at
  temperature 1 a few flipped pixels would outweigh the rest);
- **landmarks:** the distance of the 33 body landmarks in units of ``landmark_px`` input pixels,
  as ``sqrt(1 + d^2) - 1`` (quadratic when small, linear when a landmark jumps), weighted by the
  original's landmark visibility.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .task_loss import binary_kl, level_weights, section_options

INPUT = 256
BODY = 33


class _GradCap(torch.autograd.Function):
    """Identity forward; backward scales each sample's gradient down to at most ``cap[i]`` in norm."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(cap)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        (cap,) = ctx.saved_tensors
        norm = g.flatten(1).norm(dim=1).clamp(min=1e-12)
        scale = torch.clamp(cap / norm, max=1.0).view(-1, *([1] * (g.dim() - 1)))
        return g * scale, None


def cap_gradient(x: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """``x`` whose per-sample gradient is capped at ``cap`` (B,) in norm (the pose network's input
    gradients are spiky: 10 to 10,000 times the pixel term's on gi-cell-m's decodes, so uncapped they
    steer the codec towards what fools it on the training persons)."""
    return _GradCap.apply(x, cap)


@dataclass
class PoseLossOptions:
    """A codec config's ``pose`` section: a person sample's distortion is ``pixel * 255^2 * MSE + weight_q * pose``
    (other samples keep ``255^2 * MSE``)."""

    #: the pose term's weight, one for all quality levels or one per level
    weight: float | list[float] = 1.0
    #: the pixel term's share on person samples
    pixel: float = 0.5
    #: weight of the landmark term against the mask term
    landmarks: float = 1.0
    #: the landmark distance's unit, in input pixels
    landmark_px: float = 8.0
    #: the mask logits' temperature in the KL
    mask_temperature: float = 8.0
    #: the pose term's gradient on a decoded group is capped at this multiple of the pixel term's
    #: (0: no cap)
    grad_cap: float = 0.0
    #: the grey shown where a group decoded nothing, in [0, 1]
    fill: float = 0.5

    @classmethod
    def from_config(cls, raw: dict | None) -> "PoseLossOptions | None":
        opts = section_options(cls, raw, "pose")
        if opts is None:
            return None
        if opts.grad_cap < 0:
            raise ValueError(f"pose.grad_cap must be >= 0, got {opts.grad_cap}")
        if opts.mask_temperature <= 0 or opts.landmark_px <= 0:
            raise ValueError("pose.mask_temperature and pose.landmark_px must be positive")
        if not 0.0 <= opts.fill <= 1.0:
            raise ValueError(f"pose.fill must lie in [0, 1], got {opts.fill}")
        return opts

    def level_weights(self, num_qualities: int) -> torch.Tensor:
        """(num_qualities,) the pose term's weight per quality level."""
        return level_weights(self, num_qualities, "pose")


def cut_squares(x: torch.Tensor, squares: torch.Tensor) -> torch.Tensor:
    """(N, 3, 256, 256) the squares (left, top, side) of images ``x`` (N, 3, H, W), resized bilinearly
    (antialiased when shrunk, as PIL's bilinear filter is)."""
    out = []
    for img, (left, top, side) in zip(x, squares.tolist()):
        sq = img[:, top:top + side, left:left + side].unsqueeze(0)
        out.append(F.interpolate(sq, (INPUT, INPUT), mode="bilinear", align_corners=False, antialias=side > INPUT))
    return torch.cat(out)


class PoseDistortion(torch.nn.Module):
    """``forward(x, x_hat, mask, squares) -> (B,)``: pose distortion of decoded groups ``x_hat`` (zero
    outside ``mask``) against originals ``x`` (both (B, 3, H, W) in [0, 1]) on the squares (B, 3); zero
    for samples whose square is -1. BlazePose is frozen; gradients reach ``x_hat`` only."""

    def __init__(self, opts: PoseLossOptions, device: str | torch.device = "cpu") -> None:
        super().__init__()
        from .tasks.blazepose import POSE_MODEL, mediapipe_file
        from .tasks.tflite_torch import TFLiteGraph

        self.opts = opts
        self.net = TFLiteGraph(mediapipe_file(POSE_MODEL)).to(device).eval()

    def _heads(self, sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(sq.permute(0, 2, 3, 1).float())
        return out["Identity_2"][..., 0], out["Identity"].reshape(-1, 39, 5)[:, :BODY]

    def heads(self, x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor, squares: torch.Tensor,
              cap: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """(indices of the samples with a square, the original groups' (mask logits, landmarks), the
        decoded groups' (mask logits, landmarks)), each group over grey; ``cap`` (B,): the largest
        gradient norm that may reach each decoded group. The original's outputs carry no gradient."""
        has = (squares[:, 2] > 0).nonzero().flatten()
        sq = squares[has].cpu()
        m = mask[has]
        xh = x_hat[has] if cap is None else cap_gradient(x_hat[has], cap[has])
        with torch.no_grad():
            teacher = self._heads(cut_squares(x[has] * m + self.opts.fill * (1 - m), sq))
        student = self._heads(cut_squares(xh * m + self.opts.fill * (1 - m), sq))
        return has, teacher, student

    def term(self, teacher: tuple[torch.Tensor, ...], student: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Per sample, the mask KL plus ``landmarks`` x the landmark distance (see the module docstring)."""
        (t_logit, t_lm), (s_logit, s_lm) = teacher, student
        pt = torch.sigmoid(t_logit / self.opts.mask_temperature)
        vis = torch.sigmoid(t_lm[..., 3])
        kl = binary_kl(s_logit / self.opts.mask_temperature, pt).mean((1, 2))
        d2 = ((s_lm[..., :2] - t_lm[..., :2]) ** 2).sum(-1) / self.opts.landmark_px ** 2
        lm = (((1 + d2).sqrt() - 1) * vis).sum(1) / vis.sum(1).clamp(min=1e-6)
        return kl + self.opts.landmarks * lm

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor, squares: torch.Tensor,
                cap: torch.Tensor | None = None) -> torch.Tensor:
        """``cap`` (B,): the largest gradient norm the term may send to each decoded group."""
        out = x.new_zeros(x.shape[0], dtype=torch.float32)
        if not bool((squares[:, 2] > 0).any()):
            return out
        has, teacher, student = self.heads(x, x_hat, mask, squares, cap)
        return out.index_put((has,), self.term(teacher, student).float())
