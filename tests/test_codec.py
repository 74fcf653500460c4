"""The group codec: exact latent round trip, the independence invariant tested literally,
corruption isolation and the variable-rate contract."""
import math

import numpy as np
import pytest
import torch

from ssc.api import decode_image, encode_image
from ssc.crop import group_crop
from ssc.bitstream import StreamReader, build_stream
from ssc.errors import GroupNotFoundError, MaskError, SSCError, WeightsError
from ssc.masks import GroupMap

from .conftest import make_codec, synthetic_scene


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "coverage"])
def codec(request):
    """Every test runs on a plain codec and on one whose entropy model sees the cell coverage."""
    return make_codec(coverage=request.param)


@pytest.fixture(scope="module")
def scene():
    img, lab = synthetic_scene()
    return img, GroupMap.from_labels(lab, {1: (1, "person"), 2: (3, "car")})


def test_forward_contract(codec):
    m = codec.model.train()
    x = torch.rand(2, 3, 64, 128)
    mask = torch.ones(2, 1, 64, 128)
    mask[1, :, 10:40, 5:60] = 0
    out = m(x, mask, torch.tensor([0.0, 1.0]))
    m.eval()
    assert out.x_hat.shape == x.shape
    assert (out.x_hat[1][:, mask[1, 0] == 0] == 0).all()
    assert out.bpp.shape == (2,) and (out.bpp > 0).all()
    out.bpp.sum().backward()


def test_decoder_latents_equal_encoder_latents(codec, scene):
    img, gm = scene
    x, mask = group_crop(img, gm.labels, gm.group(1).box, 1, torch.device("cpu"))
    body, y_enc = codec.model.compress_latents(x, mask, 0.5)
    assert torch.equal(codec.model.decompress_latents(body, mask), y_enc)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.equal(codec.model.decompress_latents(body, mask), y_enc)
        assert codec.model.compress_group(x, mask, 0.5) == body
    finally:
        torch.set_num_threads(old)


def test_escape_coding_of_large_latents(codec):
    """Values far outside every table's range must survive (escape symbols), never be clipped."""
    m = make_codec(seed=4).model
    with torch.no_grad():
        m.log_gain.fill_(math.log(5000.0))
    x = torch.rand(1, 3, 64, 64)
    mask = torch.ones(1, 1, 64, 64)
    body, y = m.compress_latents(x, mask, 1.0)
    assert y.abs().max() > 3000  # beyond the largest table range (1024)
    assert torch.equal(m.decompress_latents(body, mask), y)


def aligned_scene() -> tuple[np.ndarray, GroupMap]:
    """Masks on the 16-pixel cell grid: a group's cells are exactly its pixels."""
    img, _ = synthetic_scene()
    lab = np.zeros(img.shape[:2], np.int32)
    lab[16:48, 16:64] = 1
    lab[64:96, 80:128] = 2
    return img, GroupMap.from_labels(lab, {1: (1, "person"), 2: (3, "car")})


@pytest.mark.parametrize("cells, aligned", [(True, False), (True, True), (False, False)],
                         ids=["cells", "cells-aligned-masks", "pixel-groups"])
def test_independence_noise_outside_a_groups_cells_changes_none_of_its_pixels(codec, scene, cells, aligned):
    """The invariant, literally: noise everywhere outside group 1's cells (cell-owned streams; its
    pixels in pixel-exact ones) leaves its segment and its decoded pixels bit for bit the same."""
    img, gm = aligned_scene() if aligned else scene
    a = encode_image(img, gm, codec, quality=0.7, cells=cells)
    region = StreamReader(a.data).group_map == 1
    assert not cells or region.sum() >= (gm.labels == 1).sum()
    img2 = img.copy()
    rng = np.random.default_rng(9)
    img2[~region] = rng.integers(0, 256, (int((~region).sum()), 3), dtype=np.uint8)
    b = encode_image(img2, gm, codec, quality=0.7, cells=cells)
    ra, rb = StreamReader(a.data), StreamReader(b.data)
    assert ra.read_segment(1) == rb.read_segment(1)
    assert ra.read_segment(0) != rb.read_segment(0)
    da, db = decode_image(a.data, codec, groups=[1]), decode_image(b.data, codec, groups=[1])
    assert np.array_equal(da.image, db.image) and np.array_equal(da.group_map == 1, region)


@pytest.mark.parametrize("cells", [True, False], ids=["cells", "pixel-groups"])
def test_independence_decode_group_from_stream_without_other_segments(codec, scene, cells):
    from ssc.eval.fuzz_bitstream import stream_masks

    img, gm = scene
    enc = encode_image(img, gm, codec, quality=1.0, cells=cells)
    rd = StreamReader(enc.data)
    # rebuild a stream in which every other group's mask and segment is garbage of another length
    bodies = {g: (rd.read_segment(g) if g == 2 else b"\x00" * 3) for g in rd.header.group_ids}
    assert rd.header.complement.group_id == 0
    masks = {g: (stream_masks(enc.data)[2] if g == 2 else b"\xff" * 5) for g in rd.header.group_ids if g != 0}
    stripped = build_stream(rd.header, bodies, masks)
    full = decode_image(enc.data, codec)
    alone = decode_image(stripped, codec, groups=[2])
    m = rd.group_map == 2
    assert alone.decoded == [2]
    assert np.array_equal(alone.image[m], full.image[m])
    assert (alone.image[~m] == 0).all()
    sh = StreamReader(stripped).header
    assert alone.bytes_read == sh.masks_offset + sh.group(2).mask_length + sh.group(2).seg_length


def test_corrupted_segment_fails_only_its_group(codec, scene):
    img, gm = scene
    enc = encode_image(img, gm, codec, quality=1.0)
    h = StreamReader(enc.data).header
    bad = bytearray(enc.data)
    bad[h.payload_offset + h.group(1).seg_offset + 7] ^= 0x10
    full = decode_image(enc.data, codec)
    res = decode_image(bytes(bad), codec)
    assert set(res.failed) == {1} and "CRC" in res.failed[1]
    assert res.decoded == [0, 2]
    for gid in (0, 2):
        m = res.group_map == gid
        assert np.array_equal(res.image[m], full.image[m])


def test_selection_by_class_and_unknown_groups(codec, scene):
    img, gm = scene
    enc = encode_image(img, gm, codec, quality=1.0)
    assert decode_image(enc.data, codec, classes=["car"]).decoded == [2]
    with pytest.raises(GroupNotFoundError):
        decode_image(enc.data, codec, groups=[5])
    with pytest.raises(GroupNotFoundError, match="class"):
        decode_image(enc.data, codec, classes=["zebra"])


def test_roi_quality_spends_more_bits_on_the_object(codec, scene):
    img, gm = scene
    lo = encode_image(img, gm, codec, quality=0.0)
    roi = encode_image(img, gm, codec, quality=0.0, group_quality={1: 1.0})
    assert roi.header.group(1).quality == 256 and roi.header.group(0).quality == 0
    assert roi.bytes_per_group[0] == lo.bytes_per_group[0]
    dec = decode_image(roi.data, codec, groups=[1])
    assert dec.decoded == [1]


def test_bad_inputs(codec, scene):
    img, gm = scene
    with pytest.raises(MaskError):
        encode_image(img[:50], gm, codec)
    with pytest.raises(ValueError, match="quality"):
        encode_image(img, gm, codec, quality=7)
    with pytest.raises(SSCError):
        encode_image(img.astype(np.float32), gm, codec)
    enc = encode_image(img, gm, codec, quality=0.0)
    other = make_codec(seed=1, name="other")
    with pytest.raises(WeightsError, match="coded with model"):
        decode_image(enc.data, other)
