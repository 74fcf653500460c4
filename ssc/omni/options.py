"""The Omni trainers' settings (a config's ``extra`` mapping, Feng et al., ECCV 2022): one typed,
validated dataclass instead of free ``extra.get`` reads, checked before any work. Old configs read
unchanged; a key that is not a setting, or a value of the wrong type or range, is refused with a
message that names it."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields


@dataclass
class OmniOptions:
    """``extra`` of the ``omni`` and ``omni-ssd`` trainers (defaults: the plain loss)."""

    #: the pixel codec (zoo name or .safetensors) whose transforms a fresh run starts from
    init_from: str | None = None
    #: modules kept fixed (``omni`` trainer)
    freeze: list[str] = field(default_factory=list)
    #: training photos joining the COCO train subset in the distillation set
    photos: int = 240
    ssl_weight: float = 0.1
    temperature: float = 0.2
    #: weight of the output distillation, and its focus on the anchors that hold a person
    kd_weight: float = 1.0
    kd_focus: float = 0.0
    #: extra weight on the head's own map
    cut_weight: float = 0.0
    #: what a partial mask's views are taught: the "decoded" pixels' maps or the whole "image"'s
    distill_target: str = "decoded"
    #: distillation terms beyond ``near_reach`` cells of the decoded support count ``near_floor``
    near_floor: float = 1.0
    near_reach: int = 3
    #: a trained feature codec with fewer trunk blocks to grow from, and frozen parts to train too
    init_head: str | None = None
    tune: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        def number(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if not (number(self.near_floor) and 0 <= self.near_floor <= 1 and number(self.near_reach)
                and isinstance(self.near_reach, int) and self.near_reach >= 0):
            raise ValueError(f"extra.near_floor must lie in [0, 1] and extra.near_reach be a whole number of cells "
                             f">= 0 (got {self.near_floor!r}, {self.near_reach!r})")
        for name in ("kd_focus", "ssl_weight", "kd_weight", "cut_weight", "temperature", "photos"):
            v = getattr(self, name)
            if not (number(v) and v >= 0) or (name == "photos" and not isinstance(v, int)):
                raise ValueError(f"extra.{name} must be a finite number >= 0 (got {v!r})")
        for name in ("freeze", "tune"):
            if not isinstance(getattr(self, name), list) or not all(isinstance(m, str) for m in getattr(self, name)):
                raise ValueError(f"extra.{name} must be a list of module names (got {getattr(self, name)!r})")

    @classmethod
    def from_extra(cls, extra: dict | None) -> "OmniOptions":
        """The settings of a config's ``extra`` mapping; unknown keys are refused."""
        extra = dict(extra or {})
        known = {f.name for f in fields(cls)}
        if set(extra) - known:
            raise ValueError(f"unknown extra settings {sorted(set(extra) - known)}; known: {', '.join(sorted(known))}")
        return cls(**extra)
