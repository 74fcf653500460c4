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
- Held qp (``start_frame(held=True)``, the ``hevc`` inner codec): a track's qp is the CRF of the x265
  stream its intra entry starts and holds until its next one, so the frame qp changes only at
  I-frames. There the controller is an average-bitrate one in the manner of x264's and x265's ABR
  mode (its ``qcomp`` and rate factor): each frame's complexity is its bits scaled to qp 0 by the
  rate model (``bits * 2 ** (qp / rate_octave)``; x265's CRF halves the rate about every 7 qp), blurred
  over GOPs; a GOP whose content costs k times more is given k ** ``qcomp`` times the bits (the qp
  moves by ``(1 - qcomp) * rate_octave * log2 k``), and one rate factor, the run's budget so far over
  its complexity-weighted bits, makes the whole run meet its target; what the run is over (under)
  budget pushes the qp up (down) by ``rate_octave * log2(1 + excess / (payback * GOP budget))``,
  halving or doubling the rate at most. A GOP's qp moves at most ``max_step`` up and ``max_step_down``
  down. So quality stays nearly constant while the content's cost swings, instead of the bits:
  with a per-GOP budget (before 2026-12-03) the qp ran from 23 in a quiet stretch of the whole
  surveillance clip to 47 after the crowd came back, and the person detector's fidelity was 62.1 AP
  at 151.4 kbit/s, against 66.9 at 131.5 kbit/s at a constant qp (docs/results.md). Streams that
  start mid-GOP (new tracks, outgrown tubes) take the GOP's qp, coarser while the run is over budget
  (``mid_gop_coarsen``); the background's stream, which holds for several GOPs, follows the running
  mean of the GOP qps (never finer than the current one). The held controller judges by the frames
  written so far (their bits against their budget): with x265's lookahead a frame is written up to
  that many frames after it is started.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from .transform import MAX_QP

#: the background's qp above the objects' (``roi_offset``) by inner codec, measured: the hevc tracks'
#: person-detector fidelity per bit on the surveillance clip was best at 2 of 2 / 4 / 6 with the
#: background at x265's CRF, and again at 2 of -2 / 2 / 4 at a constant qp, the background's rate
#: control on a fixed camera since 2026-12-03 (the detector reads a person's surroundings from the
#: background track; docs/results.md)
ROI_OFFSETS = {"learned": 6, "hevc": 2}


def roi_offset_for(inner: str, given: float | None = None) -> float:
    """``given``, or the inner codec's measured default (:data:`ROI_OFFSETS`) when None."""
    return ROI_OFFSETS[inner] if given is None else given


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
    #: held-qp control: qp for a factor 2 in rate, GOP budgets over which an excess is paid back,
    #: largest qp change from one GOP to the next (up, down), how much of a change in the content's
    #: cost the bits follow (x265's qcomp: 0 constant bits per GOP, 1 constant qp)
    rate_octave: float = 7.0
    payback: float = 3.0
    max_step: int = 4
    max_step_down: int = 3
    qcomp: float = 0.6
    #: held control: how much coarser streams starting mid-GOP are while the run is over budget
    #: (``rate_octave`` qp per doubling of the excess over one GOP's budget, times this; 0: none)
    mid_gop_coarsen: float = 0.5
    _base: float = field(default=0.0, init=False)
    _spent: float = field(default=0.0, init=False)
    _expected: float = field(default=0.0, init=False)
    _gop_spent: float = field(default=0.0, init=False)
    _gop_expected: float = field(default=0.0, init=False)
    _frame_qp: int = field(default=0, init=False)
    _gop_qp: int = field(default=0, init=False)  # held control: the qp of this GOP's I-frame
    _slow_qp: float | None = field(default=None, init=False)  # held control: the GOP qps' running mean
    # held control counts frames as they are written (the hevc tracks' lookahead writes them late):
    # the budget of the frames written so far
    _per_frame: float = field(default=0.0, init=False)
    _w_expected: float = field(default=0.0, init=False)
    # held control, the ABR model: (qp, E) of frames started and not yet written; the blurred
    # complexity (bits at qp 0 per frame); the run's complexity-weighted bits (sum of x / E, x265's
    # cplxr_sum); the complexity of the frames written since the last decision, and their number
    _started: deque = field(default_factory=deque, init=False)
    _cplx: float | None = field(default=None, init=False)
    _weighted: float = field(default=0.0, init=False)
    _gop_cplx: float = field(default=0.0, init=False)
    _gop_frames: int = field(default=0, init=False)
    _gop_e: float | None = field(default=None, init=False)  # E of the current GOP's qp (None: the first)
    _first_cplx: float = field(default=0.0, init=False)  # x of frames written before any E was known

    def __post_init__(self) -> None:
        if not 0 <= self.qp <= MAX_QP:
            raise ValueError(f"qp {self.qp} outside [0, {MAX_QP}]")
        if self.target_kbps is not None and self.target_kbps <= 0:
            raise ValueError("target bitrate must be positive")
        self._base = float(self.qp)
        self._frame_qp = self._gop_qp = self.qp

    def start_frame(self, intra: bool, fps: float, gop: int, held: bool = False) -> int:
        """Choose the frame qp (call before coding the frame). ``held``: the qp takes effect only at
        I-frames (the module docstring)."""
        if self.target_kbps is None:
            self._frame_qp = self.qp
            return self._frame_qp
        per_frame = self._per_frame = self.target_kbps * 1000.0 / fps
        budget = per_frame * gop
        if held:
            return self._start_held(intra, budget)
        if intra and self._gop_expected > 0:  # re-centre on the last GOP's error
            err = math.log2(max(self._gop_spent, 1.0) / self._gop_expected)
            self._base = min(max(self._base + 0.5 * self.gain * err, self.qp_min), self.qp_max)
            self._gop_spent = self._gop_expected = 0.0
        fullness = math.log2(max(budget + self._spent - self._expected, budget / 8) / budget)
        self._frame_qp = int(round(min(max(self._base + self.gain * fullness, self.qp_min), self.qp_max)))
        self._expected += per_frame
        self._gop_expected += per_frame
        return self._frame_qp

    def _start_held(self, intra: bool, budget: float) -> int:
        # what is known: the frames written so far (all of them given, without a lookahead)
        if intra and self._gop_frames:
            self._gop_qp = self._abr_qp(budget)
        if intra:
            slow = self._gop_qp if self._slow_qp is None else self._slow_qp
            self._slow_qp = 0.5 * slow + 0.5 * self._gop_qp
        # streams that start mid-GOP (new tracks, tubes outgrown) are coarser while the run is over budget
        excess = 0.0 if intra else max(self._spent - self._w_expected, 0.0)  # (an I-frame's step counted it)
        coarser = self.mid_gop_coarsen * self.rate_octave * math.log2(1 + excess / budget)
        self._frame_qp = int(round(min(self._gop_qp + coarser, self.qp_max)))
        self._started.append((self._frame_qp, self._gop_e))
        return self._frame_qp

    def _abr_qp(self, budget: float) -> int:
        """The next GOP's qp from the frames written so far (the module docstring's ABR model)."""
        g = self._gop_cplx / self._gop_frames
        self._cplx = g if self._cplx is None else 0.5 * self._cplx + 0.5 * g
        self._gop_cplx, self._gop_frames = 0.0, 0
        self._gop_e = e = self._cplx ** (1.0 - self.qcomp)
        self._weighted += self._first_cplx / e  # the first GOP's frames, weighted as its qp would have been
        self._first_cplx = 0.0
        rate_factor = self._w_expected / max(self._weighted, 1e-9)  # bits per unit of x / E
        overflow = min(max(1.0 + (self._spent - self._w_expected) / (self.payback * budget), 0.5), 2.0)
        qp = self.rate_octave * math.log2(max(e / rate_factor * overflow, 1e-9))
        qp = min(max(qp, self._gop_qp - self.max_step_down), self._gop_qp + self.max_step)
        return int(round(min(max(qp, self.qp_min), self.qp_max)))

    def entry_qp(self, intra: bool, background: bool, referenced: bool = True) -> int:
        frame = self._frame_qp
        if self._slow_qp is not None and background:  # held control: the background's CRF holds for
            frame = max(round(self._slow_qp), frame)  # several GOPs, so it follows the GOPs' running qp
        qp = (frame + (self.intra_offset if intra else 0) + (self.roi_offset if background else 0)
              + (0 if referenced or intra else self.nonref_offset))
        return int(min(max(qp, 0), MAX_QP))

    def end_frame(self, bits: int) -> None:
        """A frame was written with ``bits`` (frames are written in order, possibly after later ones
        were started)."""
        self._spent += bits
        self._gop_spent += bits
        self._w_expected += self._per_frame
        if self._started:  # held control: the frame's complexity at the qp it was started with
            qp, e = self._started.popleft()
            x = max(bits, 1) * 2.0 ** (qp / self.rate_octave)
            self._gop_cplx += x
            self._gop_frames += 1
            if e is None:
                self._first_cplx += x
            else:
                self._weighted += x / e


def intra_quality(qp: int, levels: int) -> float:
    """Quality of the image-codec base of an intra entry for a given qp (its refinement layer codes the
    rest): the top quality at fine qp, falling by one level per 6 qp (one octave of step)."""
    return float(min(max((levels - 1) - (qp - 24) / 6.0, 0.0), levels - 1))
