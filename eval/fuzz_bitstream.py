"""Long-running mutation fuzzer for the stream reader and group-map decoders (the bounded version runs
in the test suite through hypothesis). Mutations: bit flips, truncations, splices of random bytes,
forged header fields with a recomputed header CRC (which reaches the table's lengths, boxes and
areas), mask and segment damage. Any exception
other than an ssc error, or a single input taking longer than ``--max-seconds``, is a failure.

    python -m ssc.eval.fuzz_bitstream --seconds 120 [--stream x.ssc]
    python -m ssc.eval.fuzz_bitstream --bodies            # forged segment bodies of image streams
    python -m ssc.eval.fuzz_bitstream --video gi-hyper-ckbd-s   # damaged SSVC (.ssv) streams, full decode
    python -m ssc.eval.fuzz_bitstream --campaign 1000000        # counted: image + video parsers, then bodies
"""
from __future__ import annotations

import argparse
import json
import struct
import time
import traceback
from pathlib import Path

import numpy as np

from ssc.bitstream import StreamReader
from ssc.bitstream.format import PREAMBLE
from ssc.bitstream.wire import crc32
from ssc.errors import SSCError


def _seed_stream(cells: bool = False) -> bytes:
    """A model-free stream of four groups: pixel-exact, or cell-owned with the exact masks too."""
    from ssc.bitstream import GroupEntry, StreamHeader, build_stream, encode_group_masks
    from ssc.bitstream.groupmap import encode_cell_masks
    from ssc.masks import GroupMap
    from ssc.masks.cells import cell_owners, cells_to_pixels

    lab = np.zeros((48, 70), np.int32)
    lab[5:30, 4:40] = 1
    lab[20:45, 30:60] = 2
    lab[25:28, 40:44] = 3
    owners = cell_owners(lab)
    coded = GroupMap.from_labels(cells_to_pixels(owners, lab.shape) if cells else lab)
    obj = {g.group_id: g.box for g in GroupMap.from_labels(lab).groups}
    groups = tuple(GroupEntry(g.group_id, g.group_id, f"g{g.group_id}", g.box, g.area, 256 + g.group_id,
                              object_box=obj[g.group_id] if cells else None, scale=int(cells and g.group_id == 2))
                   for g in coded.groups)
    h = StreamHeader(70, 48, "fuzz", b"\0" * 8, 256, groups, cell=16 * cells, exact_masks=cells)
    masks = encode_cell_masks(owners, lab, groups, 16) if cells else encode_group_masks(lab, groups)
    return build_stream(h, {0: b"a" * 40, 1: b"b" * 12, 2: b"c" * 20, 3: b"d"}, masks)


def stream_masks(data: bytes) -> dict[int, bytes]:
    """The coded mask of every group of a stream but the complement's (to rebuild it)."""
    from ssc.bitstream.format import unframe_mask

    h = StreamReader(data).header
    return {g.group_id: unframe_mask(data[h.masks_offset + g.mask_offset:][: g.mask_length], g.group_id, h.version)
            for g in h.groups if not g.is_complement}


def damage(data: bytes, kind: int, rng: np.random.Generator) -> bytes:
    """Format-blind damage: bit flips (kind 0), a truncation (1) or a splice of random bytes (2)."""
    b = bytearray(data)
    if kind == 0:
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if kind == 1:
        return bytes(b[: int(rng.integers(0, len(b) + 1))])
    p = int(rng.integers(0, len(b) + 1))
    return bytes(b[:p]) + rng.bytes(int(rng.integers(1, 64))) + bytes(b[p:])


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    kind = int(rng.integers(0, 5))
    if kind < 3:
        return damage(data, kind, rng)
    b = bytearray(data)
    hlen = struct.unpack_from("<I", b, 4)[0]
    body = bytearray(b[PREAMBLE.size : PREAMBLE.size + hlen])
    if kind == 3:  # forge header bytes, fix the CRC so the semantic checks are reached
        for _ in range(int(rng.integers(1, 5))):
            p = int(rng.integers(0, len(body)))
            body[p] = int(rng.integers(0, 256))
    else:  # forge a 32-bit field at a random aligned place with an extreme value
        if len(body) >= 4:
            p = int(rng.integers(0, len(body) - 3))
            struct.pack_into("<I", body, p, int(rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 1 << 20])))
    return bytes(b[:4]) + struct.pack("<II", len(body), crc32(bytes(body))) + bytes(body) + bytes(b[PREAMBLE.size + hlen :])


def mutate_body(body: bytes, rng: np.random.Generator) -> bytes:
    """A forged segment body: bit flips, a truncation, or random bytes (the caller re-frames it, so
    the segment CRC passes and the entropy decoder and the networks see the damage)."""
    kind = int(rng.integers(0, 3))
    b = bytearray(body)
    if kind == 0 and b:
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if kind == 1:
        return bytes(b[: int(rng.integers(0, len(b) + 1))])
    return rng.bytes(int(rng.integers(0, 2 * len(b) + 5)))


def _budget(seconds: float | None, count: int | None):
    """A loop condition: until ``seconds`` have passed, or ``count`` iterations were made."""
    end = time.time() + seconds if seconds is not None else None
    n = 0

    def more() -> bool:
        nonlocal n
        n += 1
        return (time.time() < end) if end is not None else n <= (count or 0)

    return more


def fuzz_bodies(models: list[str], seconds: float | None, rng: np.random.Generator, count: int | None = None) -> dict:
    """Decode streams of the shipped models whose segment bodies are forged (valid framing):
    every outcome must be a decoded group or an ssc error for that group, never an exception or a
    non-finite output."""
    import warnings

    import torch

    from ssc.api import decode_image, encode_image
    from ssc.bitstream import build_stream
    from ssc.masks import GroupMap
    from ssc.models.zoo import load_codec
    from ssc.omni.decode import decode_features

    out = {}
    lab = np.zeros((96, 128), np.int32)
    lab[10:50, 20:70] = 1
    lab[40:90, 60:120] = 2
    xx = np.mgrid[0:96, 0:128][1]
    img = np.stack([(xx * 2 + c * 40) % 256 for c in range(3)], -1).astype(np.uint8)
    for name in models:
        codec = load_codec(name)
        features = hasattr(codec.model, "feature_head")
        # the background at half size (bitstream v5 scaled groups): its upsampling path is fuzzed too
        stream = encode_image(img, GroupMap.from_labels(lab), codec, quality=1.0,
                              group_scale=None if features else {0: 1}).data
        rd = StreamReader(stream)
        bodies = {g: rd.read_segment(g) for g in rd.header.group_ids}
        masks = stream_masks(stream)
        counts = {"decoded": 0, "group failed": 0, "crash": 0}
        more = _budget(None if seconds is None else seconds / len(models), None if count is None else count // len(models))
        while more():
            gid = int(rng.choice(rd.header.group_ids))
            data = build_stream(rd.header, {**bodies, gid: mutate_body(bodies[gid], rng)}, masks)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    res = decode_features(data, codec) if features else decode_image(data, codec)
                    if features and not all(torch.isfinite(v).all() for v in res.features.values()):
                        raise ValueError("non-finite features")
                counts["group failed" if res.failed else "decoded"] += 1
            except SSCError:
                counts["group failed"] += 1
            except Exception:  # anything else is a bug
                counts["crash"] += 1
        out[name] = counts
        print(f"{name}: {counts}")
    return out


def _video_seed(model: str, inner: str = "learned") -> bytes:
    """A 6-frame SSVC stream of a moving textured square over a panning background (3 tracks, GOP 3,
    the background refreshed at frames 0 and 3); its tracks coded by the ``inner`` codec."""
    import io

    from ssc.masks import GroupMap
    from ssc.models.zoo import load_codec
    from ssc.video import RateControl, VideoEncoder

    codec = load_codec(model) if inner == "learned" else None
    rng = np.random.default_rng(1)
    bg = rng.integers(0, 256, (80, 140, 3), dtype=np.uint8)
    buf = io.BytesIO()
    with VideoEncoder(buf, 120, 80, 25, codec, gop=3, background_gop=3, rate=RateControl(qp=30), inner=inner) as enc:
        for t in range(6):
            f = np.ascontiguousarray(bg[:, 2 * t : 2 * t + 120])
            lab = np.zeros((80, 120), np.int32)
            lab[10 + 3 * t : 40 + 3 * t, 20 + 4 * t : 60 + 4 * t] = 1
            if t >= 2:
                lab[50:75, 80:110] = 2
            f[lab == 1] = 200
            enc.encode(f, GroupMap.from_labels(lab, {1: (1, "square"), 2: (2, "box")}))
    return buf.getvalue()


def mutate_video(data: bytes, rng: np.random.Generator) -> bytes:
    """Generic :func:`damage`, a forged frame header with its CRC
    recomputed (reaching the semantic checks), or a forged segment body with valid framing (reaching
    the entropy decoder and the texture / intra layers, or libavcodec's HEVC decoder: damaged and
    truncated access units); the last two drop the index, so the reader must also rebuild it by
    scanning."""
    return mutate_video_entry(data, rng)[0]


def mutate_video_entry(data: bytes, rng: np.random.Generator, kind: int | None = None) -> tuple[bytes, int | None]:
    """:func:`mutate_video`, also naming the track whose segment body was forged (kind 4), else None."""
    from ssc.bitstream.format import pack_segment, unpack_segment
    from ssc.video import VideoReader
    from ssc.video import format as vf

    kind = int(rng.integers(0, 5)) if kind is None else kind
    if kind < 3:
        return damage(data, kind, rng), None
    rd = VideoReader(data)
    i = int(rng.integers(0, rd.num_frames))
    fh = rd.frame(i)
    start, end = fh.offset, fh.offset + fh.length
    tail = data[end : rd.index.offsets[i + 1]] if i + 1 < rd.num_frames else b""
    rest = data[rd.index.offsets[i + 1] :] if i + 1 < rd.num_frames else b""
    rest = rest[: len(rest) - (len(data) - rd.frames_end)]  # frames only: drop index and trailer
    if kind == 3:  # forge frame-header bytes, fix its CRC
        raw = bytearray(data[start + 4 : fh.records_offset - 4])
        c = 0
        while raw[c] & 0x80:
            c += 1
        body = bytearray(raw[c + 1 :])
        for _ in range(int(rng.integers(1, 4))):
            body[int(rng.integers(0, len(body)))] = int(rng.integers(0, 256))
        frame = (vf.FRAME_SYNC + vf.varint(len(body)) + bytes(body) + struct.pack("<I", crc32(bytes(body)))
                 + data[fh.records_offset : end])
        e = None
    else:  # forge one entry's segment body, re-framed with a valid CRC and length
        e = fh.entries[int(rng.integers(0, len(fh.entries)))]
        records = []
        for x in fh.entries:
            m_off, s_off = fh.record_offsets(x.track_id)
            mrec, seg = data[m_off : m_off + x.mask_len], data[s_off : s_off + x.seg_len]
            if x.track_id == e.track_id:
                seg = pack_segment(x.track_id, mutate_body(unpack_segment(seg, x.track_id), rng))
            records.append((mrec, seg))
        entries = [x if x.track_id != e.track_id else vf.Entry(**{**x.__dict__, "seg_len": len(records[k][1])})
                   for k, x in enumerate(fh.entries)]
        frame = vf.encode_frame(fh.number, entries, records)
    return data[:start] + frame + tail + rest, None if e is None else e.track_id


def fuzz_video(model: str, seconds: float | None, max_seconds: float, rng: np.random.Generator, count: int | None = None,
               inner: str = "learned") -> dict:
    """Decode every frame of damaged SSVC streams (tracks coded by ``inner``), all tracks and then
    track 1 over the held background (``backdrop``): each outcome must be a refused stream or frames
    whose damaged tracks are reported, never another exception or a hang. Where one track's segment
    body was forged, every other track must decode to exactly its pixels of the undamaged stream
    (``leaked`` counts the streams where one did not)."""
    from ssc.models.zoo import load_codec
    from ssc.video import decode_video

    codec = load_codec(model) if inner == "learned" else None
    seed = _video_seed(model, inner)
    clean = {f.number: f for f in decode_video(seed, codec)}
    counts = {"refused": 0, "tracks failed": 0, "clean": 0, "crash": 0, "slow": 0, "leaked": 0}
    failures = []
    more = _budget(seconds, count)
    while more():
        blob, forged = mutate_video_entry(seed, rng)
        t0 = time.perf_counter()
        try:
            frames = list(decode_video(blob, codec))
            failed = sum(len(f.failed) for f in frames)
            if forged is not None and any(_leaks(f, clean[f.number], forged) for f in frames if f.number in clean):
                counts["leaked"] += 1
                failures.append({"input_hex": blob[:256].hex(), "trace": f"track {forged}'s damage reached another track"})
            failed += sum(len(f.failed) for f in decode_video(blob, codec, tracks=[1], backdrop=True))
            res = "tracks failed" if failed else "clean"
        except SSCError:
            res = "refused"
        except Exception:  # anything else is a bug
            res = "crash"
            failures.append({"input_hex": blob[:256].hex(), "trace": traceback.format_exc(limit=4)})
        if time.perf_counter() - t0 > max_seconds:
            counts["slow"] += 1
        counts[res] += 1
    print(f"video ({inner}): {counts}")
    return {**counts, "failures": failures[:10]}


def _leaks(frame, clean, forged: int) -> bool:
    """Whether a track other than ``forged`` decoded to other pixels than in the undamaged stream."""
    for t in frame.decoded:
        if t != forged:
            m = frame.track_map == t
            if not np.array_equal(m, clean.track_map == t) or not np.array_equal(frame.image[m], clean.image[m]):
                return True
    return False


def exercise_video(blob: bytes) -> str:
    """Open an SSVC ``blob`` (index or scan) and read every frame header, mask record and segment
    (parsing only). Returns "accepted" or "refused"; anything but an ssc error propagates."""
    from ssc.video import VideoReader

    try:
        rd = VideoReader(blob)
        for i in range(rd.num_frames):
            try:
                fh = rd.frame(i)
                for e in fh.entries:
                    rd.mask_bytes(fh, e)
                    rd.segment(fh, e)
            except SSCError:
                pass
        return "accepted"
    except SSCError:
        return "refused"


def fuzz_parser(seeds: list[bytes], mut, ex, rng: np.random.Generator, more, max_seconds: float, tick=None) -> dict:
    """Mutate a random seed with ``mut`` and run ``ex`` on it while ``more()``: counts of accepted,
    refused, crashing (any exception but an ssc error) and slow inputs, and the first failures."""
    counts = {"accepted": 0, "refused": 0, "crash": 0, "slow": 0}
    failures = []
    while more():
        blob = mut(seeds[int(rng.integers(0, len(seeds)))], rng)
        t0 = time.perf_counter()
        try:
            res = ex(blob)
        except Exception:  # anything that is not an ssc error is a bug
            res = "crash"
            failures.append({"input_hex": blob[:512].hex(), "trace": traceback.format_exc(limit=4)})
        if time.perf_counter() - t0 > max_seconds:
            counts["slow"] += 1
            failures.append({"input_hex": blob[:512].hex(), "trace": "slow"})
        counts[res] += 1
        if tick:
            tick(1)
    return {**counts, "failures": failures[:20]}


def campaign(total: int, models: list[str], rng: np.random.Generator, extra_seeds: list[bytes], max_seconds: float,
             bodies: int, decodes: int) -> dict:
    """A counted campaign of ``total`` mutated streams: image-stream parsing (~85%), SSVC parsing
    (~15%), then ``bodies`` forged image segment bodies and ``decodes`` damaged SSVC streams fully
    decoded (of ``models[0]``). Counts per part; failures keep their input."""
    from tqdm import tqdm

    img_seeds = [_seed_stream(), _seed_stream(cells=True)] + extra_seeds
    vid_seeds = [_video_seed(models[0]), _video_seed(models[0], "hevc")]
    parse_total = total - bodies - decodes
    n_video = parse_total * 15 // 100
    parts: dict[str, dict] = {}
    for name, n, seeds, mut, ex in (("image parser", parse_total - n_video, img_seeds, mutate, exercise),
                                    ("video parser", n_video, vid_seeds, mutate_video, exercise_video)):
        bar = tqdm(total=n, desc=name, unit="stream", mininterval=5)
        parts[name] = fuzz_parser(seeds, mut, ex, rng, _budget(None, n), max_seconds, bar.update)
        bar.close()
        print(f"{name}: { {k: v for k, v in parts[name].items() if k != 'failures'} }")
    per_model = fuzz_bodies(models, None, rng, count=bodies)
    parts["image bodies"] = {k: sum(c[k] for c in per_model.values()) for k in ("decoded", "group failed", "crash")}
    parts["video decode"] = fuzz_video(models[0], None, max(max_seconds, 10.0), rng, count=decodes // 2)
    parts["video decode, hevc"] = fuzz_video(models[0], None, max(max_seconds, 10.0), rng, count=decodes - decodes // 2,
                                             inner="hevc")
    streams = sum(sum(v for k, v in c.items() if k not in ("slow", "failures")) for c in parts.values())
    crashes = sum(c.get("crash", 0) + c.get("leaked", 0) for c in parts.values())
    return {"streams": streams, "crashes": crashes, "parts": parts}


def exercise(blob: bytes) -> str:
    """Open ``blob`` and read every group's mask and segment (each may fail on its own), then the
    whole map. Returns "accepted" or "refused"; anything but an ssc error propagates."""
    try:
        rd = StreamReader(blob)
        for gid in rd.header.group_ids:
            for read in (rd.group_mask, rd.read_segment, rd.object_mask):
                try:
                    read(gid)
                except SSCError:
                    pass
        _ = rd.group_map
        return "accepted"
    except SSCError:
        return "refused"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-seconds", type=float, default=2.0, help="per-input time limit")
    ap.add_argument("--stream", action="append", default=[], help="extra seed streams")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/eval/fuzz")
    ap.add_argument("--bodies", nargs="*", default=None, metavar="MODEL",
                    help="instead: forge segment bodies of streams of these zoo models (default: gi-hyper-ckbd-s gi-omni-person)")
    ap.add_argument("--video", default=None, metavar="MODEL", help="instead: fuzz SSVC streams coded with this zoo model")
    ap.add_argument("--video-inner", default="learned", choices=["learned", "hevc"],
                    help="--video: the tracks' inner codec (hevc: damaged and truncated HEVC access units)")
    ap.add_argument("--campaign", type=int, default=None, metavar="N",
                    help="instead: N mutated streams in all (image and video parsers, forged bodies, video decodes)")
    ap.add_argument("--campaign-bodies", type=int, default=20000, help="campaign: forged image segment bodies")
    ap.add_argument("--campaign-decodes", type=int, default=5000, help="campaign: damaged SSVC streams fully decoded")
    args = ap.parse_args(argv)
    if args.campaign:
        rng = np.random.default_rng(args.seed)
        t0 = time.time()
        res = campaign(args.campaign, ["gi-hyper-ckbd-s", "gi-omni-person"], rng, [Path(s).read_bytes() for s in args.stream],
                       args.max_seconds, args.campaign_bodies, args.campaign_decodes)
        res["seconds"] = time.time() - t0
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "fuzz_campaign.json").write_text(json.dumps(res, indent=1))
        print(f"campaign: {res['streams']} streams, {res['crashes']} crashes, {res['seconds'] / 3600:.2f} h")
        return 1 if res["crashes"] else 0
    if args.video:
        res = fuzz_video(args.video, args.seconds, max(args.max_seconds, 10.0), np.random.default_rng(args.seed),
                         inner=args.video_inner)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "fuzz_video.json").write_text(json.dumps(res, indent=1))
        return 1 if res["crash"] or res["leaked"] else 0
    if args.bodies is not None:
        res = fuzz_bodies(args.bodies or ["gi-hyper-ckbd-s", "gi-omni-person"], args.seconds, np.random.default_rng(args.seed))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "fuzz_bodies.json").write_text(json.dumps(res, indent=1))
        return 1 if any(c["crash"] for c in res.values()) else 0
    seeds = [_seed_stream(), _seed_stream(cells=True)] + [Path(s).read_bytes() for s in args.stream]
    res = fuzz_parser(seeds, mutate, exercise, np.random.default_rng(args.seed), _budget(args.seconds, None), args.max_seconds)
    total = sum(res[k] for k in ("accepted", "refused", "crash"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps({"inputs": total, **res}, indent=1))
    print(f"inputs {total}: accepted {res['accepted']}, refused {res['refused']}, crashes {res['crash']}, slow {res['slow']}")
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
