"""Grouping policies: how instances become coding groups."""
from __future__ import annotations

import numpy as np

from .groupmap import GroupMap


def per_instance(gm: GroupMap) -> GroupMap:
    """Every instance its own group, ids renumbered 1..K in current id order (background stays 0)."""
    ids = [g for g in gm.ids if g != 0]
    return gm.relabel({old: new for new, old in enumerate(ids, start=1)})


def per_class(gm: GroupMap) -> GroupMap:
    """One group per class: all instances of a class share a group; ids 1..C by ascending class id."""
    classes = sorted({(g.class_id, g.label) for g in gm.groups if g.group_id != 0})
    cid_to_new = {c: i for i, c in enumerate(classes, start=1)}
    mapping = {g.group_id: cid_to_new[(g.class_id, g.label)] for g in gm.groups if g.group_id != 0}
    meta = {cid_to_new[c]: c for c in classes}
    return gm.relabel(mapping, meta)


def objects_vs_background(gm: GroupMap, label: str = "objects") -> GroupMap:
    """Two groups: 1 = every object, 0 = background."""
    mapping = {g.group_id: 1 for g in gm.groups if g.group_id != 0}
    return gm.relabel(mapping, {1: (0, label)})


def merge_small(gm: GroupMap, min_area: int, into: int = 0) -> GroupMap:
    """Merge objects with fewer than ``min_area`` pixels into group ``into`` (background by default):
    a segment's fixed cost (table entry, hyper-latent, CRC) is not worth paying for a few pixels.
    Remaining ids are renumbered 1..K in their previous order."""
    small = [g.group_id for g in gm.groups if g.group_id != 0 and g.area < min_area]
    if not small:
        return gm
    labels = gm.labels.copy()
    labels[np.isin(labels, small)] = into
    meta = {g.group_id: (g.class_id, g.label) for g in gm.groups}
    merged = GroupMap.from_labels(labels, meta)
    return per_instance(merged)


POLICIES = {"instance": per_instance, "class": per_class, "objects": objects_vs_background}


def apply_policy(gm: GroupMap, policy: str = "instance", min_area: int = 0) -> GroupMap:
    """Apply a named policy (instance | class | objects), then the minimum-area merge."""
    try:
        fn = POLICIES[policy]
    except KeyError:
        raise ValueError(f"unknown grouping policy {policy!r}; choose from {', '.join(POLICIES)}") from None
    if min_area > 0:
        gm = merge_small(gm, min_area)
    return fn(gm)
