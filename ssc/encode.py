"""Image encode: every group of a group map coded on its own crop into its own segment (Feng et
al., ICCV 2023), optionally tiled, with per-group (ROI) qualities and an encoder-side latent search."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .bitstream import GroupEntry, StreamHeader, StreamReader, build_stream, encode_group_masks
from .bitstream.format import CELL, MAX_SCALE, pack_tiles, quality_code, quality_value
from .bitstream.groupmap import encode_cell_masks
from .crop import AUTO_TILE_PIXELS, DEFAULT_TILE, codec_device, group_tiles, reduce_image, reduced_region, tile_input
from .errors import GroupNotFoundError, SSCError
from .masks import GroupMap
from .masks.cells import cell_owners, cells_to_pixels
from .models.codec import ALIGN
from .models.refine import Refinement, check_refinable, quality_lambda, refine_latents
from .models.zoo import LoadedCodec


@dataclass
class EncodeResult:
    data: bytes
    header: StreamHeader
    seconds: float

    @property
    def bytes_per_group(self) -> dict[int, int]:
        return {g.group_id: g.seg_length for g in self.header.groups}


def encode_image(
    image: np.ndarray,
    group_map: GroupMap,
    codec: LoadedCodec,
    quality: float = 2.0,
    group_quality: dict[int, float] | None = None,
    tile: int | None = None,
    refine: Refinement | None = None,
    cells: bool = True,
    exact_masks: bool = False,
    group_scale: dict[int, int] | None = None,
) -> EncodeResult:
    """Encode an (H, W, 3) uint8 image; every group of ``group_map`` gets its own segment.
    ``group_quality`` overrides the quality per group id (ROI coding). ``tile`` (a multiple of 64)
    codes every group in tiles of that side, which bounds memory on very large images; None tiles
    with DEFAULT_TILE above AUTO_TILE_PIXELS pixels, 0 never tiles. ``refine`` searches each group's
    latents at the encoder (:mod:`ssc.models.refine`): fewer bits for the same quality, slower, same
    decoder. ``cells``: cell-owned groups (:mod:`ssc.masks.cells`; each group codes its 16-px cells,
    nothing is coded twice; a group of no cell, a background under the objects, is left out), else
    pixel-exact groups; ``exact_masks`` also stores the objects' pixel-exact masks (metadata).
    ``group_scale`` codes groups at 1/2**s size, upsampled on decode (bitstream v5), for example a
    background a detector reads only as context: {group id: s}, s <= 2."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SSCError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    group_map.check_size(h, w)
    nq = codec.model.num_qualities
    group_quality = dict(group_quality or {})
    group_scale = {g: s for g, s in (group_scale or {}).items() if s}
    for what, given in (("quality", group_quality), ("scale", group_scale)):
        unknown = set(given) - set(group_map.ids)
        if unknown:
            raise GroupNotFoundError(f"{what} given for groups {sorted(unknown)} that are not in the group map")
    bad = {g: s for g, s in group_scale.items() if s not in range(MAX_SCALE + 1)}
    if bad:
        raise ValueError(f"group scales {bad} outside 0..{MAX_SCALE} (1/1 to 1/{1 << MAX_SCALE} size)")
    for q in [quality, *group_quality.values()]:
        if not 0 <= q <= nq - 1:
            raise ValueError(f"quality {q} outside [0, {nq - 1}] for model {codec.card.name}")
    refining = refine is not None and refine.steps > 0
    if refining:
        check_refinable(codec.model, codec.card.name, codec.card.lambdas)
    if tile is None:
        tile = DEFAULT_TILE if h * w > AUTO_TILE_PIXELS else 0
    if tile % ALIGN or tile < 0:
        raise ValueError(f"tile size {tile} must be a non-negative multiple of {ALIGN}")
    t0 = time.perf_counter()
    dev = codec_device(codec)
    bodies, entries = {}, []
    coded_map, objects = group_map, {}
    if cells:
        owners = cell_owners(group_map.labels)
        coded_map = GroupMap.from_labels(cells_to_pixels(owners, (h, w)),
                                         {g.group_id: (g.class_id, g.label) for g in group_map.groups})
        objects = {g.group_id: g.box for g in group_map.groups}
    reduced: dict[int, np.ndarray] = {}
    for g in coded_map.groups:
        gq = group_quality.get(g.group_id, quality)
        gq_code = quality_code(gq)
        coded = []
        s = group_scale.get(g.group_id, 0)
        src, labels, box = image, coded_map.labels, g.box
        if s:  # the group at 1/2**s size: its reduced pixels, box and mask (as the decoder derives them)
            x0, y0, x1, y1 = g.box
            box, box_mask = reduced_region(g.box, coded_map.labels[y0:y1, x0:x1] == g.group_id, s)
            src = reduced.setdefault(s, reduce_image(image, 1 << s))
            labels = np.full(src.shape[:2], -1, dtype=np.int32)
            labels[box[1] : box[3], box[0] : box[2]][box_mask] = g.group_id
        for t in group_tiles(box, tile):
            x, mask = tile_input(src, labels, g.group_id, t, dev)
            if mask.any():
                q = quality_value(gq_code)
                if refining:
                    y = refine_latents(codec.model, x, mask, q, quality_lambda(codec.card.lambdas, q), refine)
                    coded.append(codec.model.compress_latents(x, mask, q, y=y)[0])
                else:
                    coded.append(codec.model.compress_group(x, mask, q))
        bodies[g.group_id] = pack_tiles(coded) if tile else coded[0]
        entries.append(GroupEntry(g.group_id, g.class_id, g.label, g.box, g.area, gq_code,
                                  object_box=objects.get(g.group_id), scale=s))
    header = StreamHeader(
        width=w, height=h, model_id=codec.card.name, weights_id=codec.weights_id,
        quality=quality_code(quality), groups=tuple(entries), tile_size=tile, cell=CELL if cells else 0,
        exact_masks=exact_masks and cells,
    )
    masks = (encode_cell_masks(owners, group_map.labels if exact_masks else None, entries, CELL) if cells
             else encode_group_masks(group_map.labels, entries))
    data = build_stream(header, bodies, masks)
    return EncodeResult(data, StreamReader(data).header, time.perf_counter() - t0)
