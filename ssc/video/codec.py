"""SSVC encoder and decoder: per-track intra / inter coding over the container of :mod:`ssc.video.format`.

Every track (group id of the per-frame group maps) keeps its own reference: the latest reconstruction
of the pixels it covered, padded where it was never seen (:mod:`ssc.video.motion`). Intra entries code
the group with the image codec (the group-independent model of :mod:`ssc.models.codec`, Feng et al.
ICCV 2023) plus an integer refinement layer; inter entries code motion and residual against the track's
own reference (:mod:`ssc.video.texture`). No entry depends on another track, so one track can be
decoded through time from its own bytes (the complement track also reads the others' mask records).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from ..crop import box_mask_crop, codec_device, crop_box, tile_input
from ..decode import codec_for_stream, crop_pixels
from ..bitstream.format import pack_mask, pack_segment, quality_code, quality_value
from ..bitstream.wire import Cursor, varint
from ..bitstream.groupmap import decode_group_mask, encode_group_mask
from ..errors import CorruptSegmentError, FrameRangeError, GroupNotFoundError, SSCError
from ..masks import GroupMap
from ..models.zoo import UNREGISTERED_ID, LoadedCodec
from . import format as vf
from .kernels import masked_write
from .motion import EXHAUSTIVE, MARGIN, MB, SearchTools, pad_reference

#: the encoder's default speed tools (measured against EXHAUSTIVE by ssc.eval.video_speed)
FAST = SearchTools()
#: the background's intra period in object GOPs by default (measured by ssc.eval.video_speed)
BACKGROUND_GOP_FACTOR = 4
from .ratecontrol import RateControl, intra_quality
from .hevc import HevcDecoder, HevcEncoder, HevcSettings
from .stream import VideoReader
from .texture import decode_layer, encode_layer


@dataclass
class TrackState:
    """What one track's decoder keeps between frames (encoder and decoder alike)."""

    canvas: np.ndarray  # (H, W, 3) uint8, latest reconstruction where seen
    seen: np.ndarray  # (H, W) bool
    mask: np.ndarray | None = None  # previous frame's mask (H, W) bool
    box: tuple[int, int, int, int] | None = None
    live: bool = False  # False until an intra entry (or after a failure)
    older: np.ndarray | None = None  # the padded reference before the latest inter update
    _padded: np.ndarray | None = None  # the padded newest reference, built once per frame
    #: whether inter entries are predicted from this state (the learned inner codec); an hevc track's
    #: decoder keeps its own references, so its state only composes frames and pads nothing
    predicts: bool = True

    @classmethod
    def empty(cls, h: int, w: int, predicts: bool = True) -> "TrackState":
        return cls(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), bool), predicts=predicts)

    def update(self, recon: np.ndarray, region: tuple[int, int, int, int], mask: np.ndarray, intra: bool) -> None:
        """Write a decoded entry into the reference. An intra entry starts the reference afresh, so that
        decoding from any I-frame rebuilds exactly the encoder's references (random access); an inter
        entry keeps the reference it replaces (already padded) as the older one."""
        if intra:
            self.seen[:] = False
            self.older = None
        elif self.predicts:
            self.older = self.references()[0]
        self._padded = None
        x0, y0 = region[:2]
        masked_write(self.canvas, self.seen, np.ascontiguousarray(recon), np.ascontiguousarray(mask, bool), y0, x0)

    def references(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The padded newest reference and, after at least one inter entry, the one before it."""
        if self._padded is None:
            self._padded = pad_reference(self.canvas, self.seen)
        return self._padded, self.older


def _full_mask(box_mask: np.ndarray, box: tuple[int, int, int, int], h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = box_mask
    return out


def _crop_mask(codec: LoadedCodec, mask: np.ndarray, box: tuple[int, int, int, int]):
    x0, y0, x1, y1 = box
    return box_mask_crop(mask[y0:y1, x0:x1], box, codec_device(codec))


def _intra_base(codec: LoadedCodec, image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int],
                qcode: int) -> tuple[bytes, np.ndarray]:
    """Image-codec body of the group's crop and the base frame the decoder will rebuild from it (from the
    encoder's quantised latents, which equal the decoder's bit for bit: no second entropy pass)."""
    x, m = tile_input(image, mask.astype(np.int32), 1, crop_box(box), codec_device(codec))
    body, y_hat = codec.model.compress_latents(x, m, quality_value(qcode))
    return body, _synthesize_base(codec, y_hat, _crop_mask(codec, mask, box), mask, box, qcode)


def _decode_base(codec: LoadedCodec, body: bytes, mask: np.ndarray, box: tuple[int, int, int, int], qcode: int) -> np.ndarray:
    crop = _crop_mask(codec, mask, box)
    return _synthesize_base(codec, codec.model.decompress_latents(body, crop), crop, mask, box, qcode)


def _synthesize_base(codec: LoadedCodec, y_hat, crop, mask: np.ndarray, box: tuple[int, int, int, int],
                     qcode: int) -> np.ndarray:
    """The frame-sized base picture of an intra entry from its quantised latents (``crop``: the box's
    mask as the codec takes it, :func:`_crop_mask`)."""
    x0, y0, x1, y1 = box
    part = crop_pixels(codec.model.synthesize(y_hat, crop, quality_value(qcode)))
    base = np.zeros(mask.shape + (3,), np.uint8)
    base[y0:y1, x0:x1] = part[: y1 - y0, : x1 - x0]
    return base


def _intra_body(qcode: int, base: bytes, layer: bytes) -> bytes:
    return varint(qcode, "quality") + varint(len(base), "base length") + base + layer


def _split_intra(body: bytes) -> tuple[int, bytes, bytes]:
    c = Cursor(body)
    q, n = c.varint("intra quality"), c.varint("intra base length")
    base = c.take(n, "intra base")
    return q, base, body[c.pos :]


@dataclass
class FrameStats:
    """One frame's encode. ``bytes`` and ``track_bytes`` are filled in when the frame is written: at
    once, or up to the hevc tracks' lookahead later (``written``)."""

    number: int
    intra: bool
    bytes: int
    track_bytes: dict[int, int]
    track_qp: dict[int, int]
    seconds: float
    written: bool = True


@dataclass
class _Part:
    """One entry of a frame waiting to be written: everything but its segment body, or the hevc job
    that will carry it."""

    track_id: int
    intra: bool
    box: tuple[int, int, int, int]
    area: int
    mask_record: bytes
    same: bool
    new: bool
    class_id: int
    label: str
    body: bytes | None = None
    job: object | None = None  # an hevc job (ssc.video.hevc), its body set when x265 gives it

    def ready(self) -> bool:
        return self.body is not None or (self.job is not None and self.job.body is not None)

    def segment(self) -> bytes:
        return pack_segment(self.track_id, self.body if self.body is not None else self.job.body)


@dataclass
class _Waiting:
    number: int
    parts: list[_Part]
    stats: FrameStats


@dataclass
class VideoSummary:
    frames: int
    bytes: int
    tracks: dict[int, vf.TrackInfo]
    seconds: float
    stats: list[FrameStats] = field(default_factory=list)


class VideoEncoder:
    """Streaming encoder: ``encode(frame, group_map)`` per frame, then ``close()`` (writes the index).
    Memory is bounded by the tracks' reference frames, independent of the video's length."""

    def __init__(self, sink: BinaryIO | str | Path, width: int, height: int, fps: float | Fraction, codec: LoadedCodec | None,
                 gop: int = 16, rate: RateControl | None = None, complement_track: int | None = 0,
                 keep_stats: bool = True, tools: SearchTools = FAST, background_gop: int | None = None,
                 inner: str = "learned", hevc: HevcSettings | None = None) -> None:
        """``gop``: the intra period of the object tracks. ``background_gop``: the intra period of the
        complement (background) track, ``BACKGROUND_GOP_FACTOR * gop`` by default: between its refreshes
        the background is a P entry, which for a fixed camera costs a fraction of the learned intra's
        time and bits (decoding the background from a random frame then starts at its last refresh;
        object tracks still start at their own I entries, :meth:`VideoReader.random_access`).
        ``tools``: the motion search's speed tools (encoder-only; :data:`EXHAUSTIVE` searches fully).
        ``inner``: the tracks' inner codec, ``learned`` (``codec``: the image codec of intra entries,
        then motion and residual layers) or ``hevc`` (x265 per track, :mod:`ssc.video.hevc`, with
        ``hevc``'s settings; ``codec`` is not used)."""
        if inner not in vf.INNER_CODECS:
            raise ValueError(f"inner codec must be one of {', '.join(vf.INNER_CODECS)}, got {inner!r}")
        if inner == "learned" and codec is None:
            raise ValueError("the learned inner codec needs an image codec")
        if gop < 1:
            raise ValueError("gop must be >= 1")
        background_gop = BACKGROUND_GOP_FACTOR * gop if background_gop is None else background_gop
        if background_gop < 1:
            raise ValueError("background_gop must be >= 1")
        self._own = isinstance(sink, (str, Path))
        self.f: BinaryIO = open(sink, "wb") if self._own else sink  # type: ignore[arg-type]
        fr = Fraction(fps).limit_denominator(1001)
        if fr <= 0:
            raise ValueError("fps must be positive")
        model = (codec.card.name, codec.weights_id) if inner == "learned" else ("", UNREGISTERED_ID)
        self.header = vf.VideoHeader(width, height, fr.numerator, fr.denominator, *model, gop, complement_track,
                                     inner=inner)
        self._hevc = HevcEncoder(width, height, fr, hevc or HevcSettings()) if inner == "hevc" else None
        self.codec, self.gop, self.rate, self.tools = codec, gop, rate or RateControl(), tools
        self.background_gop = background_gop
        self.states: dict[int, TrackState] = {}
        self._vectors: dict[int, np.ndarray] = {}  # encoder only: each track's last P vectors (predictors)
        self.index = vf.Index()
        self.pos = 0
        self._write(vf.encode_header(self.header))
        self.n = 0  # frames given
        self.frames_written = 0  # frames in the file (fewer than given only while hevc lookahead holds some)
        self._waiting: deque[_Waiting] = deque()
        self.keep_stats = keep_stats
        self.stats: list[FrameStats] = []
        self._t = 0.0
        self._closed = False

    def _write(self, b: bytes) -> None:
        self.f.write(b)
        self.pos += len(b)

    def encode(self, frame: np.ndarray, gm: GroupMap, force_intra: bool = False) -> FrameStats:
        t0 = time.perf_counter()
        H, W = self.header.height, self.header.width
        if frame.shape != (H, W, 3) or frame.dtype != np.uint8:
            raise SSCError(f"frame {self.n} must be ({H}, {W}, 3) uint8, got {frame.shape} {frame.dtype}")
        gm.check_size(H, W)
        intra_frame = force_intra or self.n % self.gop == 0
        self.rate.start_frame(intra_frame, self.header.fps, self.gop, held=self._hevc is not None)
        comp = self.header.complement_track
        present = set(gm.ids)
        parts, qps = [], {}
        plan = []  # per group: (group, track id, state, new, intra, mask, qp)
        for g in gm.groups:
            tid = g.group_id
            st = self.states.get(tid)
            new = tid not in self.index.tracks
            period = self.background_gop if tid == comp else self.gop
            intra = force_intra or self.n % period == 0 or st is None or not st.live
            if self._hevc is not None and tid != comp and not self._hevc.fits(tid, g.box):
                intra = True  # the box outgrew the track's tube: a new tube from an IDR picture
            if st is None:
                st = self.states[tid] = TrackState.empty(H, W)
            if self._hevc is not None:  # an intra entry's qp is the CRF of the track's stream until its next
                qp = self.rate.entry_qp(False, background=(tid == comp))  # one: x265 sets its own I/P ratio
            else:
                qp = self.rate.entry_qp(intra, background=(tid == comp), referenced=(self.n + 1) % period != 0)
            qps[tid] = qp
            plan.append((g, tid, st, new, intra, gm.labels == tid, qp))
        if self._hevc is not None:  # every track's x265 at once (libx265 holds the tracks' references)
            jobs = [self._hevc.prepare(tid, frame, mask, g.box, intra, qp, tid == comp)
                    for g, tid, st, new, intra, mask, qp in plan]
            self._hevc.encode_entries(jobs)
        for k, (g, tid, st, new, intra, mask, qp) in enumerate(plan):
            body = None
            if self._hevc is not None:
                pass  # the job's body, when x265 gives it
            elif intra:
                qcode = quality_code(intra_quality(qp, self.codec.model.num_qualities))
                base_body, base = _intra_base(self.codec, frame, mask, g.box, qcode)
                layer, recon, lay = encode_layer(frame, mask, g.box, qp, base=base)
                self._vectors.pop(tid, None)  # a fresh reference: the old vectors predict nothing
                body = _intra_body(qcode, base_body, layer)
            else:
                r1, r2 = st.references()
                prev = self._vectors.get(tid)
                vec = np.zeros((-(-H // MB) + 1, -(-W // MB) + 1, 2), np.int64)
                layer, recon, lay = encode_layer(frame, mask, g.box, qp, ref_padded=r1, ref2_padded=r2, tools=self.tools,
                                                 grid=prev, vectors=vec)
                self._vectors[tid] = vec
                body = layer
            same = (not intra and not new and tid != comp and st.box == g.box and st.mask is not None
                    and np.array_equal(st.mask, mask))
            if tid == comp or same:
                mrec = b""
            else:
                x0, y0, x1, y1 = g.box
                mrec = pack_mask(tid, encode_group_mask(mask[y0:y1, x0:x1]))
            if self._hevc is None:  # libx265 holds the hevc tracks' references
                st.update(recon, lay.region, mask, intra)
            st.mask, st.box, st.live = mask, g.box, True
            parts.append(_Part(tid, intra, g.box, g.area, mrec, same, new, g.class_id, g.label, body,
                               jobs[k] if self._hevc is not None else None))
        for tid in [t for t in self.states if t not in present]:  # tracks that left: their next entry is
            del self.states[tid]  # intra, so nothing of their state is needed (memory follows live tracks)
            self._vectors.pop(tid, None)
            if self._hevc is not None:
                self._hevc.drop(tid)
        fs = FrameStats(self.n, all(p.intra for p in parts), 0, {}, qps, 0.0, written=False)
        self._waiting.append(_Waiting(self.n, parts, fs))
        self._write_ready()
        dt = time.perf_counter() - t0
        self._t += dt
        fs.seconds = dt
        if self.keep_stats:
            self.stats.append(fs)
        self.n += 1
        return fs

    def _write_ready(self) -> None:
        """Write the waiting frames whose entries all have their bodies, oldest first (frames are
        written in order; only hevc tracks with a lookahead make a frame wait)."""
        while self._waiting and all(p.ready() for p in self._waiting[0].parts):
            w = self._waiting.popleft()
            entries, records = [], []
            for p in w.parts:
                seg = p.segment()
                entries.append(vf.Entry(p.track_id, p.intra, p.box, p.area, len(p.mask_record), len(seg), p.same,
                                        p.new, p.class_id, p.label))
                records.append((p.mask_record, seg))
            data = vf.encode_frame(w.number, entries, records)
            at = self.pos
            self._write(data)  # one write: a frame is in the file whole or not at all
            self.index.add_frame(at, w.number, entries)  # indexed only once written (an interrupt leaves a valid stream)
            self.rate.end_frame(8 * len(data))
            w.stats.bytes, w.stats.written = len(data), True
            w.stats.track_bytes = {e.track_id: e.mask_len + e.seg_len for e in entries}
            self.frames_written += 1

    def close(self) -> VideoSummary:
        if not self._closed:
            if self._hevc is not None:
                self._hevc.finish()  # what x265 still holds back: the waiting frames' last access units
                self._write_ready()
                self._hevc.close()
            off = self.pos
            self._write(vf.encode_index(self.index))
            self._write(vf.encode_trailer(off))
            if self._own:
                self.f.close()
            self._closed = True
        return VideoSummary(self.frames_written, self.pos, dict(self.index.tracks), self._t, self.stats)

    def __enter__(self) -> "VideoEncoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class DecodedFrame:
    number: int
    image: np.ndarray  # (H, W, 3) uint8: decoded tracks (over the held backdrop, if any), ``fill`` elsewhere
    track_map: np.ndarray  # (H, W) int32: id of the decoded track at each pixel, -1 elsewhere
    decoded: list[int]
    failed: dict[int, str]
    backdrop_from: int | None = None  # the frame whose background refresh shows behind the tracks


class VideoDecoder:
    """Decode chosen tracks of a stream over a frame range. Decoding starts at the nearest I-frame at or
    before ``start``; frames before ``start`` are decoded (they are references) but not yielded.

    ``backdrop=True`` (chosen tracks without the complement) also decodes the complement track at its
    intra refreshes only (every ``background_gop`` frames) and holds it behind the chosen tracks, each
    refresh painting over the previous one where it has pixels; pixels no refresh has held yet (where
    objects stood) are padded from the held ones as references are (:func:`pad_reference`), ``fill``
    only before the first refresh. A persons-only receiver then sees its people in their (stale) scene
    instead of on ``fill`` -- a person detector finds far more of them there (``eval/cutout_fidelity``)
    -- for the bytes of the background's I entries and, on those frames, the other tracks' mask
    records; the background's P entries are never read.
    """

    def __init__(self, reader: VideoReader, codec: LoadedCodec | None = None, tracks: Iterable[int] | None = None,
                 labels: Iterable[str] | None = None, device: str = "cpu", backdrop: bool = False) -> None:
        self.rd = reader
        hdr = reader.header
        # the learned tracks' image codec (checks model_id and weights_id); hevc tracks need none
        self.codec = codec_for_stream(hdr, codec, device) if hdr.inner == "learned" else None
        self._hevc: HevcDecoder | None = None
        known = reader.index.tracks
        chosen: set[int] = set()
        if tracks is None and labels is None:
            chosen = set(known)
        for t in tracks or []:
            if t not in known:
                raise GroupNotFoundError(f"track {t} is not in the stream (tracks: {sorted(known)})")
            chosen.add(t)
        for lab in labels or []:
            hit = {t.track_id for t in known.values() if t.label == lab}
            if not hit:
                raise GroupNotFoundError(f"no track labelled {lab!r} (labels: {sorted({t.label for t in known.values()})})")
            chosen |= hit
        self.tracks = sorted(chosen)
        self.comp = hdr.complement_track
        # masks needed: the chosen tracks', plus every other track's when the complement is chosen
        self._need_all_masks = self.comp in chosen
        self.backdrop = backdrop and self.comp not in chosen and self.comp in known
        self.states: dict[int, TrackState] = {}
        self.masks: dict[int, tuple[tuple[int, int, int, int], np.ndarray] | None] = {}
        self._held: TrackState | None = None  # the refreshes so far: canvas and which pixels they held
        self._held_from: int | None = None
        self._backdrop: np.ndarray | None = None  # the held canvas, padded where nothing was held

    def _mask(self, fh: vf.FrameHeader, e: vf.Entry) -> np.ndarray:
        """The entry's mask on its box (reading its record, or reusing the previous one)."""
        if e.same_mask:
            prev = self.masks.get(e.track_id)
            if prev is None or prev[0] != e.box:
                raise CorruptSegmentError(e.track_id, "mask marked unchanged but the previous mask is unknown")
            return prev[1]
        x0, y0, x1, y1 = e.box
        try:
            m = decode_group_mask(self.rd.mask_bytes(fh, e), y1 - y0, x1 - x0)
        except CorruptSegmentError:
            raise
        except SSCError as err:
            raise CorruptSegmentError(e.track_id, f"mask does not decode ({err})") from err
        if int(m.sum()) != e.area:
            raise CorruptSegmentError(e.track_id, f"mask has {int(m.sum())} pixels, the entry says {e.area}")
        return m

    def frames(self, start: int = 0, stop: int | None = None, fill: int = 0) -> Iterator[DecodedFrame]:
        n = self.rd.num_frames
        stop = n if stop is None else min(stop, n)
        if not 0 <= start < max(stop, 1):
            raise FrameRangeError(f"frame range [{start}, {stop}) is empty or outside the stream's [0, {n})")
        if n == 0:  # a stream whose frames are all lost (cut before the first): nothing to decode
            return
        H, W = self.rd.header.height, self.rd.header.width
        self.states, self.masks, self._held, self._held_from, self._backdrop = {}, {}, None, None, None
        if self.rd.header.inner == "hevc":
            self._hevc = HevcDecoder(W, H)
        first = self.rd.random_access(start, self.tracks + [self.comp] if self.backdrop else self.tracks)
        for i in range(first, stop):
            fr = self._decode_frame(self.rd.frame(i), H, W, fill)
            if i >= start:
                yield fr

    def _complement_mask(self, e: vf.Entry, full: dict[int, np.ndarray], mask_fail: dict[int, str], H: int, W: int) -> np.ndarray:
        """The complement's mask: every pixel no other track of the frame covers."""
        if mask_fail:
            raise CorruptSegmentError(e.track_id, f"complement needs the masks of tracks {sorted(mask_fail)}, which failed")
        mask = np.ones((H, W), bool)
        for m in full.values():
            mask &= ~m
        if int(mask.sum()) != e.area:
            raise CorruptSegmentError(e.track_id, "complement mask does not match its area")
        return mask

    def _reconstruct(self, fh: vf.FrameHeader, e: vf.Entry, mask: np.ndarray, st: TrackState | None):
        """(recon, its region x0, y0, ...) of one entry: intra from its own bytes, inter against ``st``'s
        references (learned) or the track's HEVC decoder (hevc)."""
        body = self.rd.segment(fh, e)
        if self._hevc is not None:
            if not e.intra and (st is None or not st.live):
                raise CorruptSegmentError(e.track_id, "inter entry without a decoded reference (earlier failure)")
            return self._hevc.decode_entry(e.track_id, body, e.intra)
        if e.intra:
            qcode, base_body, layer = _split_intra(body)
            base = _decode_base(self.codec, base_body, mask, e.box, qcode)
            recon, lay = decode_layer(layer, mask, e.box, base=base, version=self.rd.header.version)
            return recon, lay.region
        if st is None or not st.live:
            raise CorruptSegmentError(e.track_id, "inter entry without a decoded reference (earlier failure)")
        r1, r2 = st.references()
        recon, lay = decode_layer(body, mask, e.box, ref_padded=r1, ref2_padded=r2, version=self.rd.header.version)
        return recon, lay.region

    def _refresh_backdrop(self, fh: vf.FrameHeader, e: vf.Entry, full: dict[int, np.ndarray], mask_fail: dict[int, str],
                          H: int, W: int) -> str | None:
        """Decode the complement's I entry into the held backdrop (``full`` / ``mask_fail``: the chosen
        tracks' masks of the frame); the reason when it cannot be."""
        full, fail = dict(full), dict(mask_fail)
        for o in fh.entries:
            if o.track_id == self.comp or o.track_id in self.tracks:
                continue
            if o.same_mask:
                return None  # a mask the backdrop never read: no refresh here, the older one stays
            try:
                full[o.track_id] = _full_mask(self._mask(fh, o), o.box, H, W)
            except SSCError as err:
                fail[o.track_id] = str(err)
        try:
            mask = self._complement_mask(e, full, fail, H, W)
            recon, region = self._reconstruct(fh, e, mask, None)
        except SSCError as err:
            return f"backdrop (track {e.track_id}), frame {fh.number}: {err.reason if isinstance(err, CorruptSegmentError) else err}"
        if self._held is None:
            self._held = TrackState.empty(H, W)
        x0, y0 = region[:2]
        masked_write(self._held.canvas, self._held.seen, np.ascontiguousarray(recon), mask, y0, x0)
        self._held_from = fh.number
        self._backdrop = pad_reference(self._held.canvas, self._held.seen)[MARGIN:-MARGIN, MARGIN:-MARGIN]
        return None

    def _decode_frame(self, fh: vf.FrameHeader, H: int, W: int, fill: int) -> DecodedFrame:
        tmap = np.full((H, W), -1, np.int32)
        decoded, failed = [], {}
        present = {e.track_id: e for e in fh.entries}
        full: dict[int, np.ndarray] = {}
        mask_fail: dict[int, str] = {}
        for e in fh.entries:  # masks first: the complement needs all the others
            if e.track_id == self.comp or not (e.track_id in self.tracks or self._need_all_masks):
                continue
            try:
                bm = self._mask(fh, e)
                self.masks[e.track_id] = (e.box, bm)
                full[e.track_id] = _full_mask(bm, e.box, H, W)
            except SSCError as err:
                self.masks[e.track_id] = None
                mask_fail[e.track_id] = str(err)
        for tid in list(self.masks):
            if tid not in present:
                self.masks.pop(tid)
        if self.backdrop and (ce := present.get(self.comp)) is not None and ce.intra:
            why = self._refresh_backdrop(fh, ce, full, mask_fail, H, W)
            if why:
                failed[self.comp] = why
        image = self._backdrop.copy() if self._backdrop is not None else np.full((H, W, 3), fill, np.uint8)
        for tid in self.tracks:
            e = present.get(tid)
            st = self.states.get(tid)
            if e is None:
                self.states.pop(tid, None)  # absent: the next entry is intra (memory follows live tracks)
                continue
            if st is None:
                st = self.states[tid] = TrackState.empty(H, W, predicts=self._hevc is None)
            try:
                if tid in mask_fail:
                    raise CorruptSegmentError(tid, mask_fail[tid])
                mask = self._complement_mask(e, full, mask_fail, H, W) if tid == self.comp else full[tid]
                recon, region = self._reconstruct(fh, e, mask, st)
            except SSCError as err:
                st.live = False
                failed[tid] = f"track {tid}, frame {fh.number}: {err.reason if isinstance(err, CorruptSegmentError) else err}"
                continue
            st.update(recon, region, mask, e.intra)
            st.live = True
            image[mask] = st.canvas[mask]
            tmap[mask] = tid
            decoded.append(tid)
        return DecodedFrame(fh.number, image, tmap, decoded, failed, self._held_from)


def decode_video(source: str | Path | bytes, codec: LoadedCodec | None = None, tracks: Iterable[int] | None = None,
                 labels: Iterable[str] | None = None, start: int = 0, stop: int | None = None, fill: int = 0,
                 device: str = "cpu", backdrop: bool = False) -> Iterator[DecodedFrame]:
    """Decode the chosen tracks (all by default) of frames [start, stop), over the held background
    refreshes with ``backdrop``."""
    with VideoReader(source) as rd:
        yield from VideoDecoder(rd, codec, tracks, labels, device, backdrop).frames(start, stop, fill)
