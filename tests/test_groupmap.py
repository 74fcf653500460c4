"""Lossless group-map codecs: exact round trips, the smaller codec is chosen, corrupt data fails cleanly."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssc.bitstream.groupmap import MAP_CODEC_DELTA_DEFLATE, MAP_CODEC_ROWS, _encode_deflate, decode_group_map, encode_group_map
from ssc.errors import BitstreamError, SSCError
from ssc.masks import from_coco

from .conftest import COCO_VAL_ANN, require


def _roundtrip(labels, ids=None):
    ids_t = tuple(np.unique(labels).tolist()) if ids is None else tuple(ids)
    codec, data = encode_group_map(labels, None if ids is None else np.asarray(ids))
    back = decode_group_map(codec, data, *labels.shape, ids_t)
    assert np.array_equal(back, labels)
    return codec, data


def test_real_coco_map_uses_row_codec_and_beats_deflate():
    gm = from_coco(require(COCO_VAL_ANN), "000000000139.jpg")
    codec, data = _roundtrip(gm.labels)
    assert codec == MAP_CODEC_ROWS
    assert len(data) < 0.5 * len(_encode_deflate(gm.labels))


@pytest.mark.parametrize("shape", [(1, 1), (1, 50), (50, 1), (7, 300)])
def test_degenerate_shapes(shape):
    rng = np.random.default_rng(0)
    _roundtrip(rng.integers(0, 3, shape).astype(np.int32))


def test_noise_map_falls_back_to_deflate_when_smaller():
    rng = np.random.default_rng(1)
    lab = rng.integers(0, 2, (64, 64)).astype(np.int32)
    codec, _ = _roundtrip(lab)
    assert codec in (MAP_CODEC_DELTA_DEFLATE, MAP_CODEC_ROWS)


def test_sixteen_bit_ids_and_table_ids_not_all_present():
    lab = np.zeros((30, 40), np.int32)
    lab[5:20, 3:30] = 40000
    lab[22:28, 10:12] = 7
    _roundtrip(lab, ids=[0, 7, 12, 40000])


def test_values_outside_ids_rejected():
    with pytest.raises(ValueError):
        encode_group_map(np.array([[0, 5]]), np.array([0, 1]))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_random_blocky_maps_roundtrip(h, w, k, seed):
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.int32)
    for _ in range(k):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        lab[y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1)] = rng.integers(0, k + 1)
    _roundtrip(lab)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64), st.integers(1, 30), st.integers(1, 30), st.sampled_from([1, 2]))
def test_corrupt_map_data_fails_cleanly(data, h, w, codec):
    try:
        out = decode_group_map(codec, data, h, w, (0, 1, 2))
        assert out.shape == (h, w)
    except SSCError:
        pass


def test_unknown_codec():
    with pytest.raises(BitstreamError, match="unknown group-map codec"):
        decode_group_map(9, b"", 2, 2, (0,))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 5), st.integers(0, 2), st.integers(0, 10**6))
def test_compiled_row_walk_writes_the_reference_bytes(h, w, k, shape, seed):
    """The compiled encoder walk (batched models) writes byte for byte what the Python walk writes:
    noise, blobs and boxes, with plain and exclusive labels."""
    from ssc.bitstream.groupmap_rows import decode_rows, encode_rows, encode_rows_reference

    rng = np.random.default_rng(seed)
    if shape == 0:
        m = rng.integers(0, k, (h, w))
    elif shape == 1:
        yy, xx = np.mgrid[0:h, 0:w]
        m = (((yy - h / 2) ** 2 + (xx - w / 3) ** 2) < (max(h, w) / 3) ** 2).astype(np.int64) * (k - 1)
    else:
        m = np.zeros((h, w), np.int64)
        for _ in range(4):
            y0, y1 = np.sort(rng.integers(0, h, 2))
            x0, x1 = np.sort(rng.integers(0, w, 2))
            m[y0 : y1 + 1, x0 : x1 + 1] = rng.integers(0, k)
    for exclusive in (False, True) if k == 2 else (False,):
        data = encode_rows(m, k, exclusive)
        assert data == encode_rows_reference(m, k, exclusive)
        assert (decode_rows(data, h, w, k, exclusive) == m).all()
