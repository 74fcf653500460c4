import numpy as np
import pytest

from ssc.eval.bdrate import bd_rate


def test_identical_curves_give_zero():
    r, p = [0.1, 0.2, 0.4, 0.8], [28, 31, 34, 37]
    assert bd_rate(r, p, r, p) == pytest.approx(0, abs=1e-9)


def test_half_rate_everywhere_gives_minus_fifty():
    r, p = np.array([0.1, 0.2, 0.4, 0.8, 1.6]), [27, 30, 33, 36, 39]
    assert bd_rate(r, p, r / 2, p) == pytest.approx(-50, abs=1e-6)
    assert bd_rate(r / 2, p, r, p) == pytest.approx(100, abs=1e-6)


def test_needs_overlap_and_points():
    with pytest.raises(ValueError):
        bd_rate([1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError):
        bd_rate([1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [10, 11, 12, 13])
