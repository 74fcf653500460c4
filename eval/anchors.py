"""Anchor codecs of the benchmarks, each measured in the same run as ssc: JPEG / WebP / AVIF through
Pillow, HEVC intra (x265) through the ffmpeg command line, and the trained scale-hyperprior peer
(:mod:`ssc.models.hyperprior`). Every anchor returns the exact number of coded bytes and the decoded
RGB image, so rate and quality are measured the same way for all of them.

ffmpeg comes from Debian: ``sh eval/setup_anchors.sh`` installs it.
"""
from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, features

from ssc.errors import SSCError
from ssc.models.zoo import LoadedCodec, load_codec

PILLOW_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
PEER_DIR = Path(__file__).resolve().parent / "weights"
PEER_NAMES = [f"bmshj2018-peer-q{i}" for i in range(1, 5)]


@dataclass
class Coded:
    """One anchor encode: exact coded size and the decoded image."""

    nbytes: int
    decoded: np.ndarray  # (H, W, 3) uint8


def pillow_available(name: str) -> bool:
    return name != "avif" or bool(features.check("avif"))


def pillow_code(name: str, x: np.ndarray, quality: int) -> Coded:
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, PILLOW_FORMATS[name], quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return Coded(len(buf.getvalue()), np.asarray(im.convert("RGB")))


def require_ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise SSCError("ffmpeg not found: run `sh eval/setup_anchors.sh` (Debian package ffmpeg) for the x265 anchor")
    return exe


def x265_intra_code(x: np.ndarray, crf: int, preset: str = "medium", chroma: str = "444") -> Coded:
    """HEVC intra (every frame a key frame): 4:4:4 (RGB PSNR not limited by chroma subsampling) or
    4:2:0 (what users run; an odd side is edge-padded for the encoder and cut after decoding); size is
    the raw Annex-B bitstream (no container), without x265's SEI of its version and options
    (``info=0``; 2.3 kB a picture, which every x265 figure before 2026-12-02's sixth session carried)."""
    exe = require_ffmpeg()
    h0, w0 = x.shape[:2]
    if chroma == "420" and (h0 % 2 or w0 % 2):
        x = np.pad(x, ((0, h0 % 2), (0, w0 % 2), (0, 0)), mode="edge")
    h, w = x.shape[:2]
    enc = subprocess.run(
        [exe, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", "-",
         "-c:v", "libx265", "-preset", preset, "-crf", str(crf), "-pix_fmt", f"yuv{chroma}p",
         "-x265-params", "keyint=1:info=0:log-level=error", "-f", "hevc", "-"],
        input=np.ascontiguousarray(x).tobytes(), capture_output=True, check=False)
    if enc.returncode:
        raise SSCError(f"ffmpeg x265 encode failed: {enc.stderr.decode(errors='replace').strip()}")
    dec = subprocess.run([exe, "-v", "error", "-f", "hevc", "-i", "-", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         input=enc.stdout, capture_output=True, check=False)
    if dec.returncode or len(dec.stdout) != h * w * 3:
        raise SSCError(f"ffmpeg HEVC decode failed: {dec.stderr.decode(errors='replace').strip()}")
    return Coded(len(enc.stdout), np.frombuffer(dec.stdout, np.uint8).reshape(h, w, 3)[:h0, :w0])


def at_scale(code, x: np.ndarray, scale: float) -> Coded:
    """An anchor coded at ``scale`` of the image's size (area downsampling) and brought back to it
    (bicubic): what any codec can do for a task model that sees a small view."""
    if scale == 1:
        return code(x)
    h, w = x.shape[:2]
    small = np.asarray(Image.fromarray(x).resize((max(2, round(w * scale)), max(2, round(h * scale))), Image.BOX))
    c = code(small)
    return Coded(c.nbytes, np.asarray(Image.fromarray(c.decoded).resize((w, h), Image.BICUBIC)))


def load_peers(folder: str | Path = PEER_DIR) -> list[LoadedCodec]:
    """The four scale-hyperprior peers (one per lambda), low rate first."""
    folder = Path(folder)
    return [load_codec(folder / f"{n}.safetensors") for n in PEER_NAMES]


def peer_code(peer: LoadedCodec, x: np.ndarray) -> Coded:
    t = torch.from_numpy(np.array(x)).permute(2, 0, 1)[None].float().div(255)
    with torch.no_grad():
        data = peer.model.compress(t)
        y = peer.model.decompress(data)
    return Coded(len(data), (y[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
