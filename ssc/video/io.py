"""Video I/O: frames from a video file (PyAV, imported lazily) or a folder of images, and writers to a
video file or a folder of PNGs. Frames are (H, W, 3) uint8 RGB numpy arrays, one at a time (streaming)."""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ..errors import SSCError
from ..outputs import save_image, temp_beside

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _av():
    try:
        import av  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SSCError("video files need PyAV: pip install 'ssc[video]' (or pip install av)") from e
    return av


@dataclass
class FrameSource:
    """A video as a frame iterator with its geometry and rate (``count`` may be None when unknown)."""

    path: Path
    width: int
    height: int
    fps: Fraction
    count: int | None

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.path.is_dir():
            for f in image_files(self.path):
                with Image.open(f) as im:
                    a = np.asarray(im.convert("RGB"))
                if a.shape[:2] != (self.height, self.width):
                    raise SSCError(f"{f}: frame is {a.shape[1]}x{a.shape[0]}, the sequence {self.width}x{self.height}")
                yield a
            return
        av = _av()
        try:
            with av.open(str(self.path)) as c:
                for fr in c.decode(c.streams.video[0]):
                    yield fr.to_ndarray(format="rgb24")
        except av.FFmpegError as e:
            raise SSCError(f"{self.path}: video decoding failed ({e})") from e


    def range(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``start`` to ``stop`` (exclusive). In a container, decoding starts at the key frame
        at or before ``start`` (one seek) instead of at the first frame, so a chunk of a long file
        costs its own length plus at most one GOP. Frame numbers come from timestamps at the
        stream's average rate; when they do not line up (variable rate, no index, a seek that
        overshoots), it falls back to decoding from the first frame."""
        if start < 0 or (stop is not None and stop < start):
            raise ValueError(f"bad frame range [{start}, {stop})")
        if start == 0 or self.path.is_dir():
            yield from itertools.islice(iter(self), start, stop)
            return
        seeked = self._seek_range(start, stop)
        if seeked is None:
            yield from itertools.islice(iter(self), start, stop)
        else:
            yield from seeked

    def _seek_range(self, start: int, stop: int | None, check: int = 8) -> Iterator[np.ndarray] | None:
        """The frames of [start, stop) via a seek, or None when timestamps cannot be trusted: the first
        ``check`` frames after the seek must carry display timestamps one frame apart, counted from
        the first frame's (AVI with B-frames, for one, carries decode-order stamps and falls back)."""
        av = _av()
        try:
            c = av.open(str(self.path))
            s = c.streams.video[0]
            first = next(c.decode(s), None)  # its timestamp is frame 0's
        except av.FFmpegError as e:
            raise SSCError(f"{self.path}: not a readable video ({e})") from e
        rate, tb = s.average_rate, s.time_base
        if first is None or first.pts is None or not rate or not tb:
            c.close()
            return None
        t0 = first.pts

        def index(fr) -> int | None:
            return None if fr.pts is None else round((fr.pts - t0) * tb * rate)

        try:
            c.seek(t0 + int(Fraction(start) / rate / tb), stream=s, backward=True, any_frame=False)
            it = c.decode(s)
            head = list(itertools.islice(it, check))
        except av.FFmpegError:
            c.close()
            return None
        idx = [index(f) for f in head]
        if not head or idx[0] is None or idx[0] > start or idx != list(range(idx[0], idx[0] + len(head))):
            c.close()
            return None

        def frames() -> Iterator[np.ndarray]:
            expect = idx[0]
            try:
                for fr in itertools.chain(head, it):
                    i = index(fr)
                    if i != expect:
                        raise SSCError(f"{self.path}: frame timestamps are not regular (frame {expect} has pts {fr.pts}); "
                                       f"encode it whole instead of in chunks")
                    expect += 1
                    if stop is not None and i >= stop:
                        break
                    if i >= start:
                        yield fr.to_ndarray(format="rgb24")
            except av.FFmpegError as e:
                raise SSCError(f"{self.path}: video decoding failed ({e})") from e
            finally:
                c.close()

        return frames()


def estimate_frames(path: str | Path) -> int | None:
    """Frames in a video file from its duration and average rate (rounded down), or None."""
    av = _av()
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            if s.duration and s.time_base and s.average_rate:
                return int(s.duration * s.time_base * s.average_rate)
            if c.duration and s.average_rate:
                return int(Fraction(c.duration, 1_000_000) * s.average_rate)
    except av.FFmpegError:
        return None
    return None


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def open_frames(path: str | Path, fps: float | None = None) -> FrameSource:
    """Open a video file or a folder of frames (sorted by name; ``fps`` defaults to 25 there)."""
    p = Path(path)
    if p.is_dir():
        files = image_files(p)
        if not files:
            raise SSCError(f"{p}: no image frames in the folder")
        with Image.open(files[0]) as im:
            w, h = im.size
        return FrameSource(p, w, h, Fraction(fps or 25).limit_denominator(1001), len(files))
    if not p.is_file():
        raise FileNotFoundError(f"video not found: {p}")
    av = _av()
    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise SSCError(f"{p}: no video stream")
            s = c.streams.video[0]
            rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(s.average_rate or 25)
            return FrameSource(p, s.codec_context.width, s.codec_context.height, rate, s.frames or None)
    except av.FFmpegError as e:
        raise SSCError(f"{p}: not a readable video ({e})") from e


class FrameWriter:
    """Write frames to a folder of PNGs (path without a video suffix) or a video file: ``.mkv`` is
    lossless FFV1, ``.mp4`` / ``.avi`` H.264 at CRF 10 (PyAV). A video file is written under a
    temporary name and renamed when closed without error; every PNG is renamed into place whole."""

    def __init__(self, path: str | Path, width: int, height: int, fps: Fraction) -> None:
        self.path = Path(path)
        self.n = 0
        self._c = self._s = None
        if self.path.suffix.lower() in (".mkv", ".mp4", ".avi", ".mov"):
            av = _av()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = temp_beside(self.path)
            self._c = av.open(str(self._tmp), "w")
            lossless = self.path.suffix.lower() == ".mkv"
            self._s = self._c.add_stream("ffv1" if lossless else "libx264", rate=fps)
            self._s.width, self._s.height = width, height
            self._s.pix_fmt = "bgr0" if lossless else "yuv420p"
            if not lossless:
                self._s.options = {"crf": "10"}
        else:
            self.path.mkdir(parents=True, exist_ok=True)

    def write(self, frame: np.ndarray) -> None:
        if self._c is None:
            save_image(self.path / f"{self.n:05d}.png", frame)
        else:
            av = _av()
            for pkt in self._s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                self._c.mux(pkt)
        self.n += 1

    def close(self, keep: bool = True) -> None:
        """Finish the file and move it into place (``keep``), or drop it."""
        if self._c is not None:
            try:
                if keep:
                    for pkt in self._s.encode():
                        self._c.mux(pkt)
            finally:
                self._c.close()
                self._c = None
            if keep:
                os.replace(self._tmp, self.path)
            else:
                self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(keep=exc_type is None)
