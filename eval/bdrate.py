"""Bjontegaard delta rate (VCEG-M33): average bitrate difference between two rate-distortion curves
over their overlapping quality range, from cubic fits of log-rate as a function of quality."""
from __future__ import annotations

import numpy as np


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test) -> float:
    """Percent rate change of ``test`` against ``anchor`` at equal quality (negative = test saves bits).
    Needs at least 4 points per curve with strictly increasing quality after sorting."""
    ra, pa = np.log(np.asarray(rate_anchor, float)), np.asarray(psnr_anchor, float)
    rt, pt = np.log(np.asarray(rate_test, float)), np.asarray(psnr_test, float)
    if min(len(pa), len(pt)) < 4:
        raise ValueError("BD-rate needs at least 4 points per curve")
    lo, hi = max(pa.min(), pt.min()), min(pa.max(), pt.max())
    if hi <= lo:
        raise ValueError("the two curves do not overlap in quality")
    fa = np.polyint(np.polyfit(pa, ra, 3))
    ft = np.polyint(np.polyfit(pt, rt, 3))
    avg = ((np.polyval(ft, hi) - np.polyval(ft, lo)) - (np.polyval(fa, hi) - np.polyval(fa, lo))) / (hi - lo)
    return float((np.exp(avg) - 1) * 100)
