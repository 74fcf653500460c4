"""``ssc batch`` without Ray: jobs in this process, per-job errors, input checks, and a clear error
when Ray is asked for but not installed."""
import json
import sys

import pytest
import torch
from PIL import Image

from ssc.batch import comparable, resolve_spec
from ssc.cli import main
from ssc.defaults import DEFAULT_LOOKAHEAD
from ssc.masks import GroupMap, save_png
from ssc.parallel import JobError, LocalExecutor, make_executor, run_all

from .conftest import synthetic_scene


@pytest.fixture(autouse=True)
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _images(tmp_path, n=2):
    imgs, maps = tmp_path / "imgs", tmp_path / "maps"
    imgs.mkdir()
    maps.mkdir()
    for i in range(n):
        img, lab = synthetic_scene(96, 128, seed=10 + i)
        Image.fromarray(img).save(imgs / f"a{i}.png")
        save_png(GroupMap.from_labels(lab, {1: (1, "person"), 2: (3, "car")}), maps / f"a{i}.png")
    return imgs, maps


def _fails(x):
    if x == 2:
        raise ValueError("bad input two")
    return x * 10


def test_local_executor_keeps_order_and_isolates_failures():
    out, stats = run_all(LocalExecutor(1), _fails, [1, 2, 3], "t")
    assert out[0] == 10 and out[2] == 30
    assert isinstance(out[1], JobError) and out[1].job == 1 and "bad input two" in out[1].error
    assert (stats.jobs, stats.failed, stats.executor) == (3, 1, "local")


def test_batch_encode_decode_analyze_locally(tmp_path, zoo_env, capsys):
    imgs, maps = _images(tmp_path)
    # a mask map of the wrong size fails that image's job only
    save_png(GroupMap.from_labels(synthetic_scene(64, 64)[1]), maps / "a1.png")
    code = main(["batch", "encode", str(imgs), "--masks", f"png:{maps}/{{stem}}.png", "--model", "test-small", "-o",
                 str(tmp_path / "s"), "--quality", "0.5"])
    assert code == 3
    doc = json.loads((tmp_path / "s" / "batch_encode.json").read_text())
    ok, bad = doc["items"]
    assert ok["bytes"] == (tmp_path / "s" / "a0.ssc").stat().st_size and ok["groups"] == 3
    assert "error" in bad and bad["input"].endswith("a1.png") and not (tmp_path / "s" / "a1.ssc").exists()
    assert "a1.png" in capsys.readouterr().err

    assert main(["info", str(tmp_path / "s" / "a0.ssc")]) == 0
    assert main(["batch", "decode", str(tmp_path / "s"), "--groups", "1", "-o", str(tmp_path / "d")]) == 0
    dec = json.loads((tmp_path / "d" / "batch_decode.json").read_text())["items"][0]
    assert dec["decoded"] == [1] and dec["bytes_read"] < dec["total_bytes"] and (tmp_path / "d" / "a0.png").is_file()
    assert main(["batch", "analyze", str(tmp_path / "s"), "--task", "header", "-o", str(tmp_path / "h.json")]) == 0
    h = json.loads((tmp_path / "h.json").read_text())
    assert sorted(r["category_id"] for r in h["results"]) == [1, 3]
    assert comparable(h)["items"][0]["task"] == "header"


def test_batch_input_checks(tmp_path, zoo_env, capsys):
    imgs, maps = _images(tmp_path, 1)
    assert main(["batch", "encode", str(tmp_path / "nope.png"), "--masks", "png:x.png", "-o", str(tmp_path / "o")]) == 1
    assert "input not found" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "a0.png").write_bytes((imgs / "a0.png").read_bytes())
    assert main(["batch", "encode", str(imgs / "a0.png"), str(other / "a0.png"), "--masks", "png:m.png",
                 "-o", str(tmp_path / "o")]) == 1
    assert "overwrite" in capsys.readouterr().err
    assert main(["batch", "encode", str(imgs), "--masks", "png:m.png", "-o", str(tmp_path / "o"), "--workers", "3"]) == 1
    assert "--workers needs --ray" in capsys.readouterr().err
    assert resolve_spec("folder:ann/{stem}", imgs / "cam7.mp4") == "folder:ann/cam7"


def test_ray_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(Exception, match=r"pip install 'ssc\[ray\]'"):
        make_executor(ray=True)
    assert make_executor().name == "local"  # without --ray nothing imports Ray


def _clip(path, n=40, gop=10):
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264" if path.suffix == ".mp4" else "ffv1", rate=10)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.codec_context.gop_size = gop
        for t in range(n):
            f = np.roll(base, 2 * t, axis=1)
            f[:8, :8] = t  # frame number in the corner
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_chunk_reads_seek_and_equal_a_sequential_read(tmp_path, suffix):
    """A chunk of a container starts at the key frame before it (one seek) and gives exactly the
    frames a read from the start gives; the chunks cover the file."""
    import itertools

    import numpy as np

    from ssc.batch import video_chunks
    from ssc.video.io import open_frames

    pytest.importorskip("av")
    path = tmp_path / f"clip{suffix}"
    _clip(path)
    src = open_frames(path)
    for a, b in ((23, 31), (10, 11), (35, None)):
        assert src._seek_range(a, b) is not None  # regular timestamps: the seek path is taken
        got, want = list(src.range(a, b)), list(itertools.islice(iter(src), a, b))
        assert len(got) == len(want) > 0 and all(np.array_equal(x, y) for x, y in zip(got, want))
    chunks = video_chunks(path, 16, None)
    assert chunks == [(0, 16), (16, 32), (32, None)]
    assert sum(len(list(src.range(a, b))) for a, b in chunks) == 40


def test_batch_encode_refine_is_passed_to_each_job(tmp_path, zoo_env):
    imgs, maps = _images(tmp_path, 1)
    # test-small's card has no training lambdas: every job fails with the refinement's own message
    code = main(["batch", "encode", str(imgs), "--masks", f"png:{maps}/{{stem}}.png", "--model", "test-small", "-o",
                 str(tmp_path / "s"), "--quality", "0.5", "--refine", "2"])
    doc = json.loads((tmp_path / "s" / "batch_encode.json").read_text())
    assert code != 0 and "training lambdas" in doc["items"][0]["error"]
    assert doc["settings"]["refine"] == 2


def test_batch_video_job_codes_hevc_tracks_by_default(tmp_path):
    """A batch video job codes its tracks with libx265 unless it asks for the learned codec (whose
    model is then the only one loaded), and a batch decode reads such a stream (whose header names no
    model) without looking for one."""
    from ssc.batch import DecodeJob, VideoEncodeJob, decode_job, encode_video_job
    from ssc.video import VideoReader

    pytest.importorskip("av")
    path = tmp_path / "clip.mkv"
    _clip(path, n=12)
    rec = encode_video_job(VideoEncodeJob(str(path), str(tmp_path / "c.ssv"), "detect:foreground,every=4", "no-such-model"))
    assert rec.frames == 12
    with VideoReader(str(tmp_path / "c.ssv")) as rd:
        assert rd.header.inner == "hevc"
    dec = decode_job(DecodeJob(str(tmp_path / "c.ssv"), str(tmp_path / "frames")))
    assert dec.frames == 12 and not dec.failed


@pytest.mark.parametrize("extra, look", [([], DEFAULT_LOOKAHEAD), (["--kbps", "200"], 0),
                                         (["--kbps", "200", "--lookahead", "4"], 4)])
def test_batch_video_lookahead_defaults_to_none_under_rate_control(tmp_path, extra, look):
    """hevc tracks look ahead at a constant qp and not with a target bitrate (the live pipeline, where
    the lookahead read no better per bit), unless told; the batch record names what was used."""
    pytest.importorskip("av")
    path = tmp_path / "clip.mkv"
    _clip(path, n=6)
    code = main(["batch", "encode", str(path), "--masks", "detect:foreground,every=4", "-o", str(tmp_path / "o"), *extra])
    doc = json.loads((tmp_path / "o" / "batch_encode.json").read_text())
    assert code == 0 and doc["settings"]["lookahead"] == look and not doc["items"][0].get("error")
