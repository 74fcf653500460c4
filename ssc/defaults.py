"""Defaults shared by the library and the command line (so neither imports the other for them)."""
from __future__ import annotations

#: The zoo codec used when none is named: the codec trained for cell-owned groups (issue 35).
DEFAULT_MODEL = "gi-cell-m"
#: x265's lookahead (frames) of hevc tracks in ``ssc encode-video`` and batch video jobs: one GOP of
#: the default 16 (the library's ``HevcSettings`` default is 0: every frame written as it is given).
#: Measured on the surveillance clip and DAVIS parkour and breakdance: fewer bits at a higher object
#: PSNR (docs/results.md, 2026-12-03).
DEFAULT_LOOKAHEAD = 16
#: The intra codec of learned video tracks when none is named: the model the video rate control's
#: qp -> quality mapping was measured with.
DEFAULT_VIDEO_MODEL = "gi-hyper-ckbd-m"


def default_quality(num_qualities: int) -> float:
    """The second-highest quality level (level 2 of 0..3, level 3 of 0..4: about 0.5 bpp on Kodak)."""
    return float(max(num_qualities - 2, 0))
