import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssc.bitstream import GroupEntry, StreamHeader, StreamReader, build_stream, encode_group_map, parse_header
from ssc.bitstream.format import PREAMBLE, SEGMENT_OVERHEAD, crc32
from ssc.eval.fuzz_bitstream import exercise
from ssc.errors import BitstreamError, CorruptSegmentError, GroupNotFoundError, ResourceLimitError, SSCError

GOLDEN = Path(__file__).parent / "golden" / "v1_three_groups.ssc"


def reference_stream() -> bytes:
    """A fixed, model-free stream: the golden file pins these exact bytes."""
    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 3:12] = 1
    labels[10:18, 15:29] = 7
    codec, mbytes = encode_group_map(labels)
    groups = (
        GroupEntry(0, 0, "background", (0, 0, 30, 20), int((labels == 0).sum()), 512),
        GroupEntry(1, 1, "person", (3, 2, 12, 8), 54, 768),
        GroupEntry(7, 18, "dog", (15, 10, 29, 18), 112, 512),
    )
    h = StreamHeader(30, 20, "gi-hyper-ckbd-s", bytes(range(8)), 512, groups, codec, mbytes)
    return build_stream(h, {0: b"\x01\x02\x03\x04", 1: b"person-bits", 7: b"dog" * 5})


def test_golden_bytes_are_stable():
    data = reference_stream()
    assert GOLDEN.read_bytes() == data, "bitstream layout changed: bump VERSION and regenerate the golden file"


def test_golden_parses_to_expected_header():
    rd = StreamReader(GOLDEN.read_bytes())
    h = rd.header
    assert (h.width, h.height, h.model_id, h.weights_id, h.quality) == (30, 20, "gi-hyper-ckbd-s", bytes(range(8)), 512)
    assert h.group_ids == (0, 1, 7)
    assert [g.label for g in h.groups] == ["background", "person", "dog"]
    assert h.group(7).box == (15, 10, 29, 18)
    assert rd.read_segment(1) == b"person-bits"
    assert rd.read_segment(7) == b"dogdogdogdogdog"
    assert int(rd.group_map[12, 20]) == 7


def test_random_access_reads_only_header_map_and_segment():
    data = reference_stream()
    rd = StreamReader(data)
    header_bytes = rd.bytes_read
    assert header_bytes == rd.header.payload_offset
    rd.read_segment(1)
    assert rd.bytes_read == header_bytes + rd.header.group(1).seg_length


def test_corrupt_segment_fails_only_that_group():
    data = bytearray(reference_stream())
    rd0 = StreamReader(bytes(data))
    g1 = rd0.header.group(1)
    data[rd0.header.payload_offset + g1.seg_offset + 8] ^= 0xFF
    rd = StreamReader(bytes(data))
    with pytest.raises(CorruptSegmentError) as ei:
        rd.read_segment(1)
    assert ei.value.group_id == 1
    assert rd.read_segment(0) == b"\x01\x02\x03\x04"
    assert rd.read_segment(7) == b"dog" * 5


def test_unknown_group():
    with pytest.raises(GroupNotFoundError):
        StreamReader(reference_stream()).read_segment(3)


@pytest.mark.parametrize(
    "mutate, err",
    [
        (lambda d: b"XYZ" + d[3:], "not an ssc stream"),
        (lambda d: d[:3] + b"\x09" + d[4:], "unsupported ssc bitstream version"),
        (lambda d: d[:10], "shorter than"),
        (lambda d: d[:40], "truncated"),
        (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "header CRC"),
        (lambda d: d[:-3], "beyond the payload"),
        (lambda d: b"", "shorter than"),
    ],
)
def test_malformed_streams_are_refused(mutate, err):
    with pytest.raises(BitstreamError, match=err):
        StreamReader(mutate(reference_stream()))


def _forge_header(data: bytes, patch) -> bytes:
    """Rewrite the header body and fix its CRC, to test the semantic checks behind the CRC."""
    hlen = struct.unpack_from("<I", data, 4)[0]
    body = bytearray(data[PREAMBLE.size : PREAMBLE.size + hlen])
    patch(body)
    return data[:4] + struct.pack("<II", len(body), crc32(bytes(body))) + bytes(body) + data[PREAMBLE.size + hlen :]


def test_huge_declared_size_refused_before_allocation():
    def big(body):
        struct.pack_into("<II", body, 1, 100000, 100000)

    with pytest.raises(ResourceLimitError):
        StreamReader(_forge_header(reference_stream(), big))


def test_forged_box_outside_image_refused():
    def width(body):
        struct.pack_into("<I", body, 1, 10)

    with pytest.raises(BitstreamError, match="outside"):
        StreamReader(_forge_header(reference_stream(), width))


def test_segment_framing():
    rd = StreamReader(reference_stream())
    assert all(g.seg_length >= SEGMENT_OVERHEAD for g in rd.header.groups)
    with pytest.raises(BitstreamError):
        build_stream(rd.header, {0: b"", 1: b""})  # missing group 7


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_bit_flips_truncations_and_splices(data):
    ref = reference_stream()
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
        blob = b"SSC\x01" + data.draw(st.binary(max_size=200))
    exercise(blob)  # raises on anything but an ssc error


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_fuzz_forged_header_bodies_with_valid_crc(body):
    blob = PREAMBLE.pack(b"SSC", 1, len(body), crc32(body)) + body
    try:
        parse_header(blob, payload_length=0)
    except SSCError:
        pass


def test_group_areas_must_partition_the_image():
    def height(body):
        struct.pack_into("<I", body, 5, 21)  # one more row than the group areas cover

    with pytest.raises(BitstreamError, match="areas sum"):
        StreamReader(_forge_header(reference_stream(), height))


@pytest.mark.slow
def test_long_mutation_fuzz_finds_no_crash(tmp_path):
    """Minutes-long version of the fuzz above (``make test-slow``)."""
    from ssc.eval.fuzz_bitstream import main as fuzz_main

    assert fuzz_main(["--seconds", "120", "--out", str(tmp_path)]) == 0
