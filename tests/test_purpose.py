"""``--for`` purposes (ssc.purpose): the size rule and the qualities and sizes it gives each group."""
from __future__ import annotations

from ssc.masks.groupmap import GroupInfo
from ssc.purpose import PURPOSES, Purpose, resolve_purpose

import pytest


def groups(h_tall: int) -> list[GroupInfo]:
    return [GroupInfo(0, 0, "background", 1, (0, 0, 640, 480)),
            GroupInfo(1, 1, "person", 1, (10, 10, 60, 10 + h_tall)),  # tall: exactly at the rule's height
            GroupInfo(2, 1, "person", 1, (100, 10, 130, 10 + h_tall - 1)),  # one pixel short of it
            GroupInfo(3, 3, "car", 1, (200, 200, 300, 480))]


def test_size_rule_sets_half_size_and_a_higher_capped_quality() -> None:
    p = PURPOSES["ssdlite-person"]
    gs = groups(p.large_height)
    default, per = p.group_qualities(gs, 3.0, top=4.0)
    assert default == p.background_quality
    assert per == {1: min(3.0 + p.large_step, 4.0), 2: 3.0}  # capped at the top level
    assert p.group_qualities(gs, 1.0, top=4.0)[1] == {1: 1.0 + p.large_step, 2: 1.0}
    assert p.group_scales(gs) == {0: p.background_scale, 1: p.large_scale, 3: p.background_scale}


def test_no_rule_and_no_background_setting_leave_groups_alone() -> None:
    p = Purpose("x", model="gi-cell-m", masks="whole", quality=2.0, classes=("person",), background_quality=None, doc="")
    gs = groups(400)
    assert p.group_qualities(gs, 2.0, top=4.0) == (2.0, None)
    assert p.group_scales(gs) == {}
    with_rule = Purpose("x", model="gi-cell-m", masks="whole", quality=2.0, classes=("person",),
                        background_quality=None, doc="", large_height=300)
    assert with_rule.group_qualities(gs, 2.0, top=4.0) == (2.0, {1: 3.0, 2: 3.0})  # both are >= 300 px tall
    assert with_rule.group_scales(gs) == {1: 1, 2: 1}


def test_unknown_purpose_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="ssdlite-person"):
        resolve_purpose("yolo")
