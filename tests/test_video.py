"""SSVC video: container, per-track intra / inter coding, partial decoding over time, robustness."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from ssc.errors import BitstreamError, FrameRangeError, GroupNotFoundError, SSCError
from ssc.masks import GroupMap
from ssc.video import RateControl, VideoDecoder, VideoEncoder, VideoReader, decode_video
from ssc.video import format as vf
from ssc.video import transform as tf
from ssc.video.motion import MARGIN, pad_reference
from ssc.video.texture import decode_layer, encode_layer

GOLD = Path(__file__).parent / "golden"
H, W, N = 90, 150, 7  # not multiples of 16: regions run past the frame


def moving_scene(n: int = N, seed: int = 0) -> tuple[list[np.ndarray], list[GroupMap]]:
    """A textured background panning by 2 px / frame, a textured disc (track 1) moving diagonally, and a
    square (track 2) present only in frames 2..4 (appears mid-GOP, then leaves)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0 : W + 2 * n]
    bg = np.stack([np.sin(xx / 9 + c) * 50 + np.cos(yy / 7 - c) * 40 + 128 for c in range(3)], -1)
    bg = np.clip(bg + rng.normal(0, 4, bg.shape), 0, 255).astype(np.uint8)
    tex = np.clip(rng.normal(0, 1, (40, 40, 3)).cumsum(0).cumsum(1) * 6 + (170, 90, 40), 0, 255).astype(np.uint8)
    frames, maps = [], []
    y, x = np.mgrid[0:H, 0:W]
    for t in range(n):
        f = bg[:, 2 * t : 2 * t + W].copy()
        lab = np.zeros((H, W), np.int32)
        cy, cx = 30 + 3 * t, 40 + 4 * t
        disc = (y - cy) ** 2 + (x - cx) ** 2 < 16**2
        f[disc] = tex[(y - cy + 20)[disc], (x - cx + 20)[disc]]  # the disc's texture moves with it
        lab[disc] = 1
        if 2 <= t <= 4:
            f[60:84, 100:130] = (30, 30, 220)
            lab[60:84, 100:130] = 2
        frames.append(f)
        maps.append(GroupMap.from_labels(lab, {1: (1, "ball"), 2: (2, "box")}))
    return frames, maps


@pytest.fixture(scope="module")
def clip(codec):
    frames, maps = moving_scene()
    buf = io.BytesIO()
    enc = VideoEncoder(buf, W, H, 25, codec, gop=4, rate=RateControl(qp=28, roi_offset=4))
    for f, gm in zip(frames, maps):
        enc.encode(f, gm)
    summ = enc.close()
    return frames, maps, buf.getvalue(), enc, summ


def _psnr(a, b, m):
    return 10 * np.log10(255**2 / max(((a[m].astype(float) - b[m]) ** 2).mean(), 1e-9))


def test_transform_and_colour_are_exact():
    c = np.random.default_rng(0).integers(-300, 300, (1000, 3))
    assert (tf.ycocg_to_rgb(tf.rgb_to_ycocg(c)) == c).all()
    assert tf.qstep16(0) == 10 and tf.qstep16(6) == 20  # step doubles every 6 qp
    x = np.random.default_rng(1).integers(-255, 256, (50, 8, 8))
    assert np.abs(tf.dequantise(tf.quantise(x, 16), 16) - x).max() <= 4  # step 1: integer transform error only
    assert tf.T_INT[0, 0] == 64 and tf.T_INT[1, 0] == 89  # the HEVC-style integer basis


def golden_references(frames, maps) -> dict:
    """Frame -> (newest, older) padded references of track 1, built from the original frames: frame 1
    has one reference, frame 2 two."""
    from ssc.video.codec import TrackState

    st = TrackState.empty(H, W)
    st.update(frames[0], (0, 0, W, H), maps[0].labels == 1, True)
    refs = {1: st.references()}
    st.update(frames[1], (0, 0, W, H), maps[1].labels == 1, False)
    refs[2] = st.references()
    return refs


def test_texture_layer_roundtrip_and_golden():
    frames, maps = moving_scene()
    refs = golden_references(frames, maps)
    assert refs[1][1] is None and refs[2][1] is not None
    gold = json.loads((GOLD / "video_texture.json").read_text())
    for t, (r1, r2) in refs.items():
        m, box = maps[t].labels == 1, maps[t].group(1).box
        body, recon, _ = encode_layer(frames[t], m, box, 24, ref_padded=r1, ref2_padded=r2)
        again, _ = decode_layer(body, m, box, ref_padded=r1, ref2_padded=r2)
        assert (again == recon).all()
        # the golden body decodes to the same integers on every machine (integer decoder)
        gbody = (GOLD / f"video_texture_f{t}.bin").read_bytes()
        dec, _ = decode_layer(gbody, m, box, ref_padded=r1, ref2_padded=r2)
        assert hashlib.sha256(dec.tobytes()).hexdigest() == gold[f"frame{t}_sha256"]
        with pytest.raises(BitstreamError):
            decode_layer(gbody[:-5], m, box, ref_padded=r1, ref2_padded=r2)
        with pytest.raises(BitstreamError):  # a P layer offered as a refinement
            decode_layer(gbody, m, box, base=frames[0])
    assert gold["frame2_bi_blocks"] == 1  # the frame-2 golden exercises bi-prediction
    for t, (r1, r2) in refs.items():  # container version 1's bodies still decode, to the same pixels
        m, box = maps[t].labels == 1, maps[t].group(1).box
        old = (GOLD / f"video_texture_v1_f{t}.bin").read_bytes()
        dec, _ = decode_layer(old, m, box, ref_padded=r1, ref2_padded=r2, version=1)
        assert hashlib.sha256(dec.tobytes()).hexdigest() == gold["v1"][f"frame{t}_sha256"]
    with pytest.raises(BitstreamError, match="second reference"):
        decode_layer((GOLD / "video_texture_f2.bin").read_bytes(), maps[2].labels == 1, maps[2].group(1).box, ref_padded=refs[2][0])


def test_decoder_rebuilds_the_encoders_references_exactly(clip, codec):
    frames, maps, data, enc, _ = clip
    with VideoReader(data) as rd:
        dec = VideoDecoder(rd, codec)
        out = list(dec.frames())
    assert [f.number for f in out] == list(range(N))
    for tid, st in enc.states.items():
        if st.live:
            assert (dec.states[tid].canvas[st.seen] == st.canvas[st.seen]).all()
    for f in out:
        assert not f.failed
        assert _psnr(frames[f.number], f.image, maps[f.number].labels == 1) > 24
        assert (f.track_map == maps[f.number].labels).all()


def test_index_track_table_and_gop(clip):
    _, _, data, _, summ = clip
    with VideoReader(data) as rd:
        assert rd.scan_error is None and rd.num_frames == N
        # gop 4: the objects are intra at frame 4, the background (refreshed every 4 GOPs) is not
        assert rd.index.intra == [True, False, False, False, False, False, False]
        assert rd.frame(4).entry(1).intra and rd.frame(4).entry(0).intra is False
        t2 = rd.index.tracks[2]
        assert (t2.first, t2.last, t2.label) == (2, 4, "box")
        assert rd.frame(2).entry(2).intra and rd.frame(2).entry(2).new  # appears mid-GOP: intra
        assert rd.frame(3).entry(2).intra is False
        assert rd.frame(5).entry(2) is None
        assert rd.intra_start(3) == 0 and rd.intra_start(6) == 0
        # random access per track: an object starts at its own I entry, the background at its refresh
        assert rd.random_access(6, [1]) == 4 and rd.random_access(3, [1]) == 0
        assert rd.random_access(3, [2]) == 2 and rd.random_access(6, [2]) == 6  # absent at 5 and 6
        assert rd.random_access(6, [0]) == 0 and rd.random_access(6, [0, 1]) == 0 and rd.random_access(6) == 0
    assert summ.tracks == rd.index.tracks


def test_background_gop_sets_the_backgrounds_refresh(codec):
    frames, maps = moving_scene()
    buf = io.BytesIO()
    with VideoEncoder(buf, W, H, 25, codec, gop=4, background_gop=4, rate=RateControl(qp=28)) as enc:
        for f, gm in zip(frames, maps):
            enc.encode(f, gm)
    with VideoReader(buf.getvalue()) as rd:
        assert rd.index.intra == [True, False, False, False, True, False, False]
        assert rd.random_access(6, [0]) == 4
    with pytest.raises(ValueError, match="background_gop"):
        VideoEncoder(io.BytesIO(), W, H, 25, codec, gop=4, background_gop=0)


def test_object_decode_from_a_later_frame_starts_at_its_own_intra(clip, codec):
    _, _, data, _, _ = clip
    full = list(decode_video(data, codec))
    with VideoReader(data) as rd:
        part = list(VideoDecoder(rd, codec, tracks=[1]).frames(start=5))
        read = rd.bytes_read
        before = sum(e.mask_len + e.seg_len for i in range(4) for e in rd.frame(i).entries if e.track_id == 1)
        total = sum(e.mask_len + e.seg_len for i in range(N) for e in rd.frame(i).entries if e.track_id == 1)
    assert [f.number for f in part] == [5, 6]
    assert read < total - before + 1200  # frames 0-3 of track 1 were not read
    for a in part:
        m = full[a.number].track_map == 1
        assert (a.image[m] == full[a.number].image[m]).all()


def test_one_track_over_time_reads_only_its_bytes(clip, codec):
    frames, maps, data, _, _ = clip
    full = list(decode_video(data, codec))
    with VideoReader(data) as rd:
        part = list(VideoDecoder(rd, codec, tracks=[1]).frames())
        read = rd.bytes_read
    own = sum(e.mask_len + e.seg_len for i in range(N) for e in VideoReader(data).frame(i).entries if e.track_id == 1)
    assert own < read < own + 1200 < len(data)  # own records + preamble, index and frame headers
    for a, b in zip(part, full):
        m = b.track_map == 1
        assert a.decoded == [1] and (a.image[m] == b.image[m]).all() and (a.track_map[~m] == -1).all()
    with VideoReader(data) as rd:  # by label
        assert VideoDecoder(rd, codec, labels=["box"]).tracks == [2]


@pytest.fixture(scope="module")
def refreshed(codec) -> bytes:
    """moving_scene with object I entries every 2 frames and background refreshes at frames 0 and 4."""
    frames, maps = moving_scene()
    buf = io.BytesIO()
    with VideoEncoder(buf, W, H, 25, codec, gop=2, background_gop=4, rate=RateControl(qp=28)) as enc:
        for f, gm in zip(frames, maps):
            enc.encode(f, gm)
    return buf.getvalue()


def test_backdrop_holds_the_background_refreshes_behind_chosen_tracks(refreshed, codec):
    data = refreshed
    full = list(decode_video(data, codec))
    with VideoReader(data) as rd:
        plain = list(VideoDecoder(rd, codec, tracks=[1]).frames(fill=128))
        plain_read = rd.bytes_read
    with VideoReader(data) as rd:
        held = list(VideoDecoder(rd, codec, tracks=[1], backdrop=True).frames(fill=128))
        held_read = rd.bytes_read
        comp_i = sum(e.seg_len for i in (0, 4) for e in rd.frame(i).entries if e.track_id == 0)
        comp_all = sum(e.seg_len for i in range(N) for e in rd.frame(i).entries if e.track_id == 0)
    assert comp_i < comp_all  # the background's P entries are never read
    assert plain_read + comp_i <= held_read <= plain_read + comp_i + 300  # + the other masks on refresh frames
    assert [f.backdrop_from for f in held] == [0, 0, 0, 0, 4, 4, 4]
    assert all(f.backdrop_from is None for f in plain)
    for a, b, f in zip(held, plain, full):
        m = f.track_map == 1
        assert a.decoded == [1] and not a.failed and (a.track_map == b.track_map).all() and (a.image[m] == b.image[m]).all()
    for k in (0, 4):  # at a refresh, the background is the full decode's
        bg = full[k].track_map == 0
        assert (held[k].image[bg] == full[k].image[bg]).all()
    held0 = (full[0].track_map == 0) & (full[3].track_map != 1)  # frame 3 shows frame 0's background
    assert (held[3].image[held0] == full[0].image[held0]).all()
    bg0 = full[0].track_map == 0
    padded = pad_reference(np.where(bg0[..., None], full[0].image, 0).astype(np.uint8), bg0)[MARGIN:-MARGIN, MARGIN:-MARGIN]
    hole = ~bg0 & (full[1].track_map != 1)  # never background yet: padded from the held pixels
    assert hole.any() and (held[1].image[hole] == padded[hole]).all()
    kept = (full[0].track_map == 0) & (full[4].track_map != 0) & (full[5].track_map != 1)  # frame 4's holes keep frame 0's
    assert kept.any() and (held[5].image[kept] == full[0].image[kept]).all()
    with VideoReader(data) as rd:  # from a later start: the refreshes from its random-access point on
        late = list(VideoDecoder(rd, codec, tracks=[1], backdrop=True).frames(start=5, fill=128))
    seen = (full[4].track_map == 0) | (full[5].track_map == 1)
    assert [f.number for f in late] == [5, 6] and (late[0].image[seen] == held[5].image[seen]).all()
    assert (late[0].image[kept] != held[5].image[kept]).any()  # not held from frame 0 there: padded


def test_backdrop_refresh_failure_keeps_the_older_backdrop_and_the_tracks(refreshed, codec):
    bad = bytearray(refreshed)
    bad[_segment_offset(refreshed, 4, 0) + 12] ^= 0xFF
    with VideoReader(bytes(bad)) as rd:
        held = list(VideoDecoder(rd, codec, tracks=[1], backdrop=True).frames())
    with VideoReader(refreshed) as rd:
        good = list(VideoDecoder(rd, codec, tracks=[1], backdrop=True).frames())
    assert [sorted(f.failed) for f in held] == [[], [], [], [], [0], [], []]
    assert "backdrop" in held[4].failed[0]
    assert [f.backdrop_from for f in held] == [0, 0, 0, 0, 0, 0, 0]
    for a, b in zip(held, good):
        m = b.track_map == 1
        assert a.decoded == [1] and (a.image[m] == b.image[m]).all()
    behind = (held[5].track_map != 1) & (good[3].track_map != 1)  # still frame 0's backdrop
    assert (held[5].image[behind] == good[3].image[behind]).all()
    with VideoReader(refreshed) as rd:  # the complement chosen: nothing to hold
        assert not VideoDecoder(rd, codec, tracks=[0, 1], backdrop=True).backdrop


def test_time_range_starts_at_the_previous_i_frame(clip, codec):
    _, _, data, _, _ = clip
    full = list(decode_video(data, codec))
    rng = list(decode_video(data, codec, start=5, stop=7))
    assert [f.number for f in rng] == [5, 6]
    for a in rng:
        assert (a.image == full[a.number].image).all()
    with pytest.raises(FrameRangeError, match="outside"):
        list(decode_video(data, codec, start=9))


def _segment_offset(data: bytes, frame: int, track: int) -> int:
    with VideoReader(data) as rd:
        return rd.frame(frame).record_offsets(track)[1]


def test_corrupt_segment_fails_its_track_until_next_intra(clip, codec):
    _, _, data, _, _ = clip
    bad = bytearray(data)
    bad[_segment_offset(data, 1, 1) + 12] ^= 0xFF
    full = list(decode_video(data, codec))
    out = list(decode_video(bytes(bad), codec))
    for f in out:
        if f.number in (1, 2, 3):
            assert 1 in f.failed and "track 1" in f.failed[1]
        else:
            assert 1 in f.decoded
        for tid in (0, 2):  # other tracks unaffected (the background's mask is the complement: needs only masks)
            m = full[f.number].track_map == tid
            assert (f.image[m] == full[f.number].image[m]).all()


def test_stream_cut_short_is_scanned(clip, codec):
    _, _, data, _, _ = clip
    with VideoReader(data) as rd:
        cut = data[: rd.index.offsets[6] + 40]  # no index, no trailer, last frame incomplete
    with VideoReader(cut) as rd:
        assert rd.num_frames == 6 and "incomplete" in rd.scan_error
    assert len(list(decode_video(cut, codec))) == 6


def test_bad_inputs_get_clear_errors(clip, codec, tmp_path):
    frames, maps, data, _, _ = clip
    with pytest.raises(BitstreamError, match="magic"):
        VideoReader(b"XYZ" + data[3:])
    with pytest.raises(FileNotFoundError):
        VideoReader(tmp_path / "missing.ssv")
    with pytest.raises(GroupNotFoundError):
        list(decode_video(data, codec, tracks=[9]))
    enc = VideoEncoder(io.BytesIO(), W, H, 25, codec)
    with pytest.raises(SSCError, match="must be"):
        enc.encode(frames[0][:50], maps[0])
    with pytest.raises(SSCError):
        enc.encode(frames[0], GroupMap.from_labels(np.zeros((10, 10), np.int32)))
    bad = bytearray(data)
    bad[vf.PREAMBLE.size + 2] ^= 1
    with pytest.raises(BitstreamError, match="CRC"):
        VideoReader(bytes(bad))


@pytest.mark.parametrize("backdrop", [False, True])
def test_mutated_streams_never_crash(clip, refreshed, codec, backdrop):
    """Parser + decoder fuzz: random byte flips, cuts and insertions raise SSCError or are reported per
    track; nothing else escapes. With ``backdrop``: one track over the background's refreshes."""
    data = refreshed if backdrop else clip[2]
    rng = np.random.default_rng(8 if backdrop else 7)
    for _ in range(40 if backdrop else 60):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            op, pos = rng.integers(0, 3), int(rng.integers(0, len(b)))
            if op == 0:
                b[pos] ^= int(rng.integers(1, 256))
            elif op == 1:
                del b[pos : pos + int(rng.integers(1, 50))]
            else:
                b[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 20)), dtype=np.uint8).tobytes()
        try:
            for _f in decode_video(bytes(b), codec, tracks=[1] if backdrop else None, backdrop=backdrop):
                pass
        except SSCError:
            pass


def test_rate_control_converges_on_a_rate_model():
    """A synthetic coder whose frame bits halve every 6 qp (I-frames 4x): started 18 qp too fine, after
    the first GOPs the controller holds the target bitrate within 3%; started 6 qp too fine, it pays
    back its early overshoot (the whole run within 5%)."""
    fps, gop = 25.0, 8

    def run(qp: int) -> tuple[RateControl, list[float]]:
        rc, bits = RateControl(qp=qp, target_kbps=200.0), []
        for i in range(200):
            intra = i % gop == 0
            rc.start_frame(intra, fps, gop)
            bits.append((4 if intra else 1) * 640000 * 2 ** (-rc.entry_qp(intra, False) / 6))
            rc.end_frame(int(bits[-1]))
        return rc, bits

    rc, bits = run(20)
    assert abs(sum(bits[100:]) / (100 / fps) / 1000 - 200) / 200 < 0.03
    assert abs(sum(run(32)[1]) / (200 / fps) / 1000 - 200) / 200 < 0.05
    assert RateControl(qp=30).start_frame(True, fps, gop) == 30  # no target: constant qp
    assert rc.entry_qp(True, False) < rc.entry_qp(False, False) < rc.entry_qp(False, True)  # I finer, background coarser
    assert rc.entry_qp(False, False, referenced=False) > rc.entry_qp(False, False)  # frames nothing references: coarser


def test_held_rate_control_meets_the_target_when_the_qp_acts_only_at_i_frames():
    """The hevc tracks' CRF holds from one I-frame to the next (``held=True``): a synthetic coder whose
    object tracks' rate halves every 7 qp of the GOP's I-frame qp, whose background holds its qp for
    4 GOPs, whose new streams start mid-GOP at the frame's qp, and whose content costs 3x for a while
    (or a third). The frame qp stays at the I-frame's within each GOP (mid-GOP starts only coarser),
    and every run ends within 5% of its target."""
    fps, gop, n = 10.0, 32, 800

    def run(cost) -> tuple[float, list[int]]:
        rc, bits, qps = RateControl(qp=32, roi_offset=6, target_kbps=150.0), 0.0, []
        obj_qp = bg_qp = 32
        for i in range(n):
            intra = i % gop == 0
            qps.append(rc.start_frame(intra, fps, gop, held=True))
            obj_qp = rc.entry_qp(False, False) if intra else obj_qp
            bg_qp = rc.entry_qp(False, True) if i % (4 * gop) == 0 else bg_qp
            b = cost(i) * 120000 * 2 ** (-obj_qp / 7) * (3 if intra else 1) + 60000 * 2 ** (-bg_qp / 7)
            if i % 10 == 5:  # a new track
                b += cost(i) * 200000 * 2 ** (-rc.entry_qp(False, False) / 7)
            bits += b
            rc.end_frame(int(b))
        return bits / (n / fps) / 1000, qps

    for cost in (lambda i: 1.0, lambda i: 3.0 if 300 <= i < 500 else 1.0, lambda i: 1 / 3 if 300 <= i < 500 else 1.0,
                 lambda i: 3.0 if i >= 600 else 1.0):
        kbps, qps = run(cost)
        assert abs(kbps - 150) / 150 < 0.05
        for g in range(0, n, gop):
            assert min(qps[g : g + gop]) == qps[g]
    assert RateControl(qp=30).start_frame(True, fps, gop, held=True) == 30  # no target: constant qp


def test_held_rate_control_keeps_the_qp_steady_through_a_quiet_stretch():
    """The held controller is an average-bitrate one (x265's qcomp and rate factor): through a quiet
    stretch (the content costs a third for 200 frames, new streams starting every 10 frames) it
    neither spends each GOP's whole budget on the little left nor pays that back with a jump when the
    content returns, as the per-GOP budget did on the whole surveillance clip (GOP qps from 23 to 47,
    mid-GOP starts at 51). Settled, its GOP qps stay within 20 of each other and its frames' within
    26 (the per-GOP budget: 25 and 34), and the run ends within 5% of its target."""
    fps, gop, n = 10.0, 32, 800
    rc, bits, qps, obj_qp = RateControl(qp=32, roi_offset=2, target_kbps=150.0), 0.0, [], 32
    for i in range(n):
        intra = i % gop == 0
        qps.append(rc.start_frame(intra, fps, gop, held=True))
        obj_qp = rc.entry_qp(False, False) if intra else obj_qp
        cost = 1 / 3 if 300 <= i < 500 else 1.0
        b = cost * 300000 * 2 ** (-obj_qp / 7) * (3 if intra else 1)
        if i % 10 == 5:  # a new stream mid-GOP
            b += cost * 200000 * 2 ** (-rc.entry_qp(False, False) / 7)
        bits += b
        rc.end_frame(int(b))
    settled = qps[64:]
    assert max(settled[::gop]) - min(settled[::gop]) <= 20 and max(settled) - min(settled) <= 26
    assert abs(bits / (n / fps) / 1000 - 150) / 150 < 0.05


def test_benchmark_helpers():
    """eval/video: anchor rate at a PSNR (log-linear, never extrapolated) and the addroi region;
    eval/ratecontrol: the constant-qp curve's fidelity at a rate (never extrapolated)."""
    from ssc.eval.video import Point, rate_at, union_box

    pts = [Point("s", "x265-roi", f"crf {c}", r, None, p, 30.0) for c, r, p in ((40, 100.0, 30.0), (30, 400.0, 36.0))]
    assert rate_at(pts, 33.0) == pytest.approx(200.0)
    assert rate_at(pts, 37.0) is None and rate_at(pts, 29.0) is None
    _, maps = moving_scene()
    x0, y0, x1, y1 = union_box(maps)
    assert (x0, y0) == (24, 14) and x1 >= 130 and y1 >= 84 and x0 % 2 == y0 % 2 == 0
    from ssc.eval.ratecontrol import Result, fidelity_at

    curve = [Result(f"qp {q}", None, r, None, 0.0, f, (q, q), (q, q)) for q, r, f in ((34, 100.0, 60.0), (30, 400.0, 80.0))]
    assert fidelity_at(curve, 200.0) == pytest.approx(70.0)  # linear in log rate
    assert fidelity_at(curve, 50.0) is None and fidelity_at(curve, 500.0) is None


def test_decode_is_identical_across_thread_counts(clip, codec):
    """Intra bases are float synthesis: their pixels, and so every P-frame built on them, must not
    depend on the thread count (measured identical on DAVIS car-shadow with 1, 2 and 4 threads too)."""
    import torch

    _, _, data, _, _ = clip
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [f.image for f in decode_video(data, codec)]
    finally:
        torch.set_num_threads(n)
    assert all((a == f.image).all() for a, f in zip(one, decode_video(data, codec)))


def test_state_follows_live_tracks_only(clip, codec):
    """Bounded memory: encoder and decoder drop a track's reference when it leaves (track 2 is gone
    after frame 4), so state grows with the live tracks, not with every track ever seen."""
    _, _, data, enc, _ = clip
    assert sorted(enc.states) == [0, 1]
    with VideoReader(data) as rd:
        dec = VideoDecoder(rd, codec)
        for f in dec.frames():
            assert sorted(dec.states) == sorted(t for t in ([0, 1, 2] if 2 <= f.number <= 4 else [0, 1]))


def test_forged_frame_headers_and_bodies_fail_cleanly(clip, codec):
    """The video fuzzer's structured mutations (frame headers with a recomputed CRC, segment bodies
    re-framed with a valid CRC, the index dropped): refused or reported per track, nothing else."""
    from ssc.eval.fuzz_bitstream import mutate_video

    _, _, data, _, _ = clip
    rng = np.random.default_rng(3)
    for _ in range(40):
        blob = mutate_video(data, rng)
        try:
            for _f in decode_video(blob, codec):
                pass
        except SSCError:
            pass


def test_region_limited_search_equals_whole_frame_search():
    """The per-track search window gives the same vectors and costs as searching the whole frame."""
    from ssc.video.motion import MotionSearch, block_origins, pad_reference

    frames, maps = moving_scene(2)
    ref = pad_reference(frames[0], np.ones(frames[0].shape[:2], bool))
    mask = maps[1].labels == 1
    region = (16, 16, 96, 80)
    ys, xs = block_origins(region)
    whole, part = MotionSearch(frames[1], ref, mask), MotionSearch(frames[1], ref, mask, region)
    a, b = whole.integer(ys, xs), part.integer(ys, xs)
    assert np.array_equal(a, b)
    qa, ca = whole.quarter(ys, xs, a)
    qb, cb = part.quarter(ys, xs, b)
    assert np.array_equal(qa, qb) and np.allclose(ca, cb)
    with pytest.raises(ValueError, match="4-pixel grid"):
        MotionSearch(frames[1], ref, mask, (2, 0, 32, 32))


def test_fast_search_tools_code_a_decodable_chain_close_to_exhaustive(codec):
    """Every speed tool on (the default) against the exhaustive search: the decoder rebuilds the
    encoder's references exactly, and the fast stream stays close to the exhaustive one."""
    from ssc.video.motion import EXHAUSTIVE, SearchTools

    frames, maps = moving_scene()
    sizes, quality = {}, {}
    for name, tools in (("exhaustive", EXHAUSTIVE), ("fast", SearchTools(skip_sad=0.5))):
        buf = io.BytesIO()
        enc = VideoEncoder(buf, W, H, 25, codec, gop=8, rate=RateControl(qp=28), tools=tools)
        for f, gm in zip(frames, maps):
            enc.encode(f, gm)
        enc.close()
        sizes[name] = len(buf.getvalue())
        with VideoReader(buf.getvalue()) as rd:
            dec = VideoDecoder(rd, codec)
            out = list(dec.frames())
        for tid, st in enc.states.items():
            if st.live:
                assert (dec.states[tid].canvas[st.seen] == st.canvas[st.seen]).all()
        quality[name] = np.mean([_psnr(frames[f.number], f.image, maps[f.number].labels == 1) for f in out])
    assert abs(sizes["fast"] / sizes["exhaustive"] - 1) < 0.1 and abs(quality["fast"] - quality["exhaustive"]) < 0.5


def test_stream_without_frames_decodes_to_nothing(clip, codec):
    """Regression (fuzz campaign): a stream cut before its first frame made decoding raise IndexError."""
    _, _, data, _, _ = clip
    with VideoReader(data) as rd:
        cut = data[: rd.frames_offset]
    with VideoReader(cut) as rd:
        assert rd.num_frames == 0
    assert list(decode_video(cut, codec)) == []
    with pytest.raises(FrameRangeError):
        list(decode_video(cut, codec, start=1))


def test_container_versions(clip, codec):
    """Writers write version 3; a reader takes versions 1, 2 (the texture layer is told which) and 3,
    and refuses others with a clear error. A version-2 stream written before version 3 (golden file)
    decodes to the very frames its own encoder's decoder made."""
    import hashlib
    import json

    data = clip[2]
    assert data[3] == vf.VERSION == 3
    with VideoReader(data) as rd:
        assert rd.header.version == 3 and rd.header.inner == "learned"
    old = (GOLD / "video_v2.ssv").read_bytes()
    want = json.loads((GOLD / "video_v2.json").read_text())
    with VideoReader(old) as rd:
        assert rd.header.version == 2 and rd.header.inner == "learned"
        assert [hashlib.sha256(f.image.tobytes()).hexdigest() for f in VideoDecoder(rd, codec).frames()] == want["full_sha256"]
    with VideoReader(old) as rd:
        got = [hashlib.sha256(f.image.tobytes()).hexdigest() for f in VideoDecoder(rd, codec, tracks=[1]).frames(start=5)]
        assert got == want["track1_from5_sha256"]
    v1 = bytearray(old)
    v1[3] = 1
    with VideoReader(bytes(v1)) as rd:
        assert rd.header.version == 1
    v1[3] = 4
    with pytest.raises(BitstreamError, match="unsupported ssc video version 4"):
        VideoReader(bytes(v1))


@pytest.mark.parametrize("qp", [22, 28])
def test_rd_levels_lower_the_rate_distortion_cost(qp):
    """The encoder's level choice (rdoq) codes the same P layer in fewer bytes at a lower cost
    SSE + lambda * bits (lambda in RGB: 3 squared luma steps times RD_LAMBDA per bit), and decodes."""
    from ssc.video.texture import RD_LAMBDA

    frames, maps = moving_scene()
    r1, r2 = golden_references(frames, maps)[2]
    m, box = maps[2].labels == 1, maps[2].group(1).box
    noise = np.random.default_rng(0).normal(0, 6, frames[2].shape)  # a noisy sensor: many small coefficients
    frames = frames.copy()
    frames[2] = np.clip(frames[2] + noise, 0, 255).astype(np.uint8)
    lam = 3 * (tf.qstep16(qp) / 16) ** 2 * RD_LAMBDA
    cost = {}
    for rdoq in (False, True):
        body, recon, lay = encode_layer(frames[2], m, box, qp, ref_padded=r1, ref2_padded=r2, rdoq=rdoq)
        x0, y0, x1, y1 = lay.region
        err = (recon.astype(float) - frames[2][y0:y1, x0:x1])[lay.mask]
        cost[rdoq] = ((err ** 2).sum() + lam * 8 * len(body), len(body))
        again, _ = decode_layer(body, m, box, ref_padded=r1, ref2_padded=r2)
        assert (again == recon).all()
    assert cost[True][1] < cost[False][1] and cost[True][0] < cost[False][0]


@pytest.fixture(scope="module")
def hevc_clip():
    frames, maps = moving_scene(9)
    buf = io.BytesIO()
    with VideoEncoder(buf, W, H, 25, None, gop=4, rate=RateControl(qp=24, roi_offset=4), inner="hevc") as enc:
        for f, gm in zip(frames, maps):
            enc.encode(f, gm)
    return frames, maps, buf.getvalue()


def test_hevc_tracks_coded_on_several_threads_give_the_same_stream(hevc_clip):
    """``HevcSettings.workers``: the tracks of a frame coded at once on threads give exactly the
    stream that coding them one by one gives (each track's libx265 sees the same pictures in order)."""
    from ssc.video.hevc import HevcSettings

    frames, maps, data = hevc_clip
    out = {}
    for workers in (1, 3):
        buf = io.BytesIO()
        with VideoEncoder(buf, W, H, 25, None, gop=4, rate=RateControl(qp=24, roi_offset=4), inner="hevc",
                          hevc=HevcSettings(workers=workers)) as enc:
            for f, gm in zip(frames, maps):
                enc.encode(f, gm)
        out[workers] = buf.getvalue()
    assert out[1] == out[3] == data
    with pytest.raises(ValueError, match="workers"):
        HevcSettings(workers=0)


def _hevc_ctu_sizes(au: bytes) -> list[int]:
    """The CTU size of every SPS in an HEVC access unit (Annex B; H.265 7.3.2.2, one sub-layer)."""
    sizes = []
    for nal in au.split(b"\x00\x00\x01")[1:]:
        if (nal[0] >> 1) & 0x3F != 33:  # SPS
            continue
        rbsp = nal[2:].replace(b"\x00\x00\x03", b"\x00\x00")
        bits = "".join(f"{b:08b}" for b in rbsp)
        pos = 4 + 3 + 1 + 96  # vps id, max sub-layers (0 here), nesting flag, profile_tier_level

        def ue() -> int:
            nonlocal pos
            z = bits.index("1", pos) - pos
            v = int(bits[pos + z : pos + 2 * z + 1], 2) - 1
            pos += 2 * z + 1
            return v

        assert int(bits[4:7], 2) == 0
        ue()  # sps id
        assert ue() == 1  # 4:2:0
        ue(), ue()  # width, height
        pos += 1
        if bits[pos - 1] == "1":  # conformance window
            [ue() for _ in range(4)]
        ue(), ue(), ue()  # bit depths, poc lsb
        pos += 1  # sub-layer ordering info present (one sub-layer either way)
        ue(), ue(), ue()
        log2_min = ue() + 3
        sizes.append(1 << (log2_min + ue()))
    return sizes


def test_hevc_streams_share_one_ctu_size(hevc_clip):
    """libx265 keeps its CTU size in process-wide tables and shrinks a stream's CTU to fit a small
    picture: streams of different sizes coded side by side then corrupt each other's tables (the same
    clip coded twice gave different bytes). Every stream, the background's and each tube's, is coded
    with one CTU size, 32, and frames under 32 pixels are refused."""
    from fractions import Fraction

    from ssc.video import VideoReader
    from ssc.video.hevc import CTU, HevcEncoder

    _, _, data = hevc_clip
    seen = {}
    with VideoReader(data) as rd:
        for i in range(rd.num_frames):
            fh = rd.frame(i)
            for e in fh.entries:
                if e.intra:
                    seen.setdefault(e.track_id, set()).update(_hevc_ctu_sizes(rd.segment(fh, e)))
    assert len(seen) >= 3 and all(v == {CTU} for v in seen.values()), seen
    with pytest.raises(SSCError, match="at least 32x32"):
        HevcEncoder(30, 90, Fraction(25))


def test_hevc_lookahead_writes_every_frame_in_order_with_fewer_waits_than_it_holds(hevc_clip):
    """``HevcSettings.lookahead``: x265 holds access units back, so frames wait; each is written whole,
    in order, once all its tracks' units are out (a track that leaves, a new IDR stream or ``close``
    ends a stream and releases what it held). The stream decodes like the zero-latency one, the same
    bytes on any number of threads, and ``encode_entry`` (one unit per call) refuses a lookahead."""
    from fractions import Fraction

    from ssc.errors import SSCError
    from ssc.video.hevc import HevcEncoder, HevcSettings

    frames, maps, plain = hevc_clip
    out, waited = {}, []
    for workers in (1, 3):
        buf = io.BytesIO()
        with VideoEncoder(buf, W, H, 25, None, gop=4, rate=RateControl(qp=24, roi_offset=4), inner="hevc",
                          hevc=HevcSettings(lookahead=3, workers=workers)) as enc:
            stats = [enc.encode(f, gm) for f, gm in zip(frames, maps)]
            waited.append(enc.n - enc.frames_written)
            summ = enc.close()
        assert summ.frames == len(frames) and all(s.written and s.bytes > 0 for s in stats)
        out[workers] = buf.getvalue()
    assert out[1] == out[3] != plain and waited[0] > 0  # frames did wait for x265
    with VideoReader(out[1]) as rd:
        got = list(VideoDecoder(rd).frames())
    assert [f.number for f in got] == list(range(len(frames)))
    for f in got:
        m = maps[f.number].labels == 1
        assert not f.failed and _psnr(f.image, frames[f.number], m) > 21
    with pytest.raises(SSCError, match="lookahead"):
        HevcEncoder(W, H, Fraction(25), HevcSettings(lookahead=2)).encode_entry(
            0, frames[0], maps[0].labels == 0, (0, 0, W, H), True, 30, True)
    with pytest.raises(ValueError, match="lookahead"):
        HevcSettings(lookahead=-1)


def test_held_rate_control_counts_frames_as_they_are_written():
    """With a lookahead, frames are written after later ones start: the held controller judges a GOP
    by the frames written (their bits against their budget), so a lag changes nothing but timing."""
    def run(lag: int) -> tuple[list[int], float]:
        rc, qps, bits = RateControl(qp=30, target_kbps=100, roi_offset=0), [], 0
        for n in range(96):
            qps.append(rc.start_frame(n % 8 == 0, 10.0, 8, held=True))
            if n >= lag:  # frame n - lag is written now, its bits from its qp (rate halves every 7 qp)
                b = int(20000 * 2 ** (-(qps[n - lag] - 30) / 7))
                rc.end_frame(b)
                bits += b
        return qps, bits * 10 / (96 - lag) / 1000
    (now, kbps_now), (late, kbps_late) = run(0), run(3)
    assert now[0] == late[0] == 30
    assert all(abs(a - b) <= 1 for a, b in zip(now[-16:], late[-16:]))  # the same qp once settled
    assert abs(kbps_now - 100) < 5 and abs(kbps_late - 100) < 5


def test_hevc_qp_past_x265s_crf_range_is_clipped():
    """A qp above libx265's CRF range (51) codes the track at 51 instead of failing the encode (a
    background offset over the highest qp once did so on the whole surveillance clip), and the rate
    controller's qps stay within it."""
    from fractions import Fraction

    from ssc.video.hevc import HevcDecoder, HevcEncoder

    frames, maps = moving_scene(2)
    enc, dec = HevcEncoder(W, H, Fraction(25)), HevcDecoder(W, H)
    for t, (f, gm) in enumerate(zip(frames, maps)):
        mask = gm.labels == 0
        body, region = enc.encode_entry(0, f, mask, (0, 0, W, H), t == 0, 60, True)
        pic, got = dec.decode_entry(0, body, t == 0)
        assert got == region == (0, 0, W, H) and pic.shape == (H, W, 3)
    rc = RateControl(qp=51, roi_offset=8)
    rc.start_frame(True, 25.0, 4)
    assert rc.entry_qp(False, background=True) == 51


def test_hevc_intra_entries_carry_no_x265_info_sei():
    """x265 writes its version and every option as a 2.3 kB SEI at each IDR picture unless told not
    to: with a track restarting every GOP, that once made a small tube's intra entry ten times its
    picture's bits. An intra entry holds only parameter sets and the picture."""
    from fractions import Fraction

    from ssc.video.hevc import HevcEncoder

    frames, maps = moving_scene(1)
    g = maps[0].group(1)
    body, _ = HevcEncoder(W, H, Fraction(25)).encode_entry(1, frames[0], maps[0].labels == 1, g.box, True, 40, False)
    assert b"x265 (build" not in body and b"options:" not in body
    assert len(body) < 600


def test_hevc_tracks_decode_with_random_access_per_track(hevc_clip):
    """The hevc inner codec: every track an HEVC tube; decoding one track from a later frame starts at
    its own IDR entry and gives the very pixels of a full decode; it reads less than the stream."""
    frames, maps, data = hevc_clip
    with VideoReader(data) as rd:
        assert rd.header.inner == "hevc" and rd.header.model_id == ""
        full = {f.number: f for f in VideoDecoder(rd).frames()}
    for i, f in full.items():
        m = maps[i].labels == 1
        assert not f.failed and _psnr(f.image, frames[i], m) > 21  # RGB PSNR of a noise texture in 4:2:0
    with VideoReader(data) as rd:
        part = list(VideoDecoder(rd, tracks=[1]).frames(start=6))
        assert rd.bytes_read < len(data) / 2
    for f in part:
        m = f.track_map == 1
        assert np.array_equal(m, full[f.number].track_map == 1) and np.array_equal(f.image[m], full[f.number].image[m])


def test_hevc_forged_access_units_fail_only_their_track(hevc_clip):
    """Damaged and truncated access units with valid framing reach libavcodec: the track reports the
    failure (until its next IDR entry) and every other track decodes to its undamaged pixels."""
    from ssc.eval.fuzz_bitstream import _leaks, mutate_video_entry

    _, _, data = hevc_clip
    clean = {f.number: f for f in decode_video(data)}
    rng = np.random.default_rng(3)
    failed = 0
    for _ in range(25):
        blob, tid = mutate_video_entry(data, rng, kind=4)
        try:
            frames = list(decode_video(blob))
        except SSCError:
            continue
        failed += any(f.failed for f in frames)
        assert all(set(f.failed) <= {tid} for f in frames)
        assert not any(_leaks(f, clean[f.number], tid) for f in frames)
    assert failed > 0


def test_hevc_tube_larger_than_the_frame_is_refused():
    from ssc.errors import CorruptSegmentError
    from ssc.video.hevc import HevcDecoder

    from ssc.bitstream.wire import varint

    with pytest.raises(CorruptSegmentError, match="does not fit"):
        HevcDecoder(64, 48).decode_entry(1, varint(66) + varint(48) + b"\0\0" + b"\0\0\0\1", True)
    with pytest.raises(CorruptSegmentError, match="without a decoded intra"):
        HevcDecoder(64, 48).decode_entry(1, b"\0\0\0\0\0\1", False)


def test_hevc_codes_the_last_column_and_row_of_an_odd_sized_frame():
    """4:2:0 pictures have even sides: an odd frame's last column and row are coded from its
    edge-padded copy, not left undecoded."""
    frames, maps = moving_scene(3)
    frames = [f[: H - 1, : W - 1].copy() for f in frames]
    maps = [GroupMap.from_labels(gm.labels[: H - 1, : W - 1], {1: (1, "ball"), 2: (2, "box")}) for gm in maps]
    buf = io.BytesIO()
    with VideoEncoder(buf, W - 1, H - 1, 25, None, gop=4, rate=RateControl(qp=24), inner="hevc") as enc:
        for f, gm in zip(frames, maps):
            enc.encode(f, gm)
    for f in decode_video(buf.getvalue()):
        assert not f.failed and (f.track_map >= 0).all()
        edge = np.concatenate([f.image[:, -1], f.image[-1]]).astype(float)
        ref = np.concatenate([frames[f.number][:, -1], frames[f.number][-1]])
        assert np.abs(edge - ref).mean() < 30  # undecoded, they were ~100 levels off


def test_surveillance_composite_takes_each_pixel_from_its_side_and_refuses_mismatched_shapes():
    """eval/surveillance's fidelity split: the original pixels on one part of a decode, the decode's elsewhere."""
    from ssc.eval.surveillance import composite

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
    where = rng.random((6, 5)) < 0.5
    out = composite(a, b, where)
    assert out.dtype == np.uint8 and out.shape == a.shape
    assert (out[where] == a[where]).all() and (out[~where] == b[~where]).all()
    with pytest.raises(ValueError):
        composite(a, b[:, :4], where)
    with pytest.raises(ValueError):
        composite(a, b, where[:5])


def test_hevc_static_background_costs_almost_nothing_between_refreshes():
    """A fixed camera: the background track at a constant qp codes the frames after its I picture as
    near-empty P pictures; at CRF, x265 gives those low-complexity pictures a finer qp and they go on
    refining the I picture. ``auto`` (the default) starts at CRF, finds the scene static and runs the
    stream after the next refresh at a constant qp; a panning camera stays at CRF."""
    from fractions import Fraction

    from PIL import Image

    from ssc.video.hevc import HevcEncoder, HevcSettings

    rng = np.random.default_rng(3)
    wide = np.asarray(Image.fromarray(rng.integers(0, 256, (24, 48, 3), dtype=np.uint8)).resize((192, 96), Image.BICUBIC))
    mask = np.ones((96, 128), bool)

    def code(rate: str, pan: int, n: int = 24, refresh: int = 12) -> tuple[list[int], list[str | None]]:
        enc = HevcEncoder(128, 96, Fraction(25), HevcSettings(background_rate=rate))
        sizes, modes = [], []
        for t in range(n):
            frame = np.ascontiguousarray(wide[:, pan * t : pan * t + 128])
            sizes.append(len(enc.encode_entry(0, frame, mask, (0, 0, 128, 96), t % refresh == 0, 30, True)[0]))
            modes.append(enc.background_mode)
        return sizes, modes

    (qp, _), (crf, _) = code("qp", 0), code("crf", 0)
    assert max(qp[1:12]) < 40  # slice header and skipped CTUs
    assert sum(crf[1:12]) > 3 * sum(qp[1:12])
    auto, modes = code("auto", 0)
    assert modes[:12] == ["crf"] * 12 and modes[12:] == ["qp"] * 12  # nothing measured before the refresh
    assert auto[:12] == crf[:12] and auto[12:] == qp[12:]
    assert code("auto", 2)[1][12:] == ["crf"] * 12  # a panning camera
    with pytest.raises(ValueError):
        HevcSettings(background_rate="cbr")
