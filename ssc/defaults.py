"""Defaults shared by the library and the command line (so neither imports the other for them)."""
from __future__ import annotations

#: The zoo codec used when none is named: the codec trained for cell-owned groups (issue 35).
DEFAULT_MODEL = "gi-cell-m"
#: The intra codec of learned video tracks when none is named: the model the video rate control's
#: qp -> quality mapping was measured with.
DEFAULT_VIDEO_MODEL = "gi-hyper-ckbd-m"


def default_quality(num_qualities: int) -> float:
    """The second-highest quality level (level 2 of 0..3, level 3 of 0..4: about 0.5 bpp on Kodak)."""
    return float(max(num_qualities - 2, 0))
