"""Rate control for SSVC streams: one qp per (frame, track) from a target bitrate, per-group quality and
the frames' temporal role.

- Per-group quality (ROI): object tracks use the frame qp, the complement (background) track the frame
  qp + ``roi_offset`` (the ROI-lambda idea of per-region quality, applied to whole groups).
- Temporal dependency: intra entries are referenced by every later frame of their GOP, so they get
  ``intra_offset`` (negative: finer); the last frame before an I-frame is referenced by nothing, so it
  gets ``nonref_offset`` (positive: coarser) -- the fixed-offset form of the qp cascades of H.264 / HEVC
  reference encoders.
- Bitrate: with ``target_kbps`` the frame qp follows the level of a virtual buffer whose size is one
  GOP's budget (a proportional controller in the log-rate domain, in the spirit of the TM5 / JM buffer
  models): ``qp = base + gain * log2((gop_budget + spent - expected) / gop_budget)`` (the buffer level
  floored at 1/8 of a GOP) clipped to [qp_min, qp_max], and ``base`` itself moves by the GOP's rate
  error at every I-frame. The level is the absolute excess, so an early overshoot keeps pushing the qp
  until it is paid back. Without a target the qp is constant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .transform import MAX_QP


@dataclass
class RateControl:
    qp: int = 30
    roi_offset: int = 6
    intra_offset: int = -2
    nonref_offset: int = 2
    target_kbps: float | None = None
    gain: float = 6.0
    qp_min: int = 10
    qp_max: int = MAX_QP
    _base: float = field(default=0.0, init=False)
    _spent: float = field(default=0.0, init=False)
    _expected: float = field(default=0.0, init=False)
    _gop_spent: float = field(default=0.0, init=False)
    _gop_expected: float = field(default=0.0, init=False)
    _frame_qp: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.qp <= MAX_QP:
            raise ValueError(f"qp {self.qp} outside [0, {MAX_QP}]")
        if self.target_kbps is not None and self.target_kbps <= 0:
            raise ValueError("target bitrate must be positive")
        self._base = float(self.qp)
        self._frame_qp = self.qp

    def start_frame(self, intra: bool, fps: float, gop: int) -> int:
        """Choose the frame qp (call before coding the frame)."""
        if self.target_kbps is None:
            self._frame_qp = self.qp
            return self._frame_qp
        per_frame = self.target_kbps * 1000.0 / fps
        budget = per_frame * gop
        if intra and self._gop_expected > 0:  # re-centre on the last GOP's error
            err = math.log2(max(self._gop_spent, 1.0) / self._gop_expected)
            self._base = min(max(self._base + 0.5 * self.gain * err, self.qp_min), self.qp_max)
            self._gop_spent = self._gop_expected = 0.0
        fullness = math.log2(max(budget + self._spent - self._expected, budget / 8) / budget)
        self._frame_qp = int(round(min(max(self._base + self.gain * fullness, self.qp_min), self.qp_max)))
        self._expected += per_frame
        self._gop_expected += per_frame
        return self._frame_qp

    def entry_qp(self, intra: bool, background: bool, referenced: bool = True) -> int:
        qp = (self._frame_qp + (self.intra_offset if intra else 0) + (self.roi_offset if background else 0)
              + (0 if referenced or intra else self.nonref_offset))
        return int(min(max(qp, 0), MAX_QP))

    def end_frame(self, bits: int) -> None:
        self._spent += bits
        self._gop_spent += bits


def intra_quality(qp: int, levels: int) -> float:
    """Quality of the image-codec base of an intra entry for a given qp (its refinement layer codes the
    rest): the top quality at fine qp, falling by one level per 6 qp (one octave of step)."""
    return float(min(max((levels - 1) - (qp - 24) / 6.0, 0.0), levels - 1))
