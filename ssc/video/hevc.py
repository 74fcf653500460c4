"""The ``hevc`` inner codec of SSVC tracks: each track's pixels as an HEVC stream (libx265 to encode,
libavcodec's decoder to decode, both through PyAV), one access unit per frame in the track's segment.

The container stays ssc's (tracks, masks, header, random access, :mod:`ssc.video.format`); this module
codes what a track's segment body holds:

- A track is a **tube**: a window that follows the track's box, of a size fixed from one intra entry
  to the next (the box grown by :data:`MARGIN_FRAC` of its longer side and at least
  :data:`MARGIN_MIN` pixels per side, at least :data:`CTU` pixels a side, clipped to the frame).
  Each intra entry starts a new HEVC stream whose first access unit is an IDR picture carrying its
  parameter sets (``repeat-headers``), so decoding can start at any of the track's I entries; inter
  entries are P pictures.
- Inside the tube, pixels outside the track's mask are filled cheaply: for object tracks with a
  low-pass of the tube (smooth, context for a detector); for the complement (background) track, where
  objects stand, with the background last seen there, so a static camera's background costs almost
  nothing between refreshes. Decoders paste only the mask's pixels (the mask records are unchanged).
- x265's own tools do the coding: preset, ``tune`` (``zerolatency``: one access unit out per frame
  in, no lookahead; ``info=0``: no SEI of x265's version and options, 2.3 kB at every IDR picture
  otherwise), its lookahead and CU-tree when the encoder may hold frames back
  (:attr:`HevcSettings.lookahead`: x265 then lowers the qp of what later frames reference; still no
  B-frames, so access units stay in display order, one per frame). The track's qp from ssc's rate
  controller (the background's includes its ROI offset) at each intra entry holds for the HEVC stream
  it starts: as the CRF of object tracks, and for the background track as its CRF or, when the camera
  is fixed, as a constant qp (:attr:`HevcSettings.background_rate`); x265 sets its own I/P quantiser
  ratio within either. CRF gives a picture of low complexity a finer qp, so on a fixed camera the
  background's P pictures went on refining its I picture: a static 480x360 scene at CRF 28 with an
  IDR every 32 frames cost 139 kbit/s, against 47 at qp 28 (docs/results.md).

Body syntax: intra ``tw varint | th varint | tx zigzag | ty zigzag | access unit``; inter ``tx zigzag |
ty zigzag | access unit``: the tube's size and its top-left corner in this frame. Tubes lie in the
frame with its sides rounded up to even numbers (4:2:0 needs even picture sides): an odd frame's last
column or row is coded from its edge-padded copy, and decoders drop what lies past the frame.
A decoder refuses a tube larger than the frame, caps libavcodec's picture size to the tube
(``max_pixels``), runs it single-threaded (bit-exact everywhere), and fails only the track whose
access unit does not decode to exactly one picture of the tube's size.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..bitstream.wire import Cursor, unzigzag, varint, zigzag
from ..errors import BitstreamError, CorruptSegmentError, SSCError

#: tube margin around the track's box: this fraction of its longer side, at least MARGIN_MIN pixels
#: (8: 6% fewer tube bits than 16 on the surveillance clip's small persons, the same fidelity;
#: docs/results.md); a tube is at least CTU pixels on a side
MARGIN_FRAC = 0.125
MARGIN_MIN = 8
#: x265's coding tree unit for every hevc stream: libx265 caches the CTU size in process-wide tables
#: (x265 issue #110), and it shrinks a stream's CTU to fit a small picture (64 -> 32 -> 16), so
#: streams of different sizes coded side by side in one process corrupted each other's tables: the
#: same clip coded twice gave different bytes (and bits) each time. One size, 32, for all: tubes are
#: at least 32 pixels on a side (:func:`tube_size`), and frames under 32 pixels are refused.
CTU = 32
#: low-pass factor of the fill outside an object's mask
FILL_DOWN = 8
#: tubes with a side under this many pixels are coded without x265's lookahead: the libx265 of
#: PyAV 18.1's wheel corrupts its heap when it looks ahead on such small pictures (measured: random
#: even sizes with a side of 32-63 pixels abort within 150 short streams, 64-400 never did)
LOOKAHEAD_MIN_SIDE = 64
#: libx265's CRF range: a track's qp (plus the background's offset) is clipped to it
CRF_RANGE = (0, 51)
#: x265 rate controls of the background track (:attr:`HevcSettings.background_rate`)
BACKGROUND_RATES = ("auto", "qp", "crf")
#: "auto": the mean absolute difference (8-bit, over the background track's pixels) between
#: consecutive frames under which the camera counts as fixed and the background runs at a constant
#: qp. Measured (persons' tracks left out): the surveillance clip's first 300 frames 0.74 (a fixed
#: camera; at most 3.1 in a frame), DAVIS breakdance 4.3 (a slowly moving camera; either rate
#: control read alike per bit), parkour 20.8 (a moving camera: worse per bit at a constant qp);
#: docs/results.md
STATIC_MOTION = 4.0
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _av():
    try:
        import av
    except ImportError as e:  # the 'video' extra
        raise SSCError("the hevc inner codec needs PyAV: pip install av (the 'video' extra)") from e
    return av


@dataclass(frozen=True)
class HevcSettings:
    """x265's settings of a stream's tracks (encoder only; nothing of it is needed to decode)."""

    preset: str = "medium"
    tune: str = "zerolatency"
    #: frames x265 may look ahead (rc-lookahead, with its CU-tree); 0: none, every access unit comes
    #: out with its frame. With L > 0 a track's access unit comes out up to L frames late (or when its
    #: stream ends), so a stream's frames are written up to L frames after they are given
    lookahead: int = 0
    #: tracks coded at once (libx265 runs without the GIL; each track's stream is the same bytes
    #: whatever the number); None: the machine's cores
    workers: int | None = None
    #: x265's rate control of the background track: "qp" (constant: a static scene costs almost
    #: nothing between refreshes), "crf" (as the object tracks; the only one before 2026-12-03's
    #: fourth session), or "auto": each background stream at a constant qp when the background moved
    #: less than :data:`STATIC_MOTION` between frames since the last refresh (a fixed camera), else
    #: CRF (the first stream, with nothing measured yet, too). Object tracks always run CRF.
    background_rate: str = "auto"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"x265 preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if not 0 <= self.lookahead <= 250:
            raise ValueError(f"x265 lookahead must be 0..250 frames, got {self.lookahead}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.background_rate not in BACKGROUND_RATES:
            raise ValueError(f"background rate control must be one of {', '.join(BACKGROUND_RATES)}, "
                             f"got {self.background_rate!r}")


def even(n: int) -> int:
    """``n`` rounded up to an even number: the picture sides of an HEVC 4:2:0 tube."""
    return n + n % 2


def tube_size(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int]:
    """The tube of a track whose box is ``box`` at its intra entry: the box with margins, even-sized
    (4:2:0), at least :data:`CTU` and at most the frame on each side."""
    x0, y0, x1, y1 = box
    m = max(MARGIN_MIN, int(MARGIN_FRAC * max(x1 - x0, y1 - y0)))
    tw, th = min(max(x1 - x0 + 2 * m, CTU), width), min(max(y1 - y0 + 2 * m, CTU), height)
    return tw - tw % 2, th - th % 2  # (frames are at least CTU a side: HevcEncoder refuses smaller ones)


def tube_origin(box: tuple[int, int, int, int], tw: int, th: int, width: int, height: int) -> tuple[int, int]:
    """The tube's top-left corner in a frame: centred on the box, inside the frame."""
    x0, y0, x1, y1 = box
    tx = min(max((x0 + x1 - tw) // 2, 0), width - tw)
    ty = min(max((y0 + y1 - th) // 2, 0), height - th)
    return tx, ty


def low_pass(img: np.ndarray, k: int = FILL_DOWN) -> np.ndarray:
    """A smooth version of ``img`` (area-averaged by ``k``, then bilinear back): cheap to code."""
    from PIL import Image

    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((max(1, w // k), max(1, h // k)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BILINEAR))


@dataclass
class _Job:
    """One track entry made ready on the calling thread, coded by :meth:`HevcEncoder.code`."""

    enc: "_Enc | None"  # the track's encoder (dropped once the job is given to it)
    pic: np.ndarray | None  # the tube's picture (RGB; dropped once given to x265)
    pts: int
    head: bytes  # the body's fields before the access unit
    region: tuple[int, int, int, int]
    body: bytes | None = None  # head + access unit, once x265 has given it

    def body_from(self, unit: bytes) -> None:
        self.body = self.head + unit


@dataclass
class _Enc:
    ctx: object
    size: tuple[int, int]
    fmt: object  # the track's own RGB -> YUV 4:2:0 converter (its swscale context is reused)
    pts: int = 0
    lookahead: int = 0  # x265's lookahead of this stream
    waiting: deque[_Job] = field(default_factory=deque)  # given to x265, access unit not out yet

    def take(self, packets) -> None:
        """Hand x265's access units to the oldest waiting entries (no B-frames: display order)."""
        for p in packets:
            if not self.waiting:
                raise SSCError("x265 gave an access unit for no frame")
            self.waiting.popleft().body_from(bytes(p))


@dataclass
class HevcEncoder:
    """Per-track HEVC encoders of one video; ``encode_entry`` gives a track entry's segment body and
    its tube region (the encoder keeps no reconstruction: libx265 holds its references)."""

    width: int
    height: int
    fps: Fraction
    settings: HevcSettings = field(default_factory=HevcSettings)
    _enc: dict[int, _Enc] = field(default_factory=dict)
    _held: np.ndarray | None = None  # the background last seen at each pixel (source pixels)
    _prev: np.ndarray | None = None  # the previous frame given to the background track ("auto" only)
    _motion: list[float] = field(default_factory=lambda: [0.0, 0.0])  # since the refresh: sum |diff|, pixels
    #: the rate control of the background's current stream ("qp" or "crf"), None before its first
    background_mode: str | None = None
    _pool: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        if min(even(self.width), even(self.height)) < CTU:
            raise SSCError(f"hevc tracks need frames of at least {CTU}x{CTU} pixels (got {self.width}x{self.height}): "
                           "x265 codes every stream of a process with one CTU size; use the learned inner codec")

    def _background_mode(self) -> str:
        """The rate control of a new background stream: :attr:`HevcSettings.background_rate`, or for
        "auto" "qp" when the background moved less than :data:`STATIC_MOTION` per pixel and frame since
        the last refresh (nothing measured yet: "crf")."""
        rate = self.settings.background_rate
        if rate != "auto":
            return rate
        total, pixels = self._motion
        return "qp" if pixels and total / pixels < STATIC_MOTION else "crf"

    def _open(self, tid: int, size: tuple[int, int], crf: float, constant_qp: bool = False) -> _Enc:
        """A new HEVC stream for track ``tid``: pictures of ``size`` at CRF ``crf``, or with
        ``constant_qp`` at the qp ``crf`` rounds to."""
        av = _av()
        ctx = av.CodecContext.create("libx265", "w")
        ctx.width, ctx.height = size
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(self.fps).limit_denominator(1001) ** -1
        crf = min(max(crf, CRF_RANGE[0]), CRF_RANGE[1])
        look = self.settings.lookahead if min(size) >= LOOKAHEAD_MIN_SIDE else 0
        # pools=none: every stream runs x265 without its worker threads (the tracks are still coded at
        # once on ssc's): with them the same clip coded twice sometimes gave different bytes, and one
        # benchmark run of 27 lookahead encodes ended in a segfault inside libx265; without them x265
        # also drops its wavefront rows, whose entropy resets cost 4% of the surveillance clip's bits
        params = ["repeat-headers=1", "info=0", "log-level=error", "scenecut=0", "keyint=-1", "min-keyint=1", "bframes=0",
                  f"ctu={CTU}", f"rc-lookahead={look}", *(["cutree=1"] if look else []), "pools=none", "frame-threads=1",
                  f"qp={round(crf)}" if constant_qp else f"crf={crf:g}"]
        ctx.options = {"preset": self.settings.preset, "tune": self.settings.tune, "x265-params": ":".join(params)}
        ctx.open()
        e = self._enc[tid] = _Enc(ctx, size, av.video.reformatter.VideoReformatter(), lookahead=look)
        return e

    def fits(self, tid: int, box: tuple[int, int, int, int]) -> bool:
        """Whether ``box`` fits in the track's current tube (else its next entry must be intra)."""
        e = self._enc.get(tid)
        return e is not None and box[2] - box[0] <= e.size[0] and box[3] - box[1] <= e.size[1]

    def drop(self, tid: int) -> None:
        """Forget a track that left (its next entry is intra); its stream ends here, so its waiting
        entries get their access units."""
        e = self._enc.pop(tid, None)
        if e is not None:
            self._finish(e)

    @staticmethod
    def _finish(e: _Enc) -> None:
        """End a track's stream: x265 gives the access units it still holds."""
        e.take(e.ctx.encode(None))
        if e.waiting:
            raise SSCError(f"x265 ended a stream with {len(e.waiting)} frames not coded")

    def encode_entry(self, tid: int, frame: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int],
                     intra: bool, qp: int, background: bool) -> tuple[bytes, tuple[int, int, int, int]]:
        """(segment body, tube region x0, y0, x1, y1) of one track entry, with no lookahead (an entry's
        access unit comes out with it)."""
        if self.settings.lookahead:
            raise SSCError("encode_entry needs lookahead 0; with a lookahead, prepare, encode_entries and finish")
        job = self.prepare(tid, frame, mask, box, intra, qp, background)
        self.code(job)
        assert job.body is not None
        return job.body, job.region

    def encode_entries(self, jobs: list[_Job]) -> None:
        """Code one frame's prepared entries (:meth:`prepare`), their tracks at once on ``settings.workers``
        threads (the same bytes as coding them one by one). Each job's ``body`` is set when x265 gives
        its access unit: at once without a lookahead, else up to ``lookahead`` frames later."""
        workers = self.settings.workers or os.cpu_count() or 1
        if len(jobs) < 2 or workers < 2:
            for j in jobs:
                self.code(j)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ssc-x265")
        list(self._pool.map(self.code, jobs))

    def finish(self) -> None:
        """End every track's stream (the video ends): all waiting entries get their access units."""
        for tid in list(self._enc):
            self.drop(tid)

    def close(self) -> None:
        """Stop the worker threads (the encoders stay usable: a later frame starts them again)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def prepare(self, tid: int, frame: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int],
                intra: bool, qp: int, background: bool) -> _Job:
        """Everything of one track entry but the coding: its encoder (a new stream at an intra entry),
        its tube and its picture (the held background updated first). Calls for one frame must come in
        the order the entries are written."""
        H, W = even(self.height), even(self.width)
        if frame.shape[:2] != (H, W):  # an odd side: the tubes see the frame edge-padded
            pad = ((0, H - frame.shape[0]), (0, W - frame.shape[1]))
            frame, mask = np.pad(frame, (*pad, (0, 0)), mode="edge"), np.pad(mask, pad)
        if background:
            if self._held is None:
                self._held = frame.copy()
            else:
                np.copyto(self._held, frame, where=mask[..., None])
            if self.settings.background_rate == "auto":  # the motion "auto" decides by (nothing else reads it)
                if self._prev is not None and mask.any():
                    diff = np.abs(frame[mask].astype(np.int16) - self._prev[mask])  # the background's pixels only
                    self._motion[0] += float(diff.sum()) / 3
                    self._motion[1] += diff.shape[0]
                self._prev = frame.copy()
        e = self._enc.get(tid)
        if e is not None and intra:  # the track's stream ends: what x265 holds of it comes out first
            self._finish(e)
        if intra or e is None:
            size = (W, H) if background else tube_size(box, W, H)
            if background:  # the new stream's rate control, from the motion since the last refresh
                self.background_mode, self._motion = self._background_mode(), [0.0, 0.0]
            e = self._open(tid, size, qp, background and self.background_mode == "qp")
        tw, th = e.size
        tx, ty = (0, 0) if background else tube_origin(box, tw, th, W, H)
        if background:  # the held background already carries this frame's pixels at the mask
            pic = self._held[ty : ty + th, tx : tx + tw].copy()
        else:
            crop, m = frame[ty : ty + th, tx : tx + tw], mask[ty : ty + th, tx : tx + tw]
            pic = np.where(m[..., None], crop, low_pass(crop))
        e.pts += 1
        head = (varint(tw, "tube width") + varint(th, "tube height") if intra else b"")
        head += varint(zigzag(tx), "tube x") + varint(zigzag(ty), "tube y")
        return _Job(e, np.ascontiguousarray(pic), e.pts - 1, head, (tx, ty, tx + tw, ty + th))

    def code(self, job: _Job) -> None:
        """Give a prepared entry's picture to the track's libx265 (any thread; one job per track at a
        time); the access units x265 gives back go to the track's oldest waiting entries."""
        av = _av()
        # a waiting job does not hold its encoder (no reference cycle): an encoder is freed where the
        # calling thread drops it, never by the garbage collector on a worker thread
        enc, job.enc = job.enc, None
        vf = enc.fmt.reformat(av.VideoFrame.from_ndarray(job.pic, format="rgb24"), format="yuv420p")
        vf.pts = job.pts
        job.pic = None
        packets = enc.ctx.encode(vf)
        if not enc.lookahead and len(packets) != 1:
            raise SSCError(f"x265 gave {len(packets)} access units for one frame (zero-latency coding expected)")
        enc.waiting.append(job)
        enc.take(packets)


class HevcDecoder:
    """Per-track HEVC decoders: ``decode_entry`` turns a segment body into the tube's picture and its
    region in the frame (CorruptSegmentError for that track when it does not decode)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = even(width), even(height)  # the tubes' room, see the module docstring
        self._ctx: dict[int, tuple[object, tuple[int, int]]] = {}

    def drop(self, tid: int) -> None:
        self._ctx.pop(tid, None)

    def decode_entry(self, tid: int, body: bytes, intra: bool) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        av = _av()
        c = Cursor(body)
        try:
            if intra:
                size = (c.varint("tube width"), c.varint("tube height"))
                if not (0 < size[0] <= self.width and 0 < size[1] <= self.height):
                    raise BitstreamError(f"tube {size[0]}x{size[1]} does not fit the {self.width}x{self.height} frame")
                ctx = av.CodecContext.create("hevc", "r")
                ctx.thread_count = 1
                ctx.options = {"max_pixels": str((size[0] + 64) * (size[1] + 64))}
                self._ctx[tid] = (ctx, size)
            elif tid not in self._ctx:
                raise CorruptSegmentError(tid, "inter entry without a decoded intra entry before it")
            ctx, (tw, th) = self._ctx[tid]
            tx, ty = unzigzag(c.varint("tube x")), unzigzag(c.varint("tube y"))
            if not (0 <= tx <= self.width - tw and 0 <= ty <= self.height - th):
                raise BitstreamError(f"tube at ({tx}, {ty}) leaves the frame")
        except BitstreamError as err:
            self._ctx.pop(tid, None)
            raise CorruptSegmentError(tid, f"hevc entry is malformed ({err})") from err
        try:
            frames = ctx.decode(av.Packet(body[c.pos :]))
        except (av.error.FFmpegError, ValueError) as err:
            self._ctx.pop(tid, None)
            raise CorruptSegmentError(tid, f"hevc access unit does not decode ({err})") from err
        if len(frames) != 1 or (frames[0].width, frames[0].height) != (tw, th):
            self._ctx.pop(tid, None)
            got = ", ".join(f"{f.width}x{f.height}" for f in frames) or "none"
            raise CorruptSegmentError(tid, f"hevc access unit gave {got}, not one {tw}x{th} picture")
        return frames[0].to_ndarray(format="rgb24"), (tx, ty, tx + tw, ty + th)
