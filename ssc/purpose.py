"""Encoding for a purpose (``ssc encode --for MACHINE``): the codec, groups and qualities measured to
serve the machine that will read the stream best per bit (coding for machines: end-to-end ICM, Le et
al., ICASSP 2021). ``--model`` / ``--masks`` / ``--quality`` still override each setting. The decoder
needs none of this: the stream names its weights."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Purpose:
    """What ``--for NAME`` sets."""

    name: str
    #: the zoo codec that serves this machine best (measured)
    model: str
    #: the groups when ``--masks`` is not given (the machine's own detector on the encoder side)
    masks: str
    #: the quality of the machine's classes when ``--quality`` is not given
    quality: float
    #: the classes the machine reads (their groups get ``quality``)
    classes: tuple[str, ...]
    #: the quality of every other group (context the machine does not score); None: ``quality``
    background_quality: float | None
    doc: str
    #: every other group is coded at 1 / 2**background_scale size (the bitstream v5 scale field: 0
    #: full size, 1 half, 2 quarter)
    background_scale: int = 0

    #: groups of the machine's classes whose (padded) box is at least this many pixels tall are coded
    #: at 1/2**large_scale size and ``large_step`` quality levels higher (capped at the top level); the
    #: detector reads a large object through its own reduced view anyway, a small one needs every
    #: pixel. None: no size rule
    large_height: int | None = None
    large_scale: int = 1
    large_step: float = 1.0

    def is_large(self, box: tuple[int, int, int, int]) -> bool:
        """Whether a group of the machine's classes with pixel box ``box`` (x0, y0, x1, y1) falls under
        the size rule."""
        return self.large_height is not None and box[3] - box[1] >= self.large_height

    def group_qualities(self, groups, quality: float, top: float | None = None) -> tuple[float, dict[int, float] | None]:
        """(default quality, per-group qualities) for ``groups`` (GroupMap groups with labels): the
        machine's classes at ``quality`` (the large ones ``large_step`` higher, at most ``top``, the
        codec's highest level), the rest at ``background_quality``."""
        if self.background_quality is None and self.large_height is None:
            return quality, None
        big = quality + self.large_step if top is None else min(quality + self.large_step, top)
        ours = {g.group_id: (big if self.is_large(g.box) else quality) for g in groups if g.label in self.classes}
        return (quality if self.background_quality is None else self.background_quality), ours

    def group_scales(self, groups) -> dict[int, int]:
        """{group id: scale field} of the groups not coded at full size: the groups outside the
        machine's classes at ``background_scale``, the large ones of its classes at ``large_scale``."""
        out = {g.group_id: self.background_scale for g in groups if g.label not in self.classes and self.background_scale}
        out.update({g.group_id: self.large_scale for g in groups if g.label in self.classes and self.is_large(g.box)})
        return out


#: chosen by measurement (docs/results.md, issue 37: one run on the 158 COCO val images, gi-cell-m
#: step 8639). For the person detector gi-cell-m with its own person groups beats the detector-tuned
#: gi-cell-m-person on persons-only decodes by about 2 AP at equal bpp. The groups: detections with
#: score >= 0.2 padded by 48 px (persons only, on the original pixels: 18.79 AP against 16.88 with
#: 16 px; the detector needs context). Persons at least 200 px tall (296 px with the padding) are
#: coded at half size and 1.5 levels higher (capped at the top), the rest at full size; everything
#: else at 0 and half size. At quality 2.5: persons only 17.24 AP at 0.094 bpp, decoded whole 17.15 at
#: 0.124 (16-px groups, every person at full size: 14.65 at 0.087 and 16.05 at 0.118).
PURPOSES: dict[str, Purpose] = {
    "ssdlite-person": Purpose(
        "ssdlite-person", model="gi-cell-m", masks="detect:ssdlite-person,score=0.2,pad=48", quality=3.0,
        classes=("person",), background_quality=0.0, background_scale=1, large_height=296, large_scale=1,
        large_step=1.5,
        doc="the SSDLite person detector (and the heads that read its boxes): person groups made by the same "
            "detector on the encoder side (score >= 0.2, padded 48 px) at quality 3, those at least 296 px tall "
            "at half size and 1.5 levels higher, everything else at 0 and half size"),
}


def resolve_purpose(name: str) -> Purpose:
    """The purpose called ``name``, or a ValueError that lists the known ones."""
    try:
        return PURPOSES[name]
    except KeyError:
        raise ValueError(f"unknown --for {name!r}; known: {', '.join(sorted(PURPOSES))}") from None
