"""Cell-owned groups (Feng et al., ICCV 2023; GIT-SSIC): every 16x16 latent cell of the image
belongs to exactly one group, so no latent is coded twice and a group's decoded region is its cells.

The rule (:func:`cell_owners`), applied to a pixel label map (0 = background, 1..K objects):
1. A cell goes to the object with the most pixels in it, if that object covers at least
   ``min_pixels`` of the cell's pixels; ties go to the object of smaller total area. So an object
   owns every cell it covers noticeably: the object plus up to one cell of its surroundings, the
   context a detector needs.
2. Every other cell goes to the background (label 0); an image with no background pixels gives it
   to the object with the most pixels there instead.
3. An object that owns no cell after 1-2 (a sliver under ``min_pixels`` in every cell) takes the
   cell where it has most pixels; the smallest such objects choose first.
"""
from __future__ import annotations

import numpy as np

from ssc.bitstream.format import CELL  # the side of a latent cell in pixels (the codec's y is at 1/16)
from ssc.bitstream.groupmap import cells_to_pixels
from ssc.errors import MaskError

#: pixels an object needs in a cell to own it (1/16 of the cell)
MIN_PIXELS = 16


def cell_grid(shape: tuple[int, int], cell: int = CELL) -> tuple[int, int]:
    """(rows, cols) of cells covering an image of ``shape`` (partial cells at the edges count)."""
    return -(-shape[0] // cell), -(-shape[1] // cell)


def cell_counts(labels: np.ndarray, cell: int = CELL) -> tuple[np.ndarray, np.ndarray]:
    """(ids ascending, counts (K, rows, cols)): pixels of each id in each cell."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise MaskError(f"label map must be a non-empty 2-D array, got shape {labels.shape}")
    gh, gw = cell_grid(labels.shape, cell)
    ids, inv = np.unique(labels, return_inverse=True)
    rows = (np.arange(labels.shape[0]) // cell)[:, None]
    cols = (np.arange(labels.shape[1]) // cell)[None, :]
    flat = inv.reshape(labels.shape) * (gh * gw) + rows * gw + cols
    counts = np.bincount(flat.ravel(), minlength=len(ids) * gh * gw)
    return ids, counts.reshape(len(ids), gh, gw)


def cell_owners(labels: np.ndarray, cell: int = CELL, min_pixels: int = MIN_PIXELS) -> np.ndarray:
    """The owning group id of every cell, shape :func:`cell_grid` (see the module docstring)."""
    ids, counts = cell_counts(labels, cell)
    area = counts.sum((1, 2))
    obj = np.nonzero(ids != 0)[0]
    gh, gw = counts.shape[1:]
    owners = np.zeros((gh, gw), dtype=np.int32)
    has_bg = ids[0] == 0
    if len(obj):
        order = obj[np.argsort(area[obj], kind="stable")]  # smaller objects first: they win ties
        c = counts[order]
        best = c.argmax(0)
        top = np.take_along_axis(c, best[None], 0)[0]
        owners = np.where((top >= min_pixels) | ~has_bg, ids[order][best], 0).astype(np.int32)
        claimed = np.zeros((gh, gw), dtype=bool)
        for k in order:  # rule 3: objects left without a cell
            if (owners == ids[k]).any():
                continue
            cand = np.where(claimed, -1, counts[k])
            r, q = np.unravel_index(int(cand.argmax()), cand.shape)
            if cand[r, q] > 0:
                owners[r, q] = ids[k]
                claimed[r, q] = True
    return owners


def owned_labels(labels: np.ndarray, cell: int = CELL, min_pixels: int = MIN_PIXELS) -> np.ndarray:
    """The pixel label map of the cell-owned groups: each pixel takes its cell's owner."""
    return cells_to_pixels(cell_owners(labels, cell, min_pixels), labels.shape, cell)
