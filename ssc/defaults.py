"""Defaults shared by the library and the command line (so neither imports the other for them)."""
from __future__ import annotations

#: The zoo codec used when none is named: the codec trained for cell-owned groups (issue 35).
DEFAULT_MODEL = "gi-cell-m"
#: x265's lookahead (frames) of hevc tracks in ``ssc encode-video`` and batch video jobs at a constant
#: qp: one GOP of the default 16 (the library's ``HevcSettings`` default is 0: every frame written as
#: it is given). Measured at a constant qp on the surveillance clip and DAVIS parkour and breakdance:
#: fewer bits at a higher object PSNR (docs/results.md, 2026-12-03).
DEFAULT_LOOKAHEAD = 16


def lookahead_for(kbps: float | None, given: int | None = None) -> int:
    """x265's lookahead for hevc tracks: ``given`` if set, else :data:`DEFAULT_LOOKAHEAD` at a constant
    qp and none with a target bitrate (rate-controlled coding is the live pipeline's, where each frame
    should leave as it comes in; on the whole surveillance clip at 150 kbit/s the lookahead read no
    better: 69.24 against 69.35 AP at the same rate with the average-bitrate control, 58.4 against
    62.2 with the per-GOP budget before it; docs/results.md)."""
    if given is not None:
        return given  # HevcSettings checks its range
    return 0 if kbps else DEFAULT_LOOKAHEAD
#: The intra codec of learned video tracks when none is named: the model the video rate control's
#: qp -> quality mapping was measured with.
DEFAULT_VIDEO_MODEL = "gi-hyper-ckbd-m"


def default_quality(num_qualities: int) -> float:
    """The second-highest quality level (level 2 of 0..3, level 3 of 0..4: about 0.5 bpp on Kodak)."""
    return float(max(num_qualities - 2, 0))
