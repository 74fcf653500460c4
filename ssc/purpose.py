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

    def group_qualities(self, groups, quality: float) -> tuple[float, dict[int, float] | None]:
        """(default quality, per-group qualities) for ``groups`` (GroupMap groups with labels): the
        machine's classes at ``quality``, the rest at ``background_quality``."""
        if self.background_quality is None:
            return quality, None
        return self.background_quality, {g.group_id: quality for g in groups if g.label in self.classes}

    def group_scales(self, groups) -> dict[int, int]:
        """{group id: scale field} for the groups outside the machine's classes."""
        s = self.background_scale
        return {g.group_id: s for g in groups if g.label not in self.classes} if s else {}


#: chosen by measurement (docs/results.md, issue 37: one run on the 158 COCO val images, gi-cell-m
#: step 8639): for the person detector, gi-cell-m with its own person groups beats the
#: detector-tuned gi-cell-m-person (step 4351) on persons-only decodes by about 2 AP at equal bpp;
#: persons at quality 3 over a background at 0 coded at half size (bitstream v5 scaled groups) give
#: 17.01 AP at 0.169 bpp, and that curve (persons at 1.5 / 2 / 3 / 4) is ahead of the envelope of
#: every anchor at both scales at each of its points (+0.94 / +1.27 / +0.54 / +0.71 AP); a full-size
#: background is behind it below 0.2 bpp and a quarter-size one above 0.15
PURPOSES: dict[str, Purpose] = {
    "ssdlite-person": Purpose(
        "ssdlite-person", model="gi-cell-m", masks="detect:ssdlite-person", quality=3.0, classes=("person",),
        background_quality=0.0, background_scale=1,
        doc="the SSDLite person detector (and the heads that read its boxes): person groups made by the same "
            "detector on the encoder side at quality 3, everything else at 0 and half size"),
}


def resolve_purpose(name: str) -> Purpose:
    """The purpose called ``name``, or a ValueError that lists the known ones."""
    try:
        return PURPOSES[name]
    except KeyError:
        raise ValueError(f"unknown --for {name!r}; known: {', '.join(sorted(PURPOSES))}") from None
