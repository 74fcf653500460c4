"""Defaults shared by the library and the command line (so neither imports the other for them)."""
from __future__ import annotations

#: The zoo codec used when none is named.
DEFAULT_MODEL = "gi-hyper-ckbd-m"


def default_quality(num_qualities: int) -> float:
    """Two thirds of the way up the model's quality range (level 2 of 0..3)."""
    return round((num_qualities - 1) * 2 / 3, 3)
