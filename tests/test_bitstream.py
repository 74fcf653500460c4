"""Bitstream v5: golden bytes (pixel-exact and cell-owned groups, the compact table), random access
(header + own mask + own segment), group-local failure of corrupt masks and segments, truncation,
forged headers, varints, fuzzing, the raw-or-rows mask records, the vocabulary labels and the trimmed
rANS words; v1 to v4 streams still read."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssc.bitstream import GroupEntry, StreamHeader, StreamReader, build_stream, encode_group_masks, parse_header
from ssc.bitstream.format import PREAMBLE, VERSION, _encode_header_body, segment_overhead
from ssc.bitstream.wire import Cursor, crc32, varint
from ssc.errors import BitstreamError, CorruptSegmentError, GroupNotFoundError, ResourceLimitError, SSCError
from ssc.eval.fuzz_bitstream import exercise

GOLD = Path(__file__).parent / "golden"
GOLDEN = GOLD / "v5_three_groups.ssc"
GOLDEN_V4 = GOLD / "v4_three_groups.ssc"
GOLDEN_V3 = GOLD / "v3_three_groups.ssc"
GOLDEN_V2 = GOLD / "v2_three_groups.ssc"
GOLDEN_CELLS = GOLD / "v5_cells.ssc"
GOLDEN_CELLS_V4 = GOLD / "v4_cells.ssc"
GOLDEN_DENSE = GOLD / "v5_dense.ssc"
GOLDEN_CELLS_V3 = GOLD / "v3_cells.ssc"
GOLDEN_V1 = GOLD / "v1_three_groups.ssc"
BODIES = {0: b"\x01\x02\x03\x04", 1: b"person-bits", 7: b"dog" * 5}


def reference_labels() -> np.ndarray:
    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 3:12] = 1
    labels[10:18, 15:29] = 7
    labels[12:14, 20:22] = 0  # a hole: the dog's mask is not its box
    return labels


def reference_header() -> StreamHeader:
    labels = reference_labels()
    groups = (
        GroupEntry(0, 0, "background", (0, 0, 30, 20), int((labels == 0).sum()), 512),
        GroupEntry(1, 1, "person", (3, 2, 12, 8), 54, 768),
        GroupEntry(7, 18, "dog", (15, 10, 29, 18), 108, 512),
    )
    return StreamHeader(30, 20, "gi-hyper-ckbd-s", bytes(range(8)), 512, groups)


def reference_stream() -> bytes:
    """A fixed, model-free stream: the golden file pins these exact bytes."""
    h = reference_header()
    return build_stream(h, BODIES, encode_group_masks(reference_labels(), h.groups))


def cell_stream() -> bytes:
    """A fixed cell-owned stream (48 x 40 pixels, 3 x 3 cells, the last row and column partial) with
    the objects' exact masks: the second golden file."""
    from ssc.bitstream.groupmap import encode_cell_masks
    from ssc.masks.cells import cell_owners, cells_to_pixels

    labels = np.zeros((40, 44), np.int32)
    labels[3:14, 2:20] = 1  # person: cells (0, 0), (0, 1)
    labels[18:40, 30:44] = 7  # dog: cells (1, 1), (1, 2), (2, 1), (2, 2)
    labels[30:32, 35:37] = 0
    owners = cell_owners(labels)
    cells = cells_to_pixels(owners, labels.shape)
    groups = tuple(GroupEntry(g, c, n, box, int((cells == g).sum()), 512, object_box=obj) for g, c, n, box, obj in (
        (0, 0, "background", (0, 0, 44, 40), (0, 0, 44, 40)), (1, 1, "person", (0, 0, 32, 16), (2, 3, 20, 14)),
        (7, 18, "dog", (16, 16, 44, 40), (30, 18, 44, 40))))
    h = replace(reference_header(), width=44, height=40, groups=groups, cell=16, exact_masks=True)
    return build_stream(h, BODIES, encode_cell_masks(owners, labels, groups, 16)), labels, cells


def dense_stream() -> bytes:
    """A fixed stream with ids 0..n-1, one quality, vocabulary labels, a label the vocabulary does not
    have, a group with no class and two scaled groups: the third golden file (version 5's table)."""
    labels = np.zeros((16, 24), np.int32)
    labels[1:9, 2:10] = 1
    labels[9:15, 12:22] = 2
    labels[0:3, 18:24] = 3
    groups = tuple(GroupEntry(g, c, n, box, int((labels == g).sum()), 256, scale=s) for g, c, n, box, s in (
        (0, 0, "background", (0, 0, 24, 16), 1), (1, 1, "person", (2, 1, 10, 9), 0),
        (2, 1, "person (crowd)", (12, 9, 22, 15), 0), (3, 0, "", (18, 0, 24, 3), 2)))
    h = StreamHeader(24, 16, "gi-cell-m", bytes(range(8, 16)), 256, groups)
    return build_stream(h, {0: b"\1\2\3", 1: b"p" * 9, 2: b"c" * 5, 3: b"n"}, encode_group_masks(labels, groups))


def test_golden_bytes_are_stable():
    data = reference_stream()
    assert GOLDEN.read_bytes() == data, "bitstream layout changed: bump VERSION and regenerate the golden file"
    assert GOLDEN_CELLS.read_bytes() == cell_stream()[0], "cell-owned layout changed: bump VERSION, regenerate"
    assert GOLDEN_DENSE.read_bytes() == dense_stream(), "compact table changed: bump VERSION, regenerate"


def test_compact_table_names_vocabulary_classes_by_id_and_drops_dense_ids_and_one_quality():
    """Version 5: ids 0..n-1 and a single quality leave their fields out; labels the vocabulary has
    are referred to by class id, only others go into the dictionary."""
    from ssc.bitstream.format import FLAG_DENSE_IDS, FLAG_SCALES, FLAG_UNIFORM_QUALITY, _label_table

    rd = StreamReader(GOLDEN_DENSE.read_bytes())
    h = rd.header
    assert [(g.group_id, g.class_id, g.label, g.quality, g.scale) for g in h.groups] == [
        (0, 0, "background", 256, 1), (1, 1, "person", 256, 0), (2, 1, "person (crowd)", 256, 0), (3, 0, "", 256, 2)]
    assert _label_table(h)[0] == [(1, "person (crowd)")]
    body = GOLDEN_DENSE.read_bytes()[PREAMBLE.size :]
    flags_at = 1 + 3 + 1 + len(h.model_id) + 8 + 2 + 1 + 1 + 1  # kind .. cell (all one-byte varints)
    assert body[flags_at] == FLAG_DENSE_IDS | FLAG_UNIFORM_QUALITY | FLAG_SCALES
    assert rd.read_segment(2) == b"c" * 5 and rd.group_mask(3).all()
    # the same table with ids that are not dense and two qualities codes those fields again
    sparse = replace(h, groups=tuple(replace(g, group_id=2 * g.group_id, quality=g.group_id) for g in h.groups))
    assert len(_encode_header_body(sparse)) == len(_encode_header_body(h)) + 2 * len(h.groups)
    # version 4 has neither flag (nor vocabulary references)
    with pytest.raises(BitstreamError, match="flags"):
        parse_header(PREAMBLE.pack(b"SSC", 4, h.header_length, crc32(body[: h.header_length])) + body)


def test_rans_words_lose_their_zero_high_bytes_and_decode_padded():
    from ssc.bitstream.rans import SymbolReader, SymbolWriter, _U16, pad_words, trim_words

    for value, n in ((1, 1), (7, 3), (65535, 2), (0, 0)):
        w = SymbolWriter()
        w.write(np.full(n, value, np.int32), _U16)
        data = w.finish()
        assert len(data) % 4 or not data or data[-1] != 0  # nothing left to trim
        r = SymbolReader(data)
        assert r.read(_U16, n).tolist() == [value] * n
        r.check_end()
    assert trim_words(b"abcd\x05\x00\x00\x00") == b"abcd\x05" and pad_words(b"abcd\x05") == b"abcd\x05\x00\x00\x00"
    assert trim_words(b"\0\0\0\0") == b"\0" and trim_words(b"abcd") == b"abcd"


@pytest.mark.parametrize("path, version", [(GOLDEN_CELLS, 5), (GOLDEN_CELLS_V4, 4), (GOLDEN_CELLS_V3, 3)])
def test_cell_owned_golden_reads_cells_and_exact_masks(path, version):
    """Each group's mask is its cells (what its segment codes); the exact masks are metadata; the
    object boxes are pixel-exact; decoding one group reads its record and segment only."""
    _, labels, cells = cell_stream()
    rd = StreamReader(path.read_bytes())
    h = rd.header
    assert (h.version, h.cell, h.exact_masks) == (version, 16, True)
    assert h.group(1).box == (0, 0, 32, 16) and h.group(1).obj_box == (2, 3, 20, 14)
    assert rd.read_segment(7) == BODIES[7]
    assert rd.bytes_read == h.masks_offset + h.group(7).seg_length  # preamble, header, the segment
    assert np.array_equal(rd.group_map, cells)
    for g in h.groups:
        a0, b0, a1, b1 = g.obj_box
        assert np.array_equal(rd.object_mask(g.group_id), labels[b0:b1, a0:a1] == g.group_id)
    if version < VERSION:
        return  # the forgeries below are written in the current version
    with pytest.raises(BitstreamError, match="past the image"):
        bad = replace(h, groups=tuple(replace(g, box=(0, 0, 64, 16)) if g.group_id == 1 else g for g in h.groups))
        StreamReader(_forge(bad, GOLDEN_CELLS.read_bytes()))
    with pytest.raises(BitstreamError, match="cell grid"):
        build_stream(replace(h, groups=tuple(replace(g, box=(0, 0, 40, 16)) if g.group_id == 1 else g for g in h.groups)),
                     BODIES, {1: b"x", 7: b"y"})
        StreamReader(_forge(bad, GOLDEN_CELLS.read_bytes()))


@pytest.mark.parametrize("path, version", [(GOLDEN, 5), (GOLDEN_V4, 4), (GOLDEN_V3, 3), (GOLDEN_V2, 2)])
def test_golden_parses_to_expected_header_masks_and_segments(path, version):
    rd = StreamReader(path.read_bytes())
    h = rd.header
    assert (h.version, h.width, h.height, h.model_id, h.weights_id, h.quality) == (version, 30, 20, "gi-hyper-ckbd-s", bytes(range(8)), 512)
    assert h.group_ids == (0, 1, 7)
    assert [g.label for g in h.groups] == ["background", "person", "dog"]
    assert [g.class_id for g in h.groups] == [0, 1, 18]
    assert [g.quality for g in h.groups] == [512, 768, 512]
    assert h.group(7).box == (15, 10, 29, 18)
    assert h.complement.group_id == 0
    for gid, body in BODIES.items():
        assert rd.read_segment(gid) == body
    assert np.array_equal(rd.group_map, reference_labels())
    assert rd.group_mask(1).all() and rd.group_mask(1).shape == (6, 9)


def test_v1_streams_still_decode():
    rd = StreamReader(GOLDEN_V1.read_bytes())
    h = rd.header
    assert h.version == 1 and h.complement is None
    assert (h.width, h.height, h.model_id, h.quality) == (30, 20, "gi-hyper-ckbd-s", 512)
    assert [g.label for g in h.groups] == ["background", "person", "dog"]
    assert rd.read_segment(1) == b"person-bits"
    assert rd.read_segment(7) == b"dogdogdogdogdog"
    assert int(rd.group_map[12, 20]) == 7
    assert rd.group_mask(7).all() and rd.group_mask(0).sum() == h.group(0).area


def test_v4_streams_read_beside_v5():
    """The same three groups in version 4 and 5: equal tables, version 5's shorter."""
    new, old = StreamReader(GOLDEN.read_bytes()).header, StreamReader(GOLDEN_V4.read_bytes()).header
    assert [(g.group_id, g.class_id, g.label, g.box, g.area, g.quality) for g in new.groups] == [
        (g.group_id, g.class_id, g.label, g.box, g.area, g.quality) for g in old.groups]
    assert new.header_length < old.header_length


def test_compact_header_is_smaller_than_v1():
    h = StreamReader(reference_stream()).header
    v1 = StreamReader(GOLDEN_V1.read_bytes()).header  # the same three groups, in version 1
    assert h.header_length + h.masks_length < v1.header_length
    assert h.header_length < 0.5 * v1.header_length


def test_random_access_reads_only_header_own_mask_and_own_segment():
    rd = StreamReader(reference_stream())
    start = rd.bytes_read
    assert start == rd.header.masks_offset
    rd.group_mask(1)
    rd.read_segment(1)
    g = rd.header.group(1)
    assert rd.bytes_read == start + g.mask_length + g.seg_length


def test_complement_reads_every_other_mask_and_is_the_rest():
    data = reference_stream()
    rd = StreamReader(data)
    start = rd.bytes_read
    m0 = rd.group_mask(0)
    assert rd.bytes_read == start + rd.header.masks_length
    assert np.array_equal(m0, reference_labels() == 0)


def test_corrupt_segment_fails_only_that_group():
    data = bytearray(reference_stream())
    h = StreamReader(bytes(data)).header
    data[h.payload_offset + h.group(1).seg_offset + 8] ^= 0xFF
    rd = StreamReader(bytes(data))
    with pytest.raises(CorruptSegmentError) as ei:
        rd.read_segment(1)
    assert ei.value.group_id == 1
    assert rd.read_segment(0) == BODIES[0]
    assert rd.read_segment(7) == BODIES[7]


def test_corrupt_mask_fails_its_group_and_the_complement_only():
    data = bytearray(reference_stream())
    h = StreamReader(bytes(data)).header
    data[h.masks_offset + h.group(1).mask_offset] ^= 0x01
    rd = StreamReader(bytes(data))
    with pytest.raises(CorruptSegmentError, match="mask") as ei:
        rd.group_mask(1)
    assert ei.value.group_id == 1
    with pytest.raises(CorruptSegmentError, match="needs the mask of group 1") as ei:
        rd.group_mask(0)
    assert ei.value.group_id == 0
    assert np.array_equal(rd.group_mask(7), reference_labels()[10:18, 15:29] == 7)
    assert rd.read_segment(1) == BODIES[1]  # the segment itself is intact


def test_truncated_payload_fails_only_the_cut_groups():
    data = reference_stream()
    rd = StreamReader(data[:-3])
    with pytest.raises(CorruptSegmentError, match="segment missing") as ei:
        rd.read_segment(7)
    assert ei.value.group_id == 7
    assert rd.read_segment(0) == BODIES[0] and rd.read_segment(1) == BODIES[1]
    assert rd.group_mask(7).sum() == 108


def test_unknown_group():
    with pytest.raises(GroupNotFoundError):
        StreamReader(reference_stream()).read_segment(3)
    with pytest.raises(GroupNotFoundError):
        StreamReader(reference_stream()).group_mask(3)


@pytest.mark.parametrize(
    "mutate, err",
    [
        (lambda d: b"XYZ" + d[3:], "not an ssc stream"),
        (lambda d: d[:3] + b"\x09" + d[4:], "unsupported ssc bitstream version"),
        (lambda d: d[:10], "shorter than"),
        (lambda d: d[:40], "truncated"),
        (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "header CRC"),
        (lambda d: d + b"\0", "after the last segment"),
        (lambda d: b"", "shorter than"),
    ],
)
def test_malformed_streams_are_refused(mutate, err):
    with pytest.raises(BitstreamError, match=err):
        StreamReader(mutate(reference_stream()))


def test_stream_cut_inside_the_mask_section_is_refused():
    data = reference_stream()
    h = StreamReader(data).header
    with pytest.raises(BitstreamError, match="mask section"):
        StreamReader(data[: h.masks_offset + 2])


def _forge(header: StreamHeader, data: bytes | None = None) -> bytes:
    """A stream whose header is ``header`` (re-encoded, valid CRC) followed by the original masks and
    payload: reaches the semantic checks behind the CRC."""
    data = reference_stream() if data is None else data
    old = StreamReader(data).header
    body = _encode_header_body(header)
    return PREAMBLE.pack(b"SSC", VERSION, len(body), crc32(body)) + body + data[old.masks_offset :]


def _groups(**changes) -> tuple[GroupEntry, ...]:
    h = StreamReader(reference_stream()).header
    return tuple(replace(g, **changes.get(str(g.group_id), {})) for g in h.groups)


def test_forged_headers_are_refused():
    h = StreamReader(reference_stream()).header
    cases = [
        (replace(h, width=100000, height=100000), ResourceLimitError, "exceeds the limit"),
        (replace(h, width=10), BitstreamError, "outside"),
        (replace(h, height=21), BitstreamError, "areas sum"),
        (replace(h, groups=_groups(**{"1": {"mask_length": 0}})), BitstreamError, "exactly one group"),
        (replace(h, groups=_groups(**{"1": {"seg_length": 3}})), BitstreamError, "too small"),
        (replace(h, mask_codec=9), BitstreamError, "mask codec"),
    ]
    for forged, err, match in cases:
        with pytest.raises(err, match=match):
            StreamReader(_forge(forged))


def test_forged_segment_length_fails_the_groups_it_misframes():
    h = StreamReader(reference_stream()).header
    rd = StreamReader(_forge(replace(h, groups=_groups(**{"1": {"seg_length": h.group(1).seg_length + 9}}))))
    assert rd.read_segment(0) == BODIES[0]
    for gid in (1, 7):
        with pytest.raises(CorruptSegmentError):
            rd.read_segment(gid)


def test_forged_area_is_caught_by_the_mask_check():
    h = StreamReader(reference_stream()).header
    forged = replace(h, groups=_groups(**{"1": {"area": 53}, "0": {"area": h.group(0).area + 1}}))
    rd = StreamReader(_forge(forged))
    with pytest.raises(CorruptSegmentError, match="table says 53"):
        rd.group_mask(1)
    with pytest.raises(CorruptSegmentError):
        rd.group_mask(0)
    assert rd.group_mask(7).sum() == 108


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**64 - 1])
def test_varint_roundtrip(value):
    b = varint(value)
    c = Cursor(b)
    assert c.varint("v") == value and c.pos == len(b)


@pytest.mark.parametrize("raw, err", [(b"\x80\x00", "redundant"), (b"\xff" * 11, "longer"), (b"\x80", "truncated"),
                                      (b"\xff" * 9 + b"\x7f", "64 bits")])
def test_bad_varints(raw, err):
    with pytest.raises(BitstreamError, match=err):
        Cursor(raw).varint("v")


def test_segment_framing():
    rd = StreamReader(reference_stream())
    assert all(g.seg_length == len(BODIES[g.group_id]) + segment_overhead(VERSION) for g in rd.header.groups)
    masks = encode_group_masks(reference_labels(), rd.header.groups)
    with pytest.raises(BitstreamError):
        build_stream(rd.header, {0: b"", 1: b""}, masks)  # missing group 7
    with pytest.raises(BitstreamError, match="every group but one"):
        build_stream(rd.header, BODIES, {})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_bit_flips_truncations_and_splices(data):
    ref = data.draw(st.sampled_from([reference_stream(), GOLDEN_V1.read_bytes(), GOLDEN_V2.read_bytes(),
                                     GOLDEN_V3.read_bytes(), GOLDEN_V4.read_bytes(), GOLDEN_CELLS.read_bytes(),
                                     GOLDEN_CELLS_V3.read_bytes(), GOLDEN_CELLS_V4.read_bytes(),
                                     GOLDEN_DENSE.read_bytes()]))
    kind = data.draw(st.sampled_from(["flip", "truncate", "splice", "random"]))
    if kind == "flip":
        b = bytearray(ref)
        for pos in data.draw(st.lists(st.integers(0, len(ref) - 1), min_size=1, max_size=8)):
            b[pos] ^= 1 << data.draw(st.integers(0, 7))
        blob = bytes(b)
    elif kind == "truncate":
        blob = ref[: data.draw(st.integers(0, len(ref)))]
    elif kind == "splice":
        at = data.draw(st.integers(0, len(ref)))
        blob = ref[:at] + data.draw(st.binary(max_size=64)) + ref[at:]
    else:
        blob = b"SSC" + bytes([data.draw(st.sampled_from([1, 2, 3, 4, 5]))]) + data.draw(st.binary(max_size=200))
    exercise(blob)  # raises on anything but an ssc error


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 2, 3, 4, 5]), st.binary(min_size=0, max_size=300))
def test_fuzz_forged_header_bodies_with_valid_crc(version, body):
    blob = PREAMBLE.pack(b"SSC", version, len(body), crc32(body)) + body
    try:
        parse_header(blob, stream_length=len(blob))
    except SSCError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_forged_table_fields_behind_a_valid_crc(data):
    """Random table values (areas, boxes, object boxes, lengths, label refs) with a valid header CRC,
    in pixel-exact and cell-owned streams."""
    src = data.draw(st.sampled_from([reference_stream(), GOLDEN_CELLS.read_bytes(), GOLDEN_DENSE.read_bytes()]))
    h = StreamReader(src).header
    g = data.draw(st.sampled_from(h.groups))
    field_name = data.draw(st.sampled_from(["area", "box", "object_box", "mask_length", "seg_length", "quality",
                                            "class_id", "label", "group_id"]))
    if field_name in ("box", "object_box"):
        value = tuple(data.draw(st.integers(0, 40)) for _ in range(4))
    elif field_name == "label":
        value = data.draw(st.sampled_from(["", "person", "dog", "background", "x" * 40]))
    else:
        value = data.draw(st.integers(0, 2**33))
    groups = tuple(replace(x, **{field_name: value}) if x is g else x for x in h.groups)
    try:
        blob = _forge(replace(h, groups=groups), src)
    except SSCError:
        return  # not encodable (e.g. an inverted box)
    exercise(blob)


def test_mask_records_are_raw_where_that_is_shorter_and_told_apart_by_length():
    """Mask codec 4: the encoder keeps the shorter of the row coding and the raw bitmap; a record of
    exactly ceil(n / 8) bytes is the bitmap (its padding bits must be zero), any other the row coding."""
    from ssc.bitstream.groupmap import decode_group_mask, encode_group_mask, raw_length

    rng = np.random.default_rng(0)
    cases = [np.ones((1, 1), bool), np.ones((3, 5), bool), rng.random((7, 9)) < 0.5,
             np.pad(np.ones((30, 40), bool), 10)]  # a big blob: the row coding wins
    for m in cases:
        raw, rows = encode_group_mask(m, raw=True), encode_group_mask(m)
        assert len(raw) == min(len(rows), raw_length(m.size)) or (len(rows) == raw_length(m.size) and len(raw) == len(rows))
        assert np.array_equal(decode_group_mask(raw, *m.shape, raw=True), m)
        assert np.array_equal(decode_group_mask(rows, *m.shape), m)
    assert len(encode_group_mask(np.ones((1, 1), bool), raw=True)) == 1  # one full cell: one byte
    assert len(encode_group_mask(cases[-1], raw=True)) < raw_length(cases[-1].size)
    with pytest.raises(BitstreamError, match="padding"):
        decode_group_mask(b"\xff", 1, 3, raw=True)
    # the reference stream's person is its whole box (54 pixels): one rANS word (raw: 7 bytes), a CRC-16
    assert StreamReader(reference_stream()).header.group(1).mask_length == 4 + 2


@pytest.mark.slow
def test_long_mutation_fuzz_finds_no_crash(tmp_path):
    """Minutes-long version of the fuzz above (``make test-slow``)."""
    from ssc.eval.fuzz_bitstream import main as fuzz_main

    assert fuzz_main(["--seconds", "120", "--out", str(tmp_path)]) == 0


def test_vocabulary_is_cocos_categories():
    """The v5 vocabulary names COCO 2017's categories by their ids (checked against the annotations)."""
    import json

    from ssc.bitstream.vocab import VOCABULARY

    from .conftest import COCO_VAL_ANN, require

    cats = {c["id"]: c["name"] for c in json.loads(require(COCO_VAL_ANN).read_text())["categories"]}
    assert {k: v for k, v in VOCABULARY.items() if k} == cats and VOCABULARY[0] == "background"
