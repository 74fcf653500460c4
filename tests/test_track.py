"""Person tracks from a box detector: ids survive misses, single false detections never become
groups, tracks end after their timeout, and crossing people keep their ids by appearance."""
import numpy as np
import pytest
import torch

from ssc.errors import MaskError
from ssc.masks.track import PersonTracks, bhattacharyya, box_iou, histogram
from ssc.video.masks import load_video_masks
from ssc.tasks.structures import Instances

H, W = 120, 200


class ScriptedDetector:
    """Returns the boxes (x0, y0, x1, y1, score) scripted for each call, in order."""

    def __init__(self, script: list[list[tuple]]) -> None:
        self.script = list(script)

    def predict(self, image, masks=False):
        boxes = self.script.pop(0) if self.script else []
        b = torch.tensor([x[:4] for x in boxes], dtype=torch.float32).reshape(-1, 4)
        s = torch.tensor([x[4] for x in boxes], dtype=torch.float32)
        return Instances(image.shape[:2], b, s, torch.ones(len(boxes), dtype=torch.long), None)


def frame_with(people: list[tuple[int, tuple[int, int, int]]]) -> np.ndarray:
    """A grey frame with 20x40 people at x positions in given colours."""
    f = np.full((H, W, 3), 90, np.uint8)
    for x, colour in people:
        f[40:80, x : x + 20] = colour
    return f


def test_iou_and_appearance_helpers():
    a = np.array([[0, 0, 10, 10]], float)
    assert box_iou(a, np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)).round(3).tolist() == [[1, 0.333, 0]]
    red, blue = frame_with([(50, (200, 30, 30))]), frame_with([(50, (30, 30, 200))])
    box = np.array([50, 40, 70, 80], float)
    assert bhattacharyya(histogram(red, box), histogram(red, box)) < 1e-6
    assert bhattacharyya(histogram(red, box), histogram(blue, box)) > 0.9


def test_a_person_keeps_its_id_through_misses_and_a_false_detection_never_shows():
    xs = [20 + 6 * i for i in range(12)]
    script = []
    for i, x in enumerate(xs):
        dets = [] if i in (3, 4) else [(x, 40, x + 20, 80, 0.75)]  # missed twice (an occlusion)
        if i == 5:
            dets.append((150, 10, 170, 30, 0.7))  # one false detection
        script.append(dets)
    tr = PersonTracks(ScriptedDetector(script), every=1, score=0.5, pad=0, timeout=4)
    ids = []
    for i, x in enumerate(xs):
        gm = tr(i, frame_with([(x, (200, 30, 30))]))
        ids.append([g.group_id for g in gm.groups if g.group_id])
        if i >= 1:
            assert gm.groups[-1].class_id == 1 and gm.groups[-1].label == "person"
    assert ids[0] == [] and all(v == [1] for v in ids[1:])  # confirmed at its second detection, one id throughout
    assert tr.stats.tracks_opened == 2  # the person and the unconfirmed false detection


def test_a_confident_first_detection_is_a_group_at_once():
    script = [[(20, 40, 40, 80, 0.9), (120, 40, 140, 80, 0.6)]] * 3
    tr = PersonTracks(ScriptedDetector(script), every=1, pad=0, confirm=0.8)
    first = [g.group_id for g in tr(0, frame_with([(20, (200, 30, 30)), (120, (30, 30, 200))])).groups if g.group_id]
    assert first == [1]  # the 0.9 detection at once; the 0.6 one waits for its second detection
    second = [g.group_id for g in tr(1, frame_with([(20, (200, 30, 30)), (120, (30, 30, 200))])).groups if g.group_id]
    assert sorted(second) == [1, 2]


@pytest.mark.parametrize("seen_again, recheck", [(True, True), (False, True), (True, False)])
def test_a_weak_first_detection_is_rechecked_on_a_crop_the_next_frame(seen_again, recheck):
    # frame 0: a 0.6 detection at (120, 40, 140, 80) opens a tentative track; frame 1: the crop around it
    # (side 2 x 40 px, so (90, 20)-(170, 100)) holds the person at (30, 20, 50, 60) in crop coordinates
    script = [[(120, 40, 140, 80, 0.6)], [(30, 20, 50, 60, 0.7)] if seen_again else [(0, 0, 10, 10, 0.9)]]
    det = ScriptedDetector(script)
    tr = PersonTracks(det, every=5, pad=0, confirm=0.8, recheck=recheck)
    frame = frame_with([(120, (30, 30, 200))])
    groups = [[g.group_id for g in tr(i, frame).groups if g.group_id] for i in range(3)]
    confirmed = seen_again and recheck
    assert groups == ([[], [1], [1]] if confirmed else [[], [], []])
    assert tr.stats.rechecks == (1 if recheck else 0) and tr.stats.confirmed_by_recheck == int(confirmed)
    assert len(det.script) == (0 if recheck else 1)  # one crop detection, on frame 1 only


def test_tracks_end_after_the_timeout():
    script = [[(20, 40, 40, 80, 0.9)], [(20, 40, 40, 80, 0.9)]] + [[]] * 10
    tr = PersonTracks(ScriptedDetector(script), every=1, pad=0, timeout=3)
    live = [len(tr(i, frame_with([(20, (200, 30, 30))])).groups) - 1 for i in range(12)]
    assert live[:6] == [1, 1, 1, 1, 1, 0] and tr.stats.tracks_ended == 1  # 0.9: a group from its first frame


def test_crossing_people_keep_their_ids_by_appearance():
    red, blue = (200, 30, 30), (30, 30, 200)
    script, frames = [], []
    for i in range(9):
        a, b = 30 + 12 * i, 130 - 12 * i  # they cross around i = 4
        script.append([(a, 40, a + 20, 80, 0.9), (b, 40, b + 20, 80, 0.9)])
        frames.append(frame_with([(a, red), (b, blue)]))
    tr = PersonTracks(ScriptedDetector(script), every=1, pad=0, timeout=5)
    for i, f in enumerate(frames):
        gm = tr(i, f)
    red_track = next(t for t in tr.tracks if t.hist.argmax() == histogram(frames[0], np.array([30, 40, 50, 80.0])).argmax())
    assert abs(red_track.box[0] - (30 + 12 * 8)) < 1  # the red person's track ends where the red person is
    assert tr.stats.tracks_opened == 2


def test_video_spec_builds_person_tracks():
    from ssc.tasks import ssdlite

    with pytest.raises(MaskError, match="unknown detector option"):
        load_video_masks("detect:ssdlite-person,often=3")
    if ssdlite.available():
        src = load_video_masks("detect:ssdlite-person,every=3,score=0.4,pad=4,timeout=12,confirm=0.7")
        assert isinstance(src, PersonTracks) and (src.every, src.score, src.pad, src.timeout, src.confirm) == (3, 0.4, 4, 12, 0.7)
        assert not src.recheck and load_video_masks("detect:ssdlite-person,recheck=1").recheck
