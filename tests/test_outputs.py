"""Safe outputs: existing files are refused without --force, files appear under their name only when
complete, and an interrupted or killed encode leaves nothing truncated under the output name."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ssc.cli import main
from ssc.masks import GroupMap, save_png
from ssc.outputs import OutputExistsError, atomic_output, check_new, write_bytes

from .conftest import synthetic_scene
from .test_video import moving_scene


def test_atomic_output_replaces_only_when_complete(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(p) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash while writing")
    assert p.read_bytes() == b"old" and list(tmp_path.iterdir()) == [p]  # old file intact, no temp left
    write_bytes(p, b"new")
    assert p.read_bytes() == b"new" and list(tmp_path.iterdir()) == [p]
    with pytest.raises(OutputExistsError, match="--force"):
        check_new(p)
    assert check_new(p, force=True) == p
    (tmp_path / "empty").mkdir()
    check_new(tmp_path / "empty")  # an empty folder is not an output yet


def test_cli_refuses_existing_outputs_unless_forced(tmp_path, zoo_env, capsys):
    img, labels = synthetic_scene()
    Image.fromarray(img).save(tmp_path / "a.png")
    save_png(GroupMap.from_labels(labels), tmp_path / "m.png")
    enc = ["encode", str(tmp_path / "a.png"), "--masks", f"png:{tmp_path / 'm.png'}", "--model", "test-small"]
    (tmp_path / "x.ssc").write_bytes(b"precious")
    assert main([*enc, "-o", str(tmp_path / "x.ssc")]) == 1
    assert "exists" in capsys.readouterr().err and (tmp_path / "x.ssc").read_bytes() == b"precious"
    assert main([*enc, "-o", str(tmp_path / "x.ssc"), "--force"]) == 0
    assert (tmp_path / "x.ssc").read_bytes()[:3] == b"SSC"
    (tmp_path / "d.png").write_bytes(b"keep")
    assert main(["decode", str(tmp_path / "x.ssc"), "-o", str(tmp_path / "d.png")]) == 1
    assert main(["decode", str(tmp_path / "x.ssc"), "-o", str(tmp_path / "d.png"), "-y"]) == 0
    assert Image.open(tmp_path / "d.png").size == (img.shape[1], img.shape[0])
    # batch commands check every output before any job runs
    (tmp_path / "in").mkdir()
    Image.fromarray(img).save(tmp_path / "in" / "a.png")
    benc = ["batch", "encode", str(tmp_path / "in"), "--masks", f"png:{tmp_path / 'm.png'}", "--model", "test-small",
            "-o", str(tmp_path / "out")]
    assert main(benc) == 0
    capsys.readouterr()
    assert main(benc) == 1 and "exists" in capsys.readouterr().err
    assert main([*benc, "--force"]) == 0
    assert not [p for p in tmp_path.rglob(".*part-*")]


def _clip(tmp_path, n: int = 40):
    frames, maps = moving_scene(n)
    (tmp_path / "frames").mkdir()
    (tmp_path / "masks").mkdir()
    for i, (f, gm) in enumerate(zip(frames, maps)):
        Image.fromarray(f).save(tmp_path / "frames" / f"{i:05d}.png")
        Image.fromarray(gm.labels.astype(np.uint8)).save(tmp_path / "masks" / f"{i:05d}.png")


def _start_encode(tmp_path, zoo_env, out):
    env = dict(os.environ, SSC_WEIGHTS_DIR=str(zoo_env), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "ssc.cli", "encode-video", str(tmp_path / "frames"), "--masks",
           f"folder:{tmp_path / 'masks'}", "-o", str(out), "--model", "test-small", "--gop", "8", "--quiet"]
    # a suite started as a background job (`make test &`) ignores SIGINT, and children inherit that:
    # the encoder gets Ctrl-C's default disposition back, as from an interactive shell
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_frames(tmp_path, proc, min_bytes: int = 4000, timeout: float = 120.0) -> None:
    """Until the encoder's temporary file holds a few frames."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        parts = list(tmp_path.glob(".*part-*"))
        if parts and parts[0].stat().st_size > min_bytes:
            return
        if proc.poll() is not None:
            pytest.fail(f"encoder ended early: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("the encoder wrote nothing")


def test_ctrl_c_in_encode_video_keeps_a_complete_stream(tmp_path, zoo_env):
    from ssc.video import VideoDecoder, VideoReader

    _clip(tmp_path, 120)  # long enough to be stopped while it codes (x265's lookahead writes frames late)
    out = tmp_path / "x.ssv"
    proc = _start_encode(tmp_path, zoo_env, out)
    _wait_for_frames(tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in err and "first " in lines[0], err
    n = int(lines[0].split("first ")[1].split()[0])
    with VideoReader(out) as rd:
        assert rd.scan_error is None and rd.num_frames == n and 0 < n <= 120  # (120: Ctrl-C during the last flush)
        assert sum(1 for fr in VideoDecoder(rd).frames() if not fr.failed) == n  # every frame decodes
    assert not list(tmp_path.glob(".*part-*"))


def test_killed_encode_leaves_nothing_under_the_output_name(tmp_path, zoo_env):
    _clip(tmp_path, 120)
    out = tmp_path / "x.ssv"
    proc = _start_encode(tmp_path, zoo_env, out)
    _wait_for_frames(tmp_path, proc)
    proc.kill()  # no chance to clean up
    proc.wait(timeout=60)
    assert not out.exists()  # the partial file only ever had its temporary name


@pytest.fixture
def default_sigint():
    """Ctrl-C raises KeyboardInterrupt in this test, however the suite was started (a background
    job inherits SIGINT ignored)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_interrupt_between_holds_ctrl_c_to_the_end_of_the_block(default_sigint):
    from ssc.outputs import interrupt_between

    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt_between():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            done.append("rest of the block")
    assert done == ["rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupt_between():  # no signal: nothing raised
        pass
