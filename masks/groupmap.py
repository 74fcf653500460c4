"""The group map: an (H, W) integer label image (0 = background, 1..K objects) with one
:class:`GroupInfo` per label carrying what the bitstream header stores (SSIC: class and box)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssc.errors import MaskError


@dataclass(frozen=True)
class GroupInfo:
    group_id: int
    class_id: int = 0
    label: str = ""
    area: int = 0
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x0, y0, x1, y1 (exclusive)


@dataclass
class GroupMap:
    """Labels plus per-group metadata, ids ascending. Build with :meth:`from_labels`."""

    labels: np.ndarray
    groups: tuple[GroupInfo, ...] = field(default_factory=tuple)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.labels.shape)  # type: ignore[return-value]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(g.group_id for g in self.groups)

    def group(self, gid: int) -> GroupInfo:
        for g in self.groups:
            if g.group_id == gid:
                return g
        raise MaskError(f"group {gid} is not in the map (groups: {list(self.ids)})")

    def mask(self, gid: int) -> np.ndarray:
        return self.labels == gid

    @classmethod
    def from_labels(cls, labels: np.ndarray, meta: dict[int, tuple[int, str]] | None = None) -> "GroupMap":
        """Compute area and box of every id present; ``meta`` maps id -> (class_id, label)."""
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise MaskError(f"group map must be 2-D, got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise MaskError(f"group map must hold integers, got {labels.dtype}")
        if labels.size == 0:
            raise MaskError("group map is empty")
        if labels.min() < 0 or labels.max() > 0xFFFF:
            raise MaskError("group ids must lie in [0, 65535]")
        labels = labels.astype(np.int32)
        meta = meta or {}
        ids, counts = np.unique(labels, return_counts=True)
        groups = []
        for gid, area in zip(ids.tolist(), counts.tolist()):
            ys, xs = np.nonzero(labels == gid)
            cls_id, name = meta.get(gid, (0, "background" if gid == 0 else ""))
            groups.append(GroupInfo(gid, int(cls_id), str(name), int(area),
                                    (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
        return cls(labels, tuple(groups))

    def check_size(self, height: int, width: int) -> None:
        if self.shape != (height, width):
            raise MaskError(f"group map is {self.shape[1]}x{self.shape[0]} but the image is {width}x{height}")

    def relabel(self, mapping: dict[int, int], meta: dict[int, tuple[int, str]] | None = None) -> "GroupMap":
        """Map old ids to new ids (ids not in ``mapping`` keep theirs) and recompute the metadata."""
        lut = np.arange(int(self.labels.max()) + 1, dtype=np.int32)
        for old, new in mapping.items():
            if old < len(lut):
                lut[old] = new
        new_meta = {mapping.get(g.group_id, g.group_id): (g.class_id, g.label) for g in self.groups}
        new_meta.update(meta or {})
        return GroupMap.from_labels(lut[self.labels], new_meta)


def paint_instances(
    height: int, width: int, masks: list[np.ndarray], classes: list[tuple[int, str]]
) -> GroupMap:
    """Combine binary instance masks into a group map. Overlap rule: a pixel covered by several
    instances belongs to the one with the smallest area (small objects in front of large ones), ties
    going to the earlier instance. Instance i gets group id i + 1 in input order; instances left
    with no pixel are dropped."""
    if len(masks) != len(classes):
        raise MaskError("need one class per mask")
    if len(masks) > 0xFFFF:
        raise MaskError("too many instances (max 65535)")
    labels = np.zeros((height, width), dtype=np.int32)
    areas = [int(m.sum()) for m in masks]
    for m in masks:
        if m.shape != (height, width):
            raise MaskError(f"mask of size {m.shape[1]}x{m.shape[0]} does not match the image {width}x{height}")
    order = sorted(range(len(masks)), key=lambda i: (-areas[i], -i))  # largest first, earlier painted last
    for i in order:
        labels[masks[i].astype(bool)] = i + 1
    meta = {i + 1: classes[i] for i in range(len(masks))}
    return GroupMap.from_labels(labels, meta)

