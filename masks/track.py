"""Person tracks for SSVC from a box detector (the pretrained SSDLite person detector), SORT-style
(Bewley et al., ICIP 2016) with an appearance term as in DeepSORT (Wojke et al., ICIP 2017), on CPU:

* every ``every`` frames the detector runs; between detections each track's box moves with its
  velocity (a constant-velocity prediction, updated at each match);
* association in two rounds, as ByteTrack does (Zhang et al., ECCV 2022): confident detections
  (score >= ``score``) first, then the weak ones (score >= ``low``) for the tracks still unmatched,
  each greedily by a cost of (1 - IoU) plus ``w_app`` times an appearance distance (Bhattacharyya
  distance of 8x8x8 RGB histograms of the box centre, the track's histogram a running average);
  pairs with IoU below ``min_iou`` and no close appearance are never joined;
* a confident detection matched to no track opens a tentative track, which becomes a group only
  once a second detection confirms it (so a single false detection costs no bits), or at once when its
  score reaches ``confirm`` (so a clearly seen person is coded from its first detection, not ``every``
  frames later: a persons-only decode would miss it until then); with ``recheck`` (and ``every`` > 1) a
  tentative track is checked on the next frame by the detector on a crop around it (its box plus
  ``recheck_margin`` box sides each way, which also enlarges a small person for the detector's fixed
  input) and confirmed there if the crop holds a detection of score >= ``score`` overlapping it (IoU
  >= 0.3): one detector call per new, weakly seen person instead of ``every`` frames' wait; a track missed at a detection frame coasts on its
  prediction (its velocity halved at each miss) and survives short occlusions and misses; after
  ``timeout`` frames without a match it ends, a track matched only once (perhaps a false detection)
  after ``every`` frames; ids are never reused;
* each live track's box, padded by ``pad`` pixels, is one group of class person; where boxes overlap
  the track seen most recently wins, then the older track. Everything else is the background (0).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .groupmap import GroupMap

PERSON = (1, "person")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes a (N, 4) and b (M, 4)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda t: (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def histogram(frame: np.ndarray, box: np.ndarray, bins: int = 8) -> np.ndarray:
    """Normalised RGB histogram (bins^3) of the box's central part (less background at the edges)."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = box
    cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.35, (y1 - y0) * 0.4
    xa, xb = int(np.clip(cx - bw, 0, w - 1)), int(np.clip(cx + bw, 1, w))
    ya, yb = int(np.clip(cy - bh, 0, h - 1)), int(np.clip(cy + bh, 1, h))
    patch = frame[ya:max(yb, ya + 1), xa:max(xb, xa + 1)].reshape(-1, 3) // (256 // bins)
    idx = (patch[:, 0].astype(np.int64) * bins + patch[:, 1]) * bins + patch[:, 2]
    hist = np.bincount(idx, minlength=bins**3).astype(np.float64)
    return hist / max(hist.sum(), 1.0)


def bhattacharyya(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sqrt(max(0.0, 1.0 - np.sqrt(p * q).sum())))


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # xyxy, float: the current (predicted) box
    anchor: np.ndarray  # the box of the last match
    velocity: np.ndarray  # per frame, xyxy
    hist: np.ndarray
    last_seen: int  # frame of the last match
    first: int
    hits: int = 1


@dataclass
class TrackerStats:
    """What the tracker did over a clip (for reports)."""

    detections: int = 0  # confident ones
    rechecks: int = 0  # crop detections of tentative tracks
    confirmed_by_recheck: int = 0
    tracks_opened: int = 0  # tentative tracks included
    tracks_ended: int = 0
    lengths: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (first, last frame of a match)


class PersonTracks:
    """``source(index, frame) -> GroupMap`` (see the module docstring). ``detector``: any object with
    ``predict(image, masks=False) -> Instances`` (boxes in pixels, scores)."""

    def __init__(self, detector, every: int = 5, score: float = 0.5, pad: int = 8, timeout: int = 30,
                 min_iou: float = 0.1, w_app: float = 0.5, max_app: float = 0.6, low: float = 0.25,
                 confirm: float = 0.8, recheck: bool = False, recheck_margin: float = 0.5) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.confirm = max(confirm, score)
        self.recheck, self.recheck_margin = recheck, recheck_margin
        self.detector, self.every, self.score, self.pad, self.timeout = detector, every, score, pad, timeout
        self.low = min(low, score)
        self.min_iou, self.w_app, self.max_app = min_iou, w_app, max_app
        self.tracks: list[Track] = []
        self._next = 1
        self._last_index = -1
        self.stats = TrackerStats()

    # ------------------------------------------------------------------ association
    def _match(self, frame: np.ndarray, index: int, boxes: np.ndarray, hists: list[np.ndarray], tracks: list[int],
               dets: list[int], matched_t: set[int], matched_d: set[int]) -> None:
        """Greedy matching of detections ``dets`` to tracks ``tracks`` (indices), cheapest pairs first."""
        if not tracks or not dets:
            return
        pred = np.array([self.tracks[t].box for t in tracks])
        iou = box_iou(pred, boxes[dets])
        app = np.array([[bhattacharyya(self.tracks[t].hist, hists[d]) for d in dets] for t in tracks])
        cost = (1 - iou) + self.w_app * app
        allowed = ((iou >= self.min_iou) | ((app <= self.max_app * 0.5) & (iou > 0))) & (cost < 1.0 + self.w_app * self.max_app)
        for k in np.argsort(cost, axis=None, kind="stable"):
            a, b = divmod(int(k), len(dets))
            ti, di = tracks[a], dets[b]
            if ti in matched_t or di in matched_d or not allowed[a, b]:
                continue
            t = self.tracks[ti]
            step = (boxes[di] - t.anchor) / max(index - t.last_seen, 1)
            t.velocity = 0.5 * t.velocity + 0.5 * step if t.hits > 1 else step
            t.box = t.anchor = boxes[di].astype(np.float64)
            t.hist = 0.7 * t.hist + 0.3 * hists[di]
            t.last_seen, t.hits = index, t.hits + 1
            self.stats.lengths[t.track_id] = (t.first, index)
            matched_t.add(ti)
            matched_d.add(di)

    def _associate(self, frame: np.ndarray, index: int, boxes: np.ndarray, scores: np.ndarray) -> None:
        hists = [histogram(frame, b) for b in boxes]
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        strong = [d for d in range(len(boxes)) if scores[d] >= self.score]
        weak = [d for d in range(len(boxes)) if scores[d] < self.score]
        self._match(frame, index, boxes, hists, list(range(len(self.tracks))), strong, matched_t, matched_d)
        rest = [t for t in range(len(self.tracks)) if t not in matched_t]
        self._match(frame, index, boxes, hists, rest, weak, matched_t, matched_d)
        for ti, t in enumerate(self.tracks):
            if ti not in matched_t:
                t.velocity = t.velocity * 0.5  # coasting: trust the motion less at every miss
        for di in strong:
            if di not in matched_d:
                b = boxes[di].astype(np.float64)
                t = Track(self._next, b, b.copy(), np.zeros(4), hists[di], index, index,
                          hits=2 if scores[di] >= self.confirm else 1)
                self._next += 1
                self.tracks.append(t)
                self.stats.tracks_opened += 1
                self.stats.lengths[t.track_id] = (index, index)

    def _recheck(self, frame: np.ndarray, index: int) -> None:
        """Confirm the tentative tracks opened at the previous frame that a crop detection sees again."""
        h, w = frame.shape[:2]
        for t in self.tracks:
            if t.hits != 1 or t.last_seen != index - 1:
                continue
            x0, y0, x1, y1 = t.box
            side, cx, cy = max(x1 - x0, y1 - y0) * (1 + 2 * self.recheck_margin), (x0 + x1) / 2, (y0 + y1) / 2
            a, b = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
            c, d = int(min(w, np.ceil(cx + side / 2))), int(min(h, np.ceil(cy + side / 2)))
            if c - a < 8 or d - b < 8:
                continue
            inst = self.detector.predict(frame[b:d, a:c], masks=False)
            self.stats.rechecks += 1
            keep = (inst.scores >= self.score).numpy()
            boxes = inst.boxes.numpy()[keep].astype(np.float64) + np.array([a, b, a, b], np.float64)
            if len(boxes) and box_iou(t.box[None], boxes).max() >= 0.3:
                t.hits = 2
                self.stats.confirmed_by_recheck += 1

    def _advance(self, frames: int) -> None:
        for t in self.tracks:
            t.box = t.box + t.velocity * frames

    def _expire(self, index: int) -> None:
        alive = [t for t in self.tracks if index - t.last_seen <= (self.timeout if t.hits > 1 else self.every)]
        self.stats.tracks_ended += len(self.tracks) - len(alive)
        self.tracks = alive

    # ------------------------------------------------------------------ per frame
    def __call__(self, index: int, frame: np.ndarray) -> GroupMap:
        h, w = frame.shape[:2]
        self._advance(index - self._last_index if self._last_index >= 0 else 0)
        self._last_index = index
        if index % self.every == 0:
            inst = self.detector.predict(frame, masks=False)
            keep = (inst.scores >= self.low).numpy()
            boxes, scores = inst.boxes.numpy()[keep].astype(np.float64), inst.scores.numpy()[keep]
            self.stats.detections += int((scores >= self.score).sum())
            self._associate(frame, index, boxes, scores)
        elif self.recheck:
            self._recheck(frame, index)
        self._expire(index)
        return self.group_map(h, w)

    def group_map(self, h: int, w: int) -> GroupMap:
        labels = np.zeros((h, w), np.int32)
        order = sorted((t for t in self.tracks if t.hits > 1), key=lambda t: (t.last_seen, -t.track_id), reverse=True)
        for t in order:  # most recently seen first; later tracks do not overwrite earlier ones
            x0, y0, x1, y1 = t.box
            xa, ya = max(0, int(np.floor(x0)) - self.pad), max(0, int(np.floor(y0)) - self.pad)
            xb, yb = min(w, int(np.ceil(x1)) + self.pad), min(h, int(np.ceil(y1)) + self.pad)
            if xb <= xa or yb <= ya:
                continue
            region = labels[ya:yb, xa:xb]
            region[region == 0] = t.track_id
        present = {int(v) for v in np.unique(labels)} - {0}
        return GroupMap.from_labels(labels, {tid: PERSON for tid in present})
