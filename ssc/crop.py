"""Where a group is coded: its coding crop (the box grown right and down to the latent grid, Feng et
al., ICCV 2023), the crop's tiles for very large images (bitstream v2 ``tile_size``), and the crop's
pixels and mask as tensors, for the encoder and the decoder alike."""
from __future__ import annotations

import numpy as np
import torch

from .models.codec import ALIGN
from .models.zoo import LoadedCodec


def crop_box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, width, height) of the coding crop: the box grown right/down to multiples of ALIGN."""
    x0, y0, x1, y1 = box
    return x0, y0, -(-(x1 - x0) // ALIGN) * ALIGN, -(-(y1 - y0) // ALIGN) * ALIGN


def _take(arr: np.ndarray, x0: int, y0: int, w: int, h: int, fill: int = 0) -> np.ndarray:
    """arr[y0:y0+h, x0:x0+w], padded with ``fill`` where it runs past the image."""
    out = np.full((h, w) + arr.shape[2:], fill, dtype=arr.dtype)
    part = arr[y0 : y0 + h, x0 : x0 + w]
    out[: part.shape[0], : part.shape[1]] = part
    return out


#: A tile in image coordinates: (x0, y0, width, height).
Tile = tuple[int, int, int, int]
#: Images with more pixels than this are coded in tiles of DEFAULT_TILE unless the caller chooses.
AUTO_TILE_PIXELS = 1 << 22
DEFAULT_TILE = 1024


def group_tiles(box: tuple[int, int, int, int], tile: int = 0) -> list[Tile]:
    """The tiles of a group's coding crop in raster order: the whole crop when ``tile`` is 0, else
    ``tile x tile`` pieces from its top-left corner (bitstream v2, tile_size)."""
    x0, y0, w, h = crop_box(box)
    if not tile:
        return [(x0, y0, w, h)]
    return [(x0 + tx, y0 + ty, min(tile, w - tx), min(tile, h - ty)) for ty in range(0, h, tile) for tx in range(0, w, tile)]


def tile_input(image: np.ndarray, labels: np.ndarray, gid: int, t: Tile, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder side: (x, mask) tensors (1, 3, h, w) / (1, 1, h, w) of group ``gid`` on tile ``t``;
    x is zero outside the group and past the image edge."""
    x0, y0, w, h = t
    mask = torch.from_numpy(_take(labels, x0, y0, w, h, fill=-1) == gid).float().view(1, 1, h, w).to(device)
    x = torch.from_numpy(_take(image, x0, y0, w, h)).permute(2, 0, 1).float().div(255).unsqueeze(0).to(device)
    return x * mask, mask


def box_part(box_mask: np.ndarray, box: tuple[int, int, int, int], t: Tile) -> np.ndarray:
    """The part of a group's box mask that tile ``t`` covers (smaller than the tile at the crop's edge)."""
    x0, y0, w, h = t
    return box_mask[y0 - box[1] : y0 - box[1] + h, x0 - box[0] : x0 - box[0] + w]


def tile_mask(box_mask: np.ndarray, box: tuple[int, int, int, int], t: Tile, device: torch.device) -> torch.Tensor:
    """Decoder side: (1, 1, h, w) mask of tile ``t`` from the group's mask on its box (as stored in the
    stream); equal to the encoder's, since the box is the mask's bounding box."""
    w, h = t[2], t[3]
    part = box_part(box_mask, box, t)
    out = np.zeros((h, w), dtype=np.float32)
    out[: part.shape[0], : part.shape[1]] = part
    return torch.from_numpy(out).view(1, 1, h, w).to(device)


def group_crop(image: np.ndarray, labels: np.ndarray, box: tuple[int, int, int, int], gid: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, mask) of one group on its whole (untiled) coding crop."""
    return tile_input(image, labels, gid, group_tiles(box)[0], device)


def box_mask_crop(mask: np.ndarray, box: tuple[int, int, int, int], device: torch.device) -> torch.Tensor:
    """(1, 1, h, w) mask on the whole (untiled) coding crop from the group's mask on its box."""
    return tile_mask(mask, box, group_tiles(box)[0], device)


def codec_device(codec: LoadedCodec) -> torch.device:
    return next(codec.model.parameters()).device


# ------------------------------------------------------------ scaled groups (bitstream v5, scale s)
def reduced_box(box: tuple[int, int, int, int], f: int) -> tuple[int, int, int, int]:
    """The box of a group coded at 1/f size: (x0 // f, y0 // f, ceil(x1 / f), ceil(y1 / f))."""
    x0, y0, x1, y1 = box
    return x0 // f, y0 // f, -(-x1 // f), -(-y1 // f)


def reduce_mask(box_mask: np.ndarray, box: tuple[int, int, int, int], f: int) -> np.ndarray:
    """The group's mask at 1/f size on its reduced box: a reduced pixel belongs to the group when its
    f x f block (aligned to the image's origin) holds one of the group's pixels."""
    x0, y0, x1, y1 = box
    lx0, ly0, lx1, ly1 = reduced_box(box, f)
    big = np.zeros(((ly1 - ly0) * f, (lx1 - lx0) * f), dtype=bool)
    big[y0 - ly0 * f : y1 - ly0 * f, x0 - lx0 * f : x1 - lx0 * f] = box_mask
    return big.reshape(ly1 - ly0, f, lx1 - lx0, f).any(axis=(1, 3))


def reduced_region(box: tuple[int, int, int, int], box_mask: np.ndarray, scale: int
                   ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The box and the mask on it that a group's segment codes, encoder and decoder alike: its own
    at scale 0, else the reduced ones at 1/2**scale size (bitstream v5)."""
    if not scale:
        return box, box_mask
    f = 1 << scale
    return reduced_box(box, f), reduce_mask(box_mask, box, f)


def reduce_image(image: np.ndarray, f: int) -> np.ndarray:
    """An (H, W, 3) uint8 image at 1/f size: the rounded mean of every f x f block, the right and
    bottom edges repeating their last pixel up to a whole block."""
    h, w = image.shape[:2]
    ph, pw = -h % f, -w % f
    x = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge").astype(np.float64)
    x = x.reshape((h + ph) // f, f, (w + pw) // f, f, 3).mean(axis=(1, 3))
    return np.floor(x + 0.5).astype(np.uint8)


def _upsample_axis(x: np.ndarray, f: int, axis: int) -> np.ndarray:
    """Bilinear upsampling by ``f`` along ``axis`` with half-pixel centres, edges clamped."""
    n = x.shape[axis]
    s = (np.arange(n * f) + 0.5) / f - 0.5
    i0 = np.floor(s).astype(np.int64)
    w1 = s - i0
    a, b = np.clip(i0, 0, n - 1), np.clip(i0 + 1, 0, n - 1)
    shape = [1] * x.ndim
    shape[axis] = -1
    w1 = w1.reshape(shape)
    return np.take(x, a, axis=axis) * (1 - w1) + np.take(x, b, axis=axis) * w1


def upsample_group(pix: np.ndarray, mask: np.ndarray, f: int) -> np.ndarray:
    """(h, w, 3) uint8 pixels of a group at 1/f size and its reduced mask -> (h f, w f, 3) uint8:
    bilinear, each output the weighted mean over the group's own reduced pixels (normalised, so
    nothing outside the group leaks in). Plain float64 numpy: the same on every machine."""
    m = mask.astype(np.float64)[..., None]
    num, den = pix.astype(np.float64) * m, m
    for axis in (0, 1):
        num, den = _upsample_axis(num, f, axis), _upsample_axis(den, f, axis)
    out = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
    return np.floor(np.clip(out, 0, 255) + 0.5).astype(np.uint8)
