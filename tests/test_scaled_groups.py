"""Scaled groups (bitstream v5): a group coded at 1/2 or 1/4 size and upsampled on decode, for a
background a detector reads only as context (issue 37). The reduction rules, the independence
invariant with a scaled neighbour and a scaled group itself, the table field, forged scales, the CLI."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from ssc.api import decode_image, encode_image
from ssc.bitstream import StreamReader
from ssc.bitstream.format import FLAG_SCALES, PREAMBLE, _encode_header_body
from ssc.bitstream.wire import crc32, varint
from ssc.crop import reduce_image, reduce_mask, reduced_box, upsample_group
from ssc.errors import BitstreamError
from ssc.masks import GroupMap

from .conftest import synthetic_scene


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, GroupMap]:
    img, lab = synthetic_scene()
    return img, GroupMap.from_labels(lab, {1: (1, "person"), 2: (3, "car")})


def test_reduction_rules():
    box = (3, 5, 11, 9)  # x0, y0, x1, y1: blocks of 2 from the image origin
    assert reduced_box(box, 2) == (1, 2, 6, 5) and reduced_box(box, 4) == (0, 1, 3, 3)
    m = np.zeros((4, 8), bool)
    m[0, 0] = True  # pixel (3, 5): block (1, 2), the reduced box's top-left
    m[3, 7] = True  # pixel (10, 8): block (5, 4)
    r = reduce_mask(m, box, 2)
    assert r.shape == (3, 5) and r.sum() == 2 and r[0, 0] and r[2, 4]
    img = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3) * 5
    small = reduce_image(img, 2)
    assert small.shape == (3, 2, 3)
    assert small[0, 0, 0] == np.floor(img[:2, :2, 0].astype(float).mean() + 0.5)
    assert small[2, 1, 1] == img[4, 2, 1]  # the edge block repeats the last row and column


def test_size_factors_map_to_scale_fields():
    from ssc.bitstream.format import scale_of

    assert [scale_of(f) for f in (1, 2, 4)] == [0, 1, 2]
    for bad in (0, 3, 8):
        with pytest.raises(ValueError, match="not one of 1, 2, 4"):
            scale_of(bad)


def test_upsampling_uses_the_groups_own_pixels_only():
    pix = np.full((4, 4, 3), 100, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[:, :2] = True
    pix[:, 2:] = 255  # not the group's: must not leak into its pixels
    up = upsample_group(pix, mask, 2)
    assert up.shape == (8, 8, 3)
    assert (up[:, :4] == 100).all()  # the group's area: exactly its value, also next to the outside
    flat = upsample_group(np.full((3, 5, 3), 77, np.uint8), np.ones((3, 5), bool), 4)
    assert (flat == 77).all() and flat.shape == (12, 20, 3)


@pytest.mark.parametrize("scale", [1, 2])
def test_scaled_background_is_cheaper_and_leaves_the_other_groups_bit_exact(codec, scene, scale):
    img, gm = scene
    full = encode_image(img, gm, codec, quality=1.0)
    small = encode_image(img, gm, codec, quality=1.0, group_scale={0: scale})
    hf, hs = StreamReader(full.data).header, StreamReader(small.data).header
    assert [g.scale for g in hs.groups] == [scale, 0, 0]
    assert hs.group(0).seg_length < hf.group(0).seg_length
    rf, rs = StreamReader(full.data), StreamReader(small.data)
    for gid in (1, 2):  # the other groups' segments and pixels do not change
        assert rf.read_segment(gid) == rs.read_segment(gid)
    a, b = decode_image(full.data, codec), decode_image(small.data, codec)
    assert a.decoded == b.decoded == [0, 1, 2]
    objects = b.group_map > 0
    assert np.array_equal(a.image[objects], b.image[objects])
    bg = b.group_map == 0
    assert b.image[bg].std() > 0 and not np.array_equal(a.image[bg], b.image[bg])  # decoded, at another size
    alone = decode_image(small.data, codec, groups=[0])
    assert np.array_equal(alone.image[bg], b.image[bg])


def test_noise_outside_a_scaled_groups_region_changes_none_of_its_pixels(codec, scene):
    """The invariant for a scaled group itself: its reduced pixels come from its own region only."""
    img, gm = scene
    a = encode_image(img, gm, codec, quality=1.0, group_scale={2: 1})
    region = StreamReader(a.data).group_map == 2
    img2 = img.copy()
    rng = np.random.default_rng(4)
    img2[~region] = rng.integers(0, 256, (int((~region).sum()), 3), dtype=np.uint8)
    b = encode_image(img2, gm, codec, quality=1.0, group_scale={2: 1})
    assert StreamReader(a.data).read_segment(2) == StreamReader(b.data).read_segment(2)
    da, db = decode_image(a.data, codec, groups=[2]), decode_image(b.data, codec, groups=[2])
    assert np.array_equal(da.image, db.image)


def test_scale_field_only_when_used_and_forged_scales_refused(codec, scene):
    img, gm = scene
    plain = StreamReader(encode_image(img, gm, codec, quality=1.0).data).header
    data = encode_image(img, gm, codec, quality=1.0, group_scale={0: 1}).data
    h = StreamReader(data).header
    assert h.header_length == plain.header_length + len(h.groups)  # one byte per group, only when used
    fixed = [h.width, h.height, h.frames]  # kind u8, these varints, model_id str8, weights, quality, codec, tile, cell
    flags_at = (PREAMBLE.size + 1 + sum(len(varint(v)) for v in fixed) + 1 + len(h.model_id) + 8
                + len(varint(h.quality)) + 1 + len(varint(h.tile_size)) + len(varint(h.cell)))
    assert data[flags_at] & FLAG_SCALES and not plain.groups[0].scale
    forged = replace(h, groups=tuple(replace(g, scale=3) if g.group_id == 0 else g for g in h.groups))
    body = _encode_header_body(forged)
    blob = PREAMBLE.pack(b"SSC", 5, len(body), crc32(body)) + body + data[h.masks_offset :]
    with pytest.raises(BitstreamError, match="scale 3"):
        StreamReader(blob)
    with pytest.raises(ValueError, match="outside"):
        encode_image(img, gm, codec, group_scale={0: 3})
    with pytest.raises(Exception, match="not in the group map"):
        encode_image(img, gm, codec, group_scale={9: 1})


def test_cli_group_scale(zoo_env, tmp_path, scene, capsys):
    from PIL import Image

    from ssc.cli import main

    img, gm = scene
    Image.fromarray(img).save(tmp_path / "x.png")
    Image.fromarray(gm.labels.astype(np.uint8)).save(tmp_path / "map.png")
    args = ["encode", str(tmp_path / "x.png"), "--masks", f"png:{tmp_path / 'map.png'}", "--model", "test-small"]
    assert main(args + ["-o", str(tmp_path / "a.ssc"), "--group-scale", "background=2"]) == 0
    assert [g.scale for g in StreamReader(tmp_path / "a.ssc").header.groups] == [1, 0, 0]
    capsys.readouterr()
    assert main(["info", str(tmp_path / "a.ssc"), "--json"]) == 0
    assert [g["size"] for g in json.loads(capsys.readouterr().out)["groups"]] == ["1/2", "1/1", "1/1"]
    assert main(args + ["-o", str(tmp_path / "b.ssc"), "--group-scale", "background=3"]) != 0
    assert main(args + ["-o", str(tmp_path / "c.ssc"), "--group-scale", "tree=2"]) != 0
