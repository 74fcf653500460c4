"""Video mask sources, PyAV I/O and the encode-video / decode-video / info commands."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from ssc.cli import main
from ssc.errors import MaskError
from ssc.video.masks import DetectorMasks, FolderMasks, ForegroundDetector, PropagatedMasks, load_video_masks
from ssc.tasks.structures import Instances
from ssc.video.io import FrameWriter, open_frames

from .conftest import DATA, require
from .test_video import moving_scene


@pytest.fixture
def clip_dir(tmp_path):
    frames, maps = moving_scene(5)
    (tmp_path / "frames").mkdir()
    (tmp_path / "masks").mkdir()
    for i, (f, gm) in enumerate(zip(frames, maps)):
        Image.fromarray(f).save(tmp_path / "frames" / f"{i:05d}.png")
        Image.fromarray(gm.labels.astype(np.uint8)).save(tmp_path / "masks" / f"{i:05d}.png")
    return tmp_path, frames, maps


def test_ffv1_roundtrip_is_lossless(tmp_path):
    pytest.importorskip("av", reason="PyAV (the 'video' extra) is not installed")
    frames, _ = moving_scene(3)
    with FrameWriter(tmp_path / "x.mkv", frames[0].shape[1], frames[0].shape[0], 25) as w:
        for f in frames:
            w.write(f)
    src = open_frames(tmp_path / "x.mkv")
    assert (src.width, src.height) == (frames[0].shape[1], frames[0].shape[0])
    back = list(src)
    assert len(back) == 3 and all((a == b).all() for a, b in zip(back, frames))


def test_folder_masks_read_davis_annotations():
    ann = require(DATA / "davis2016/Annotations/480p/car-shadow")
    src = FolderMasks(ann, {1: (3, "car")})
    frame = np.zeros((480, 854, 3), np.uint8)
    gm = src(0, frame)
    assert gm.ids == (0, 1) and gm.group(1).label == "car"  # 0/255 binary masks become ids 0 / 1
    with pytest.raises(MaskError, match="does not match|is 854x480"):
        src(0, np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(MaskError, match="has 40 masks"):
        src(40, frame)


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_propagated_masks_follow_the_object():
    """Block-motion propagation beats keeping the first mask (the disc moves 5 px / frame)."""
    frames, maps = moving_scene(5)
    prop = PropagatedMasks(maps[0])
    first = maps[0].labels == 1
    ious = [(_iou(prop(i, f).labels == 1, maps[i].labels == 1), _iou(first, maps[i].labels == 1)) for i, f in enumerate(frames)]
    assert all(p >= s for p, s in ious) and ious[-1][0] > ious[-1][1] + 0.15


def test_propagated_masks_on_davis():
    from itertools import islice

    seq = require(DATA / "davis2016/JPEGImages/480p/car-shadow")
    gt = FolderMasks(DATA / "davis2016/Annotations/480p/car-shadow")
    frames = list(islice(open_frames(seq), 10))
    prop = PropagatedMasks(gt(0, frames[0]))
    got = [prop(i, f) for i, f in enumerate(frames)]
    assert _iou(got[9].labels == 1, gt(9, frames[9]).labels == 1) > 0.8  # 0.83 measured; the first mask keeps 0.5


class _FakeDetector:
    """Returns the ground-truth disc of the scene as a detection (a stand-in for a task head)."""

    def __init__(self, maps):
        self.maps, self.calls = maps, []

    def predict(self, image, masks=True):
        i = int(image[0, 0, 0])  # frame number stamped into the pixel by the test
        self.calls.append(i)
        m = torch.from_numpy(self.maps[i].labels == 1).float()[None]
        return Instances(image.shape[:2], torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.9]), torch.tensor([7]), m)


def test_detector_masks_keep_track_ids_between_detections():
    frames, maps = moving_scene(7)
    det = _FakeDetector(maps)
    src = DetectorMasks(det, every=3)
    ids = []
    for i, f in enumerate(frames):
        f = f.copy()
        f[0, 0, 0] = i
        gm = src(i, f)
        ids.append([g.group_id for g in gm.groups if g.group_id])
    assert det.calls == [0, 3, 6] and ids == [[1]] * 7  # re-detections matched to the same track


def test_foreground_detector_finds_a_moving_square():
    rng = np.random.default_rng(0)
    bg = rng.integers(60, 90, (64, 96, 3), dtype=np.uint8)
    det = ForegroundDetector(history=5, stride=1, cell=8, min_cells=2)
    for _ in range(5):  # the empty scene fills the background model
        det.observe(bg + rng.integers(0, 3, bg.shape, dtype=np.uint8))
    f = bg.copy()
    f[20:44, 50:74] = 250
    inst = det.predict(f)
    assert len(inst) == 1
    x0, y0, x1, y1 = inst.boxes[0].tolist()
    assert abs(x0 - 50) <= 8 and abs(y0 - 20) <= 8 and abs(x1 - 74) <= 8


def test_video_mask_specs_are_checked(tmp_path):
    with pytest.raises(MaskError, match="must look like"):
        load_video_masks("nonsense")
    with pytest.raises(MaskError, match="unknown video mask source"):
        load_video_masks("zip:foo")
    with pytest.raises(MaskError, match="not found"):
        load_video_masks(f"folder:{tmp_path / 'none'}")
    with pytest.raises(MaskError, match="unknown detector option"):
        load_video_masks("detect:foreground,often=3")
    assert isinstance(load_video_masks("detect:foreground,every=2"), DetectorMasks)


@pytest.mark.parametrize("inner, min_psnr", [("hevc", 25), ("learned", 28)])
def test_encode_video_info_decode_video(clip_dir, zoo_env, capsys, inner, min_psnr):
    t, frames, maps = clip_dir
    args = ["encode-video", t / "frames", "--masks", f"folder:{t / 'masks'}", "--label", "1=ball", "--label", "2=box",
            "-o", t / "x.ssv", "--model", "test-small", "--gop", "3", "--background-gop", "3", "--qp", "26", "--quiet",
            "--inner", inner]
    assert main([str(a) for a in args]) == 0
    assert "5 frames" in capsys.readouterr().out
    assert main(["info", str(t / "x.ssv"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 5 and info["i_frames"] == [0, 3]
    assert [(x["id"], x["label"], x["first"], x["last"]) for x in info["tracks"]] == [(0, "background", 0, 4), (1, "ball", 0, 4), (2, "box", 2, 4)]
    assert main(["decode-video", str(t / "x.ssv"), "--labels", "ball", "--start", "1", "-o", str(t / "out"), "--quiet"]) == 0
    outs = sorted((t / "out").iterdir())
    assert len(outs) == 4
    f1 = np.asarray(Image.open(outs[0]))
    m = maps[1].labels == 1
    mse = ((f1[m].astype(float) - frames[1][m]) ** 2).mean()
    assert (f1[~m] == 0).all() and 10 * np.log10(255**2 / mse) > min_psnr
    read = {}
    for name, extra in (("plain", []), ("held", ["--backdrop"])):
        capsys.readouterr()
        assert main(["decode-video", str(t / "x.ssv"), "--labels", "ball", *extra, "-o", str(t / name), "--quiet"]) == 0
        read[name] = int(re.search(r"read (\d+) of (\d+) bytes", capsys.readouterr().out).group(1))
    h1 = np.asarray(Image.open(sorted((t / "held").iterdir())[1]))
    bg = maps[0].labels == 0  # frame 1 shows frame 0's background refresh behind the ball
    assert read["plain"] < read["held"] < (t / "x.ssv").stat().st_size
    assert (h1[m] == f1[m]).all() and np.abs(h1[bg & ~m].astype(float) - frames[0][bg & ~m]).mean() < 12
    assert main(["decode-video", str(t / "x.ssv"), "-o", str(t / "all.mkv"), "--quiet"]) == 0
    assert len(list(open_frames(t / "all.mkv"))) == 5
    # bad input: one line, non-zero
    assert main(["decode-video", str(t / "x.ssv"), "--tracks", "9", "-o", str(t / "o2")]) == 1
    assert main(["decode-video", str(t / "x.ssv"), "--start", "99", "-o", str(t / "o3")]) == 1
    assert main(["encode-video", str(t / "nope.mp4"), "--masks", f"folder:{t / 'masks'}", "-o", str(t / "y.ssv")]) == 1
    err = capsys.readouterr().err
    assert "track 9 is not in the stream" in err and "not found" in err and "outside the stream" in err


def test_encode_video_codes_hevc_tracks_by_default(clip_dir, capsys):
    """Without --inner, encode-video codes its tracks with libx265 (no image codec is loaded), at the
    hevc background offset, and info names the inner codec."""
    t, _, _ = clip_dir
    assert main([str(a) for a in ["encode-video", t / "frames", "--masks", f"folder:{t / 'masks'}", "-o", t / "d.ssv",
                                  "--gop", "3", "--quiet"]]) == 0
    capsys.readouterr()
    assert main(["info", str(t / "d.ssv"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inner"] == "hevc" and info["model_id"] == ""
    assert main(["info", str(t / "d.ssv")]) == 0
    assert "hevc tracks" in capsys.readouterr().out


def test_decode_video_reports_corrupt_track_and_exits_3(clip_dir, zoo_env, capsys):
    t, _, _ = clip_dir
    main([str(a) for a in ["encode-video", t / "frames", "--masks", f"folder:{t / 'masks'}", "-o", t / "x.ssv",
                           "--model", "test-small", "--gop", "3", "--quiet"]])
    from ssc.video import VideoReader

    data = bytearray((t / "x.ssv").read_bytes())
    with VideoReader(bytes(data)) as rd:
        data[rd.frame(1).record_offsets(1)[1] + 8] ^= 0x55
    (t / "bad.ssv").write_bytes(bytes(data))
    assert main(["decode-video", str(t / "bad.ssv"), "-o", str(t / "o"), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "track 1, frame 1" in err and "CRC" in err


def test_action_head_on_a_partially_decoded_clip(clip_dir, zoo_env, tmp_path):
    """The video head runs on a decoded clip of chosen tracks (random weights: plumbing only, since ssc
    ships no action weights), and refuses to run without weights."""
    from ssc.errors import WeightsError
    from ssc.tasks.action import VideoClassifier
    from ssc.video.cli import decode_clip

    t, frames, _ = clip_dir
    main([str(a) for a in ["encode-video", t / "frames", "--masks", f"folder:{t / 'masks'}", "-o", t / "x.ssv",
                           "--model", "test-small", "--quiet"]])
    clip, tracks, read, size, failed = decode_clip(str(t / "x.ssv"), tracks=[1])
    assert clip.shape == (5, 90, 150, 3) and tracks == [1] and read < size and not failed
    held, _, held_read, _, _ = decode_clip(str(t / "x.ssv"), tracks=[1], backdrop=True)
    assert held.shape == clip.shape and read < held_read < size and (held != clip).any()
    head = VideoClassifier("r3d_18", labels=["a", "b", "c"], random_init=True, top_k=2)
    p = head.predict(clip)
    assert len(p.labels) == 2 and abs(p.probs.sum() - 1) < 1e-5 and p.feature.shape == (512,)
    assert head.predict(clip).labels == p.labels  # deterministic
    with pytest.raises(WeightsError, match="ssc ships none"):
        VideoClassifier("r3d_18")
    import torch as _t

    _t.save(head.model.state_dict(), tmp_path / "w.pth")
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    assert main(["analyze-video", str(t / "x.ssv"), "--tracks", "1", "--action-weights", str(tmp_path / "w.pth"),
                 "--label-map", str(tmp_path / "labels.txt"), "-o", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["tracks"] == [1] and res["top_k"][0]["label"] == p.labels[0]
    assert main(["analyze-video", str(t / "x.ssv"), "--tracks", "1", "--backdrop", "--action-weights",
                 str(tmp_path / "w.pth"), "-o", str(tmp_path / "r2.json")]) == 0
    assert json.loads((tmp_path / "r2.json").read_text())["bytes_read"] > res["bytes_read"]


def test_analyze_video_pose_gives_keypoints_per_track(tmp_path, zoo_env):
    """analyze-video --task pose: BlazePose keypoints on the decoded frames of the chosen track, each
    result naming its frame and track (three DAVIS parkour frames, the annotated runner as track 1)."""
    from ssc.eval.person import pose_installed

    if not pose_installed():
        pytest.skip("the blazepose head is not installed (make install)")
    src = require(DATA / "davis2016" / "JPEGImages" / "480p" / "parkour")
    ann = require(DATA / "davis2016" / "Annotations" / "480p" / "parkour")
    (tmp_path / "f").mkdir()
    (tmp_path / "m").mkdir()
    for i in range(3):
        Image.open(src / f"{i:05d}.jpg").save(tmp_path / "f" / f"{i:05d}.png")
        m = (np.asarray(Image.open(ann / f"{i:05d}.png").convert("L")) > 127).astype(np.uint8)
        Image.fromarray(m).save(tmp_path / "m" / f"{i:05d}.png")
    assert main(["encode-video", str(tmp_path / "f"), "--masks", f"folder:{tmp_path / 'm'}", "--model", "test-small",
                 "--label", "1=person", "-o", str(tmp_path / "x.ssv"), "--quiet"]) == 0
    assert main(["analyze-video", str(tmp_path / "x.ssv"), "--task", "pose", "--tracks", "1", "-o", str(tmp_path / "p.json")]) == 0
    res = json.loads((tmp_path / "p.json").read_text())
    assert res["tracks"] == [1] and res["bytes_read"] < res["total_bytes"]
    for r in res["results"]:
        assert r["track_id"] == 1 and 0 <= r["frame"] < 3 and len(r["keypoints"]) == 51
    assert main(["analyze-video", str(tmp_path / "x.ssv"), "-o", str(tmp_path / "a.json")]) == 1  # action needs weights


def test_info_bytes_accounts_for_every_byte_of_a_video(clip_dir, capsys):
    """``ssc info --bytes``: the byte budget's parts sum to the file (also cut short, without its
    index), each entry's segment framing is counted once, and the background's parts add up to the
    index's bytes for its track."""
    from ssc.bitstream.format import SEGMENT_OVERHEAD
    from ssc.video.info import byte_budget
    from ssc.video.stream import VideoReader

    t, _, _ = clip_dir
    assert main([str(a) for a in ["encode-video", t / "frames", "--masks", f"folder:{t / 'masks'}", "-o", t / "b.ssv",
                                  "--gop", "3", "--background-gop", "3", "--qp", "30", "--quiet"]]) == 0
    path = t / "b.ssv"
    b = byte_budget(path)
    assert sum(b.values()) == path.stat().st_size
    with VideoReader(path) as rd:
        entries = [e for i in range(rd.num_frames) for e in rd.frame(i).entries]
        comp = rd.header.complement_track
        assert b["segment framing"] == SEGMENT_OVERHEAD * len(entries)
        n_comp = sum(e.track_id == comp for e in entries)
        assert b["complement intra"] + b["complement inter"] + SEGMENT_OVERHEAD * n_comp == rd.index.tracks[comp].bytes
    assert min(b["complement intra"], b["complement inter"], b["objects intra"], b["objects inter"], b["frame headers"]) > 0
    cut = t / "cut.ssv"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size - 200])  # no index, a partial last frame
    assert sum(byte_budget(cut).values()) == cut.stat().st_size
    capsys.readouterr()
    assert main(["info", str(path), "--bytes"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"objects inter\s+%d\s" % b["objects inter"], out)
    assert main(["info", str(path), "--bytes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["byte_budget"] == b
    # one pass over the file gives both the table and the budget
    from ssc.video.info import video_info

    assert video_info(str(path), budget=True)["byte_budget"] == b and "byte_budget" not in video_info(str(path))
