"""Tiled coding of large images (bitstream v2 tile_size): every tile is coded on its own, the body
frames the non-empty tiles, partial decode and corruption isolation still hold."""
from dataclasses import replace

import numpy as np
import pytest

from ssc import crop, encode
from ssc.eval.fuzz_bitstream import stream_masks
from ssc.api import decode_image, encode_image
from ssc.crop import group_tiles
from ssc.bitstream import GroupEntry, StreamHeader, StreamReader, build_stream, encode_group_masks
from ssc.bitstream.format import pack_tiles, unpack_tiles
from ssc.errors import BitstreamError, CorruptSegmentError
from ssc.masks import GroupMap

from .conftest import synthetic_scene


@pytest.fixture(scope="module")
def scene():
    img, lab = synthetic_scene(h=150, w=200, seed=3)
    return img, GroupMap.from_labels(lab, {1: (1, "person"), 2: (3, "car")})


def test_group_tiles_cover_the_coding_crop():
    tiles = group_tiles((10, 5, 150, 140), 64)  # crop 192 x 192 from (10, 5)
    assert len(tiles) == 9 and tiles[0] == (10, 5, 64, 64) and tiles[-1] == (138, 133, 64, 64)
    assert group_tiles((0, 0, 100, 70), 0) == [(0, 0, 128, 128)]
    assert group_tiles((0, 0, 100, 70), 64)[-1] == (64, 64, 64, 64)


def test_tiled_stream_decodes_every_group_and_partially(codec, scene):
    img, gm = scene
    enc = encode_image(img, gm, codec, quality=1.0, tile=64)
    rd = StreamReader(enc.data)
    assert rd.header.tile_size == 64
    n0 = _n_tiles(rd, 0)
    assert len(unpack_tiles(rd.read_segment(0), n0, 0)) == n0 > 1
    full = decode_image(enc.data, codec)
    assert full.decoded == [0, 1, 2] and not full.failed
    one = decode_image(enc.data, codec, groups=[1])
    m = rd.group_map == 1
    assert np.array_equal(one.image[m], full.image[m]) and (one.image[~m] == 0).all()


def test_untiled_and_one_tile_give_the_same_pixels(codec, scene):
    """A tile as large as every crop is the untiled coding plus the length prefix."""
    img, gm = scene
    a = encode_image(img, gm, codec, quality=1.0, tile=0)
    b = encode_image(img, gm, codec, quality=1.0, tile=256)
    assert np.array_equal(decode_image(a.data, codec).image, decode_image(b.data, codec).image)
    ra, rb = StreamReader(a.data), StreamReader(b.data)
    for gid in ra.header.group_ids:
        assert unpack_tiles(rb.read_segment(gid), 1, gid) == [ra.read_segment(gid)]


def test_auto_tiling_above_the_pixel_threshold(codec, scene, monkeypatch):
    img, gm = scene
    assert StreamReader(encode_image(img, gm, codec, quality=0.0).data).header.tile_size == 0
    monkeypatch.setattr(encode, "AUTO_TILE_PIXELS", 10_000)
    monkeypatch.setattr(encode, "DEFAULT_TILE", 128)
    assert StreamReader(encode_image(img, gm, codec, quality=0.0).data).header.tile_size == 128
    with pytest.raises(ValueError, match="multiple of 64"):
        encode_image(img, gm, codec, quality=0.0, tile=100)


def test_malformed_tile_framing_fails_only_that_group(codec, scene):
    img, gm = scene
    enc = encode_image(img, gm, codec, quality=1.0, tile=64)
    rd = StreamReader(enc.data)
    bodies = {gid: rd.read_segment(gid) for gid in rd.header.group_ids}
    tiles = unpack_tiles(bodies[0], _n_tiles(rd, 0), 0)
    bodies[0] = pack_tiles(tiles[:-1])  # one tile short
    bodies[2] = bodies[2] + b"\x00"  # a byte after the last tile
    bad = build_stream(rd.header, bodies, stream_masks(enc.data))
    res = decode_image(bad, codec)
    assert res.decoded == [1] and set(res.failed) == {0, 2}
    assert "malformed" in res.failed[0] and "after its" in res.failed[2]
    with pytest.raises(CorruptSegmentError):
        unpack_tiles(b"\x05ab", 1, 7)


def test_tile_size_must_be_aligned_in_the_header(scene):
    _, gm = scene
    groups = tuple(GroupEntry(g.group_id, g.class_id, g.label, g.box, g.area, 256) for g in gm.groups)
    header = StreamHeader(gm.shape[1], gm.shape[0], "model-free", b"\0" * 8, 256, groups)
    bodies, masks = {g: b"x" for g in gm.ids}, encode_group_masks(gm.labels, groups)
    assert StreamReader(build_stream(replace(header, tile_size=64), bodies, masks)).header.tile_size == 64
    with pytest.raises(BitstreamError, match="tile size"):
        build_stream(replace(header, tile_size=100), bodies, masks)


def _n_tiles(rd: StreamReader, gid: int) -> int:
    """Tiles of group ``gid`` that hold at least one of its pixels."""
    g = rd.header.group(gid)
    m = rd.group_mask(gid)
    return sum(bool(crop.tile_mask(m, g.box, t, "cpu").any()) for t in group_tiles(g.box, rd.header.tile_size))
