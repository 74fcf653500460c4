"""The command line, end to end with a random-weights zoo entry, including every bad-input path."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ssc.bitstream import StreamReader
from ssc.cli import main
from ssc.masks import GroupMap, save_png

from .conftest import COCO_VAL, COCO_VAL_ANN, require, synthetic_scene


@pytest.fixture
def files(tmp_path, zoo_env):
    img, lab = synthetic_scene()
    Image.fromarray(img).save(tmp_path / "img.png")
    save_png(GroupMap.from_labels(lab, {1: (1, "person"), 2: (3, "car")}), tmp_path / "map.png")
    return tmp_path


def run(*args):
    return main([str(a) for a in args])


def test_encode_info_decode(files, capsys):
    t = files
    assert run("encode", t / "img.png", "--masks", f"png:{t / 'map.png'}", "-o", t / "x.ssc", "--model", "test-small", "--quality", "0.5") == 0
    assert run("info", t / "x.ssc", "--json") == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert [g["label"] for g in info["groups"]] == ["background", "person", "car"]
    assert info["groups"][1]["box"] == [19, 19, 62, 62]
    assert run("info", t / "x.ssc") == 0
    assert run("decode", t / "x.ssc", "--groups", "1", "-o", t / "one.png") == 0
    assert run("decode", t / "x.ssc", "--classes", "car", "-o", t / "car.png") == 0
    assert run("decode", t / "x.ssc", "-o", t / "all.png") == 0
    one, full = np.asarray(Image.open(t / "one.png")), np.asarray(Image.open(t / "all.png"))
    cells = StreamReader(t / "x.ssc").group_map == 1  # group 1's cells: the object and its context
    assert np.array_equal(one[cells], full[cells]) and (one[~cells] == 0).all()


def test_encode_tiled(files, capsys):
    t = files
    assert run("encode", t / "img.png", "--masks", f"png:{t / 'map.png'}", "-o", t / "x.ssc", "--model", "test-small",
               "--quality", "0.5", "--tile", "64") == 0
    capsys.readouterr()
    assert run("info", t / "x.ssc", "--json") == 0
    assert json.loads(capsys.readouterr().out)["tile_size"] == 64
    assert run("decode", t / "x.ssc", "-o", t / "all.png") == 0
    assert run("encode", t / "img.png", "--masks", f"png:{t / 'map.png'}", "-o", t / "y.ssc", "--model", "test-small",
               "--tile", "65") == 1
    assert "multiple of 64" in capsys.readouterr().err


def test_analyze_header_only_and_errors(files, capsys):
    t = files
    assert run("encode", t / "img.png", "--masks", f"png:{t / 'map.png'}", "-o", t / "x.ssc", "--model", "test-small", "--quality", "0.5") == 0
    assert run("analyze", t / "x.ssc", "--task", "header", "--image-id", "9", "-o", t / "h.json") == 0
    res = json.loads((t / "h.json").read_text())
    assert sorted((r["label"], r["category_id"]) for r in res) == [("car", 3), ("person", 1)]
    assert all(r["image_id"] == 9 and r["score"] == 1.0 for r in res)
    capsys.readouterr()
    assert run("analyze", t / "x.ssc", "--task", "header", "--classes", "dog", "-o", t / "h2.json") == 1
    assert "no group of class dog" in capsys.readouterr().err
    assert run("analyze", t / "x.ssc", "--task", "detect", "--det-weights", t / "none.pth", "-o", t / "d.json") == 1
    assert "not found" in capsys.readouterr().err


def test_analyze_in_the_feature_domain(files, capsys):
    t = files
    assert run("encode", t / "img.png", "--masks", f"png:{t / 'map.png'}", "-o", t / "o.ssc", "--model", "test-omni",
               "--quality", "1") == 0
    assert run("analyze", t / "o.ssc", "--task", "segment", "--domain", "features", "--groups", "1,2", "-o", t / "f.json") == 0
    assert "decoded groups [1, 2]" in capsys.readouterr().out
    assert isinstance(json.loads((t / "f.json").read_text()), list)
    assert run("analyze", t / "o.ssc", "--domain", "features", "--det-weights", t / "mine.pth", "-o", t / "f2.json") == 1
    assert "distilled from" in capsys.readouterr().err
    run("encode", t / "img.png", "--masks", f"png:{t / 'map.png'}", "-o", t / "p.ssc", "--model", "test-small")
    assert run("analyze", t / "p.ssc", "--domain", "features", "-o", t / "f3.json") == 1
    assert "no feature head" in capsys.readouterr().err


def test_encode_real_coco_image_with_annotation_masks(tmp_path, zoo_env):
    img = require(COCO_VAL / "000000000139.jpg")
    out = tmp_path / "c.ssc"
    assert run("encode", img, "--masks", f"coco:{require(COCO_VAL_ANN)}", "-o", out, "--model", "test-small", "--min-area", "400") == 0
    assert run("decode", out, "--classes", "person", "-o", tmp_path / "p.png") == 0


def test_errors_are_one_line_and_nonzero(files, capsys):
    t = files
    run("encode", t / "img.png", "--masks", f"png:{t / 'map.png'}", "-o", t / "x.ssc", "--model", "test-small")
    data = (t / "x.ssc").read_bytes()
    (t / "trunc.ssc").write_bytes(data[:30])  # cut inside the header
    (t / "notimg.png").write_bytes(b"hello")
    small = np.zeros((10, 10), np.int32)
    save_png(GroupMap.from_labels(small), t / "small.png")
    cases = [
        ("decode", t / "x.ssc", "--groups", "9", "-o", t / "o.png"),
        ("decode", t / "x.ssc", "--classes", "zebra", "-o", t / "o.png"),
        ("decode", t / "trunc.ssc", "-o", t / "o.png"),
        ("decode", t / "missing.ssc", "-o", t / "o.png"),
        ("info", t / "img.png"),
        ("encode", t / "notimg.png", "--masks", f"png:{t / 'map.png'}", "-o", t / "y.ssc", "--model", "test-small"),
        ("encode", t / "img.png", "--masks", f"png:{t / 'small.png'}", "-o", t / "y.ssc", "--model", "test-small"),
        ("encode", t / "img.png", "--masks", f"png:{t / 'map.png'}", "-o", t / "y.ssc", "--model", "no-such-model"),
    ]
    for c in cases:
        capsys.readouterr()
        assert run(*c) == 1, c
        err = capsys.readouterr().err.strip()
        assert err.startswith("ssc: error:") and "\n" not in err, (c, err)
    assert not (t / "y.ssc").exists()


def test_corrupted_segment_writes_other_groups_and_exits_3(files, capsys):
    t = files
    run("encode", t / "img.png", "--masks", f"png:{t / 'map.png'}", "-o", t / "x.ssc", "--model", "test-small")
    from ssc.bitstream import StreamReader

    h = StreamReader(t / "x.ssc").header
    b = bytearray((t / "x.ssc").read_bytes())
    b[h.payload_offset + h.group(2).seg_offset + 9] ^= 1
    (t / "bad.ssc").write_bytes(bytes(b))
    assert run("decode", t / "bad.ssc", "-o", t / "o.png") == 3
    assert "group 2" in capsys.readouterr().err
    assert (t / "o.png").is_file()
    # a file cut inside its payload (interrupted download) keeps every complete segment
    last = h.groups[-1]
    (t / "cut.ssc").write_bytes((t / "x.ssc").read_bytes()[: h.payload_offset + last.seg_offset + 5])
    assert run("decode", t / "cut.ssc", "-o", t / "c.png") == 3
    err = capsys.readouterr().err
    assert f"group {last.group_id}: segment missing" in err and err.count("ssc: error") == 1


def test_refuses_without_weights(tmp_path, monkeypatch, files):
    monkeypatch.setenv("SSC_WEIGHTS_DIR", str(tmp_path / "empty"))
    r = subprocess.run(
        [sys.executable, "-m", "ssc.cli", "encode", str(files / "img.png"), "--masks", f"png:{files / 'map.png'}",
         "-o", str(tmp_path / "z.ssc"), "--model", "test-small"],
        capture_output=True, text=True, env={**os.environ, "SSC_WEIGHTS_DIR": str(tmp_path / "empty")},
    )
    assert r.returncode == 1
    assert "no trained weights" in r.stderr


def test_weights_hash_mismatch_refused(tmp_path, weights_dir, monkeypatch):
    import shutil

    from ssc.errors import WeightsError
    from ssc.models.zoo import load_codec

    d = tmp_path / "w"
    shutil.copytree(weights_dir, d)
    f = d / "test-small.safetensors"
    b = bytearray(f.read_bytes())
    b[-5] ^= 1
    f.write_bytes(bytes(b))
    with pytest.raises(WeightsError, match="do not match their model card"):
        load_codec(f)


def _subcommands(parser) -> list[list[str]]:
    """Every command path of an argparse parser (``[["encode"], ["batch", "encode"], ...]``)."""
    import argparse

    out = []
    for act in parser._actions:
        if isinstance(act, argparse._SubParsersAction):
            for name, sp in act.choices.items():
                out.append([name])
                out += [[name, *rest] for rest in _subcommands(sp)]
    return out


def test_every_help_works(capsys):
    """``--help`` of every command, sub-command and benchmark prints usage and exits 0."""
    from ssc.cli import BENCHMARKS, build_parser

    paths = [p for p in _subcommands(build_parser()) if p != ["eval"]]
    paths += [["eval"]] + [["eval", name] for name in BENCHMARKS]
    assert ["batch", "analyze"] in paths and ["eval", "person"] in paths
    for path in paths:
        try:
            code = main([*path, "--help"])
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr().out
        assert code == 0, path
        assert "usage" in out.lower(), path
    main(["eval", "--help"])
    listing = capsys.readouterr().out
    assert all(name in listing for name in BENCHMARKS)
    assert main(["eval", "no-such-benchmark"]) == 1
    assert "unknown benchmark" in capsys.readouterr().err


def test_encode_for_a_machine_picks_its_codec_groups_and_quality(tmp_path, capsys):
    """``--for ssdlite-person``: the purpose's codec, the detector's person groups, persons at the
    purpose's quality (the tall ones at half size and higher) and the rest at its background quality
    and size; ``--quality`` sets the persons', ``--model`` / ``--masks`` / ``--group-scale`` override;
    an unknown machine and a missing --masks are clear errors."""
    require(COCO_VAL)
    from ssc.bitstream.format import quality_code
    from ssc.models.zoo import load_verified
    from ssc.purpose import PURPOSES

    pur = PURPOSES["ssdlite-person"]
    img = COCO_VAL / "000000005001.jpg"  # a crowd: person groups
    wid = bytes.fromhex(load_verified(pur.model)[0].sha256[:16])
    assert run("encode", img, "--for", "ssdlite-person", "-o", tmp_path / "a.ssc") == 0
    assert run("encode", img, "--for", "ssdlite-person", "--quality", "1", "-o", tmp_path / "q.ssc") == 0
    for name, q in (("a.ssc", pur.quality), ("q.ssc", 1.0)):
        with StreamReader(tmp_path / name) as rd:
            h = rd.header
            persons = [g for g in h.groups if g.label == "person"]
            assert h.weights_id == wid and persons and len(persons) < len(h.groups)
            top = load_verified(pur.model)[0].config["num_qualities"] - 1
            large = [pur.is_large(g.obj_box) for g in persons]
            assert any(large) and not all(large)  # the size rule: tall persons at half size, a level higher
            for g, big in zip(persons, large):
                assert g.quality == quality_code(min(q + pur.large_step, top) if big else q)
                assert g.scale == (pur.large_scale if big else 0)
            assert {g.quality for g in h.groups if g.label != "person"} == {quality_code(pur.background_quality)}
            assert {g.scale for g in h.groups if g.label != "person"} == {pur.background_scale}
    assert run("encode", img, "--for", "ssdlite-person", "--group-scale", "background=1", "-o", tmp_path / "s.ssc") == 0
    with StreamReader(tmp_path / "s.ssc") as rd:  # --group-scale overrides the purpose's sizes
        assert {g.scale for g in rd.header.groups} == {0}
    assert run("encode", img, "--for", "ssdlite-person", "--model", "gi-cell-m-person", "--masks", "whole",
               "-o", tmp_path / "b.ssc") == 0
    with StreamReader(tmp_path / "b.ssc") as rd:
        tuned = bytes.fromhex(load_verified("gi-cell-m-person")[0].sha256[:16])
        assert rd.header.weights_id == tuned and len(rd.header.groups) == 1
    capsys.readouterr()
    assert run("encode", img, "--for", "yolo", "-o", tmp_path / "c.ssc") == 1
    assert "known: ssdlite-person" in capsys.readouterr().err
    assert run("encode", img, "-o", tmp_path / "d.ssc") == 1
    assert "--masks is required" in capsys.readouterr().err
    assert not (tmp_path / "c.ssc").exists() and not (tmp_path / "d.ssc").exists()
