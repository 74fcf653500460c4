"""ssc.fill: what a partial decode shows where it decoded nothing (a receiver choice)."""
from __future__ import annotations

import numpy as np
import pytest

from ssc.fill import GREY, apply_fill, extend


def _scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    known = np.zeros((37, 53), bool)
    known[5:20, 30:47] = True
    known[25:31, 2:9] = True
    return img, known


def test_extend_keeps_the_decoded_pixels_and_fills_the_rest_from_them():
    img, known = _scene()
    out = extend(img, known)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out[known], img[known])
    # every filled value is a weighted mean of decoded ones: within their range, per channel
    lo, hi = img[known].min(0), img[known].max(0)
    assert (out[~known] >= lo).all() and (out[~known] <= hi).all()
    # near a decoded region the fill follows it: a one-colour region extends as that colour
    flat = np.zeros_like(img)
    flat[known] = (200, 40, 90)
    assert (extend(flat, known) == (200, 40, 90)).all()


def test_extend_is_deterministic_and_grey_without_decoded_pixels():
    img, known = _scene(1)
    assert np.array_equal(extend(img, known), extend(img.copy(), known.copy()))
    assert (extend(img, np.zeros_like(known)) == GREY).all()
    assert np.array_equal(extend(img, np.ones_like(known)), img)


def test_apply_fill_grey_and_bad_input():
    img, known = _scene(2)
    grey = apply_fill(img, known, "grey")
    assert np.array_equal(grey[known], img[known]) and (grey[~known] == GREY).all()
    with pytest.raises(ValueError, match="fill must be one of"):
        apply_fill(img, known, "blur")
    with pytest.raises(ValueError, match="must be"):
        extend(img, known[:, :-1])
