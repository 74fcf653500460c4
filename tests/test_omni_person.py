"""Omni-ICM feature path for the SSDLite person detector: the head's grid mapping, the detector's
maps-only path, a filter-less feature codec coding the pixel codec's own latents, the trainer
(cached distillation set, resume, export) and the feature domain in analyze / batch analyze."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from ssc.analyze import analyze_stream, feature_detector
from ssc.api import encode_image
from ssc.bitstream import StreamReader
from ssc.errors import SSCError, WeightsError
from ssc.masks import GroupMap
from ssc.models import create_model
from ssc.omni.decode import decode_features
from ssc.omni.synth_head import SynthSSDHead
from ssc.tasks import ssdlite

from .conftest import SMALL, require, synthetic_scene, COCO_VAL

needs_package = pytest.mark.skipif(not ssdlite.available(), reason=ssdlite.INSTALL_HINT)
SSD = dict(SMALL, head="ssd-synth", info_filter=False, teacher="ssdlite-person", teacher_backend="ssdlite-person",
           head_width=16, head_blocks=1, proj_dim=16)


def test_synth_head_maps_and_composed_decode_agree():
    torch.manual_seed(0)
    head = SynthSSDHead(48, 24, width=16, blocks=1).eval()
    y = torch.randn(1, 48, 6, 9)  # a 96x144 image
    sup = torch.ones(1, 1, 12, 18)
    with torch.no_grad():
        train = head(y, sup)
        dec = head.compose(96, 144, [(head.level0(y, sup), sup, 0, 0)])  # canvas padded to 128x192
        # two groups side by side compose to the whole image
        left, right = sup.clone(), sup.clone()
        left[..., 9:], right[..., :9] = 0, 0
        two = head.compose(96, 144, [(head.level0(y, left), left, 0, 0), (head.level0(y, right), right, 0, 0)])
        one = head.compose(96, 144, [(head.level0(y, left), left, 0, 0)])
    assert list(train) == ["5"] and tuple(train["5"].shape) == (1, 32, 38, 38)
    assert torch.allclose(train["5"], dec["5"], atol=1e-5)
    # the stage is not group-local at the split (its deconvolution reaches across), so only close
    assert (two["5"] - dec["5"]).abs().mean() < (one["5"] - dec["5"]).abs().mean()
    with pytest.raises(ValueError, match="no decoded group"):
        head.compose(96, 144, [])


def test_synth_head_starts_as_the_codecs_first_synthesis_stage(codec):
    torch.manual_seed(1)
    omni = create_model("gi-omni", **SSD).eval()
    omni.load_state_dict(codec.model.state_dict(), strict=False)
    omni.feature_head.seed_from(omni.g_s)
    y = torch.randn(1, omni.M, 4, 5)
    sup = torch.ones(1, 1, 8, 10)
    with torch.no_grad():
        f = omni.feature_head.level0(y, sup)
        ref = omni.g_s.igdns[0](omni.g_s.deconvs[0](y))
        for blk in omni.g_s.swin["3"]:  # the test codec has GI Swin blocks at 1/8
            ref = blk(ref, sup[:, 0].long(), sup)
    assert torch.allclose(f[:, :-1], ref, atol=1e-6) and torch.equal(f[:, -1:], sup)


def test_feature_codec_without_filter_codes_the_pixel_codecs_latents(codec):
    torch.manual_seed(3)
    omni = create_model("gi-omni", **SSD).eval()
    missing, unexpected = omni.load_state_dict(codec.model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("feature_head.", "projector.")) for k in missing)
    omni.update_tables()
    from ssc.models.zoo import UNREGISTERED_ID, LoadedCodec, ModelCard

    oc = LoadedCodec(omni, ModelCard("test-omni-ssd", "gi-omni", dict(SSD)), UNREGISTERED_ID)
    img, lab = synthetic_scene()
    gm = GroupMap.from_labels(lab)
    a, b = StreamReader(encode_image(img, gm, oc, quality=1.0).data), StreamReader(encode_image(img, gm, codec, quality=1.0).data)
    for g in (0, 1, 2):
        assert a.read_segment(g) == b.read_segment(g)


@needs_package
def test_detector_reads_its_own_maps_as_it_reads_pixels():
    from ssc.api import read_image
    from ssc.tasks.ssdlite.backend import SSDLitePersonHead
    from ssc.tasks.ssdlite.preprocess import resize_linear_u8

    head = SSDLitePersonHead()
    path = sorted(require(COCO_VAL).glob("*.jpg"))[3]
    img = resize_linear_u8(read_image(path), 300, 300)  # already the graph's size: no resize in either path
    ref = head.predict(img)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = head.predict_features(head.backbone_features(x), (300, 300))
    assert len(ref.scores) > 0
    k = min(5, len(ref.scores))
    assert torch.allclose(out.scores[:k], ref.scores[:k], atol=1e-4)
    assert torch.allclose(out.boxes[:k], ref.boxes[:k], atol=0.05)
    maps = head.feature_maps(head.backbone_features(x))
    assert tuple(maps["0"].shape) == (1, 576, 19, 19) and tuple(maps["1"].shape) == (1, 1280, 10, 10)
    with torch.no_grad():  # the detector cut after block 5 gives the same maps
        maps5 = head.feature_maps(head.backbone_features(x, 5))
    assert all(torch.allclose(maps5[k], maps[k], atol=1e-4) for k in maps)
    with pytest.raises(ValueError, match="one block's output"):
        head.predict_features({"0": torch.zeros(1, 128, 8, 8)}, (300, 300))
    with pytest.raises(ValueError, match="32 channels"):
        head.predict_features({"5": torch.zeros(1, 96, 38, 38)}, (300, 300))


def test_distillation_near_the_decoded_support_weighs_the_rest_by_the_floor():
    """``extra.near_floor``: cells beyond ``near_reach`` of the support count at the floor, in the error
    and in the teacher energy that normalises it; a weight of ones is the unweighted loss."""
    from ssc.omni.train import distill_loss
    from ssc.omni.train_ssd import near_weight

    sup = torch.zeros(2, 1, 38, 38)
    sup[0, :, 10:14, 10:14] = 1
    sup[1] = 1
    w = near_weight(sup, 0.2, 3)
    assert w[0, 0, 7, 7] == 1 and w[0, 0, 16, 16] == 1 and w[0, 0, 6, 10] == pytest.approx(0.2)
    assert w[0, 0, 17, 12] == pytest.approx(0.2) and bool((w[1] == 1).all())
    torch.manual_seed(0)
    t = {"cut": torch.randn(2, 4, 38, 38), "0": torch.randn(2, 3, 19, 19)}
    s = {k: v.clone() for k, v in t.items()}
    s["cut"][:, :, 30:, 30:] += 1  # wrong only far from the first sample's support
    s["0"][:, :, 15:, 15:] += 1
    plain = distill_loss(s, t)
    assert torch.allclose(distill_loss(s, t, torch.ones(2, 1, 38, 38)), plain)
    assert torch.allclose(distill_loss(s, t, near_weight(sup, 1.0, 3)), plain)
    assert distill_loss(s, t, near_weight(sup, 0.0, 3))[0] == 0  # nothing counts off the support's reach
    weighted = distill_loss(s, t, w)
    assert 0 < weighted[0] < plain[0] and weighted[1] == plain[1]


def test_focused_output_distillation_weighs_the_anchors_that_hold_a_person():
    """``extra.kd_focus``: 0 is the plain mean of the per-anchor KL; above 0 an error on an anchor the
    teacher (or the student) believes in counts more than the same error on background."""
    from ssc.omni.train_ssd import anchor_kl

    pt = torch.full((2, 3000), 0.01)
    pt[:, :5] = 0.9
    logits = torch.logit(pt).clone()
    kl_plain = (F.binary_cross_entropy_with_logits(logits, pt, reduction="none")
                - F.binary_cross_entropy(pt, pt, reduction="none")).mean(1)
    assert torch.allclose(anchor_kl(logits, pt), kl_plain) and float(anchor_kl(logits, pt).abs().max()) < 1e-6
    on_person, on_background = logits.clone(), logits.clone()
    on_person[0, :5] = torch.logit(torch.tensor(0.3))  # the student doubts the person anchors
    on_background[0, 100:105] = torch.logit(torch.tensor(0.6))  # ... or sees one where the teacher does not
    for focus in (0.0, 20.0):
        p, b = anchor_kl(on_person, pt, focus), anchor_kl(on_background, pt, focus)
        assert p[1] == pytest.approx(0, abs=1e-6) and p[0] > 0 and b[0] > 0
    plain_p, plain_b = anchor_kl(on_person, pt)[0], anchor_kl(on_background, pt)[0]
    focused_p, focused_b = anchor_kl(on_person, pt, 20.0)[0], anchor_kl(on_background, pt, 20.0)[0]
    assert focused_p > 5 * plain_p and focused_b > 5 * plain_b  # both kinds of error now weigh more
    logits.requires_grad_(True)
    anchor_kl(logits, pt, 20.0).sum().backward()  # the weights are constants of the step
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_out_of_range_loss_settings_are_refused_before_any_work(tmp_path):
    from ssc.omni.train_ssd import train_omni_ssd
    from ssc.train import TrainConfig

    bad_settings = [({"near_floor": 1.5}, "near_floor must lie in"),
                    ({"near_floor": 0.5, "near_reach": -1}, "near_floor must lie in"),
                    ({"near_reach": 2.5}, "near_floor must lie in"), ({"near_floor": "0.2"}, "near_floor must lie in"),
                    ({"near_reach": True}, "near_floor must lie in"),
                    ({"kd_focus": -1}, "kd_focus must be a"), ({"kd_focus": "20"}, "kd_focus must be a"),
                    ({"kd_focus": float("nan")}, "kd_focus must be a"), ({"kd_focus": float("inf")}, "kd_focus must be a"),
                    ({"kd_focus": True}, "kd_focus must be a")]
    for bad, message in bad_settings:
        cfg = {"name": "bad", "kind": "omni-ssd", "model": {"arch": "gi-omni", **SSD}, "lambdas": [0.1, 0.5],
               "data": {"photos": [str(tmp_path)]}, "steps": 1, "out_dir": str(tmp_path / "runs"), "extra": bad}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        with pytest.raises(ValueError, match=message):
            train_omni_ssd(TrainConfig.load(tmp_path / "c.yaml"))
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, weights_dir):
    """A tiny feature codec trained for 3 steps (2, then resumed to 3) from the test zoo's codec."""
    if not ssdlite.available():
        pytest.skip(ssdlite.INSTALL_HINT)
    from ssc.omni.train_ssd import train_omni_ssd
    from ssc.train import TrainConfig

    tmp = tmp_path_factory.mktemp("omni-ssd")
    photos = tmp / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(synthetic_scene(120 + 40 * i, 160, seed=i)[0]).save(photos / f"p{i}.png")
    cfg = {"name": "omni-ssd-tiny", "kind": "omni-ssd", "model": {"arch": "gi-omni", **SSD}, "lambdas": [0.1, 0.5],
           "data": {"photos": [str(photos)]}, "steps": 2, "batch": 2, "ckpt_every": 1, "log_every": 1,
           "out_dir": str(tmp / "runs"), "threads": 1,
           "extra": {"init_from": str(weights_dir / "test-small.safetensors"), "photos": 2}}
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    train_omni_ssd(TrainConfig.load(tmp / "c.yaml"))
    cfg["steps"] = 3
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    w = train_omni_ssd(TrainConfig.load(tmp / "c.yaml"))
    return tmp, w


def test_trainer_caches_resumes_and_exports(trained):
    from ssc.models.zoo import load_codec

    tmp, w = trained
    run = tmp / "runs" / "omni-ssd-tiny"
    steps = [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert (run / "distill_set_b5.pt").is_file()  # built once, reused by the resumed run
    loaded = load_codec(w)
    assert loaded.model.filter is None and loaded.model.teacher_backend == "ssdlite-person"


def test_a_fresh_machine_continues_from_the_exported_weights(trained):
    """No checkpoint, no distillation cache: ``init_from`` the exported weights continues the step
    count (the campaign's warm start), with the head's trained weights, not the codec's fresh head."""
    from safetensors.torch import load_file

    from ssc.omni.train_ssd import train_omni_ssd
    from ssc.train import TrainConfig

    tmp, w = trained
    run_log = tmp / "runs" / "omni-ssd-tiny" / "log.jsonl"
    w.with_name(f"{w.stem}.train_log.jsonl").write_text(run_log.read_text())  # as committed beside the weights
    cfg = yaml.safe_load((tmp / "c.yaml").read_text())
    cfg.update(steps=4, out_dir=str(tmp / "fresh"), init_from=str(w))
    (tmp / "fresh.yaml").write_text(yaml.safe_dump(cfg))
    w2 = train_omni_ssd(TrainConfig.load(tmp / "fresh.yaml"))
    steps = [json.loads(x)["step"] for x in (tmp / "fresh" / "omni-ssd-tiny" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # the committed log continued by one step
    before, after = load_file(str(w)), load_file(str(w2))
    head = [k for k in before if k.startswith("feature_head.")]
    assert head and any(not torch.equal(before[k], after[k]) for k in head)  # trained on, one step
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("g_a."))  # the codec stays frozen


def test_a_finished_plan_exports_without_training(trained):
    """A fresh machine whose committed weights already ran the whole plan: no distillation set is
    built, no step is taken, and the export keeps the committed step count."""
    from ssc.models.zoo import load_codec
    from ssc.omni.train_ssd import train_omni_ssd
    from ssc.train import TrainConfig

    tmp, w = trained
    cfg = yaml.safe_load((tmp / "c.yaml").read_text())
    cfg.update(steps=3, out_dir=str(tmp / "done"), init_from=str(w))
    (tmp / "done.yaml").write_text(yaml.safe_dump(cfg))
    w2 = train_omni_ssd(TrainConfig.load(tmp / "done.yaml"))
    assert not list((tmp / "done" / "omni-ssd-tiny").glob("distill_set*"))
    assert load_codec(w2).card.training["steps"] == 3


def test_a_head_grows_by_blocks_from_trained_weights(trained):
    """``extra.init_head``: a head with more trunk blocks starts as the trained head's function (the
    new residual blocks start as identities); ``extra.tune`` trains the synthesis-stage copy too, and
    the codec's own synthesis transform stays as it was."""
    from safetensors.torch import load_file

    from ssc.models.zoo import load_codec
    from ssc.omni.train_ssd import grow_from, train_omni_ssd
    from ssc.train import TrainConfig

    tmp, w = trained
    small = load_codec(w).model
    big = create_model("gi-omni", **dict(SSD, head_blocks=3)).eval()
    big.load_state_dict(small.state_dict(), strict=False)
    new = grow_from(big, str(w))
    assert new and all(k.startswith(("feature_head.trunk.1.", "feature_head.trunk.2.")) for k in new)
    torch.manual_seed(4)
    y, sup = torch.randn(1, big.M, 4, 5), torch.ones(1, 1, 8, 10)
    with torch.no_grad():
        assert torch.allclose(big.feature_head(y, sup)["5"], small.feature_head(y, sup)["5"], atol=1e-5)
    with pytest.raises(WeightsError, match="does not fit this head"):
        grow_from(create_model("gi-omni", **dict(SSD, head_width=24)), str(w))

    cfg = yaml.safe_load((tmp / "c.yaml").read_text())
    cfg["model"]["head_blocks"] = 2
    cfg.update(name="omni-ssd-grown", steps=1, out_dir=str(tmp / "grown"))
    cfg["extra"].update(init_head=str(w), tune=["stage", "igdn"], near_floor=0.2)  # and a weighted loss
    (tmp / "grown.yaml").write_text(yaml.safe_dump(cfg))
    before, after = load_file(str(w)), load_file(str(train_omni_ssd(TrainConfig.load(tmp / "grown.yaml"))))
    assert not torch.equal(before["feature_head.stage.weight"], after["feature_head.stage.weight"])
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("g_s."))
    cfg["extra"]["tune"] = ["stages"]
    cfg["out_dir"] = str(tmp / "typo")
    (tmp / "typo.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="not frozen parts of the head"):
        train_omni_ssd(TrainConfig.load(tmp / "typo.yaml"))


def test_distillation_targets_of_the_whole_image_differ_only_off_the_mask(trained):
    """``target="image"``: the teacher sees the whole view, so the whole-image mask's samples are the
    same as with ``"decoded"`` (grey off the mask) and only the partial mask's targets change."""
    from ssc.models.zoo import load_codec
    from ssc.omni import distill_set
    from ssc.omni.train import load_teacher_head

    tmp, w = trained
    model = load_codec(w).model
    teacher = load_teacher_head(model)
    paths = sorted((tmp / "photos").glob("*.png"))[:1]
    dec, img = (distill_set.build(paths, model, teacher, 0, quiet=True, target=t)[distill_set.SHAPES[0]]
                for t in ("decoded", "image"))
    assert len(dec) == len(img) == 4  # (whole image, partial mask) x two views
    assert torch.equal(dec.y, img.y) and torch.equal(dec.cut[:2], img.cut[:2])
    assert not torch.equal(dec.cut[2:], img.cut[2:])
    with pytest.raises(ValueError, match="unknown distillation target"):
        distill_set.build(paths, model, teacher, 0, quiet=True, target="pixels")


def test_more_photos_add_a_shard_to_the_distillation_set(trained, monkeypatch):
    """Raising ``extra.photos`` builds only the images the cache lacks, into a new shard with its own
    manifest; a cache holding images the run no longer lists, or a shard without a manifest, is
    refused with a message that says how to rebuild."""
    from ssc.models.zoo import load_codec
    from ssc.omni import distill_set, train_ssd
    from ssc.omni.train import load_teacher_head
    from ssc.omni.train_ssd import distill_set_for
    from ssc.train import TrainConfig

    tmp, w = trained
    model = load_codec(w).model
    teacher = load_teacher_head(model)
    out = tmp / "shards"
    out.mkdir()
    (tmp / "split").mkdir()

    def cfg_with(photos: int) -> TrainConfig:
        cfg = yaml.safe_load((tmp / "c.yaml").read_text())
        cfg["extra"]["photos"] = photos
        (tmp / "shards.yaml").write_text(yaml.safe_dump(cfg))
        return TrainConfig.load(tmp / "shards.yaml")

    one = distill_set_for(cfg_with(1), out, model, teacher)
    assert sum(len(b) for b in one) == 4  # one image: (whole, partial) x two views
    both = distill_set_for(cfg_with(2), out, model, teacher)
    shards = distill_set.Shards(out, "distill_set_b5")
    assert [f.name for f in shards.files()] == ["distill_set_b5.pt", "distill_set_b5.2.pt"]
    assert sum(len(b) for b in both) == 8 and torch.equal(both[0].y, one[0].y)  # the first shard is kept
    held = [shards.manifest(f) for f in shards.files()]
    assert len(held[0]) == len(held[1]) == 1 and held[0] != held[1]
    monkeypatch.setattr(train_ssd, "SHARD_IMAGES", 1)
    split = distill_set_for(cfg_with(2), tmp / "split", model, teacher)  # a first build, one image per shard
    assert len(distill_set.Shards(tmp / "split", "distill_set_b5").files()) == 2 and sum(len(b) for b in split) == 8
    again = distill_set_for(cfg_with(2), out, model, teacher)  # nothing missing: nothing built
    assert len(shards.files()) == 2 and sum(len(b) for b in again) == 8
    with pytest.raises(ValueError, match="no longer lists"):
        distill_set_for(cfg_with(1), out, model, teacher)
    for f in (shards.files()[0], shards.files()[0].with_suffix(".json")):  # the first shard deleted:
        f.unlink()
    distill_set_for(cfg_with(2), out, model, teacher)  # its image goes to a third shard, the second stays
    assert [f.name for f in shards.files()] == ["distill_set_b5.2.pt", "distill_set_b5.3.pt"]
    assert shards.manifest(shards.files()[1]) == held[0]
    shards.files()[1].with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="no manifest"):
        distill_set_for(cfg_with(2), out, model, teacher)


def test_feature_domain_with_the_person_detector(trained, monkeypatch):
    from ssc.batch import AnalyzeJob, analyze_job
    from ssc.models.zoo import load_codec
    from ssc.tasks.ssdlite.backend import SSDLitePersonHead

    tmp, w = trained
    oc = load_codec(w)
    img, lab = synthetic_scene()
    data = encode_image(img, GroupMap.from_labels(lab, {1: (1, "person"), 2: (3, "car")}), oc, quality=1.0).data
    fd = decode_features(data, oc, groups=[1])
    assert tuple(fd.features["5"].shape) == (1, 32, 38, 38) and fd.decoded == [1]
    assert feature_detector(data, oc, None)[1:] == ("ssdlite-person", "ssdlite-person")
    with pytest.raises(WeightsError, match="distilled from"):
        feature_detector(data, oc, None, backend="torchvision")
    res = analyze_stream(data, SSDLitePersonHead(), "detect", oc, groups=[1], domain="features")
    assert res.decoded_groups == [1] and all(r["category_id"] == 1 for r in res.results)
    stream = tmp / "s.ssc"
    stream.write_bytes(data)
    monkeypatch.setenv("SSC_WEIGHTS_DIR", str(w.parent))  # the batch job finds the stream's model in the zoo
    rec = analyze_job(AnalyzeJob(str(stream), "detect", 7, None, None, domain="features"))
    assert rec.decoded == [0, 1, 2] and all(r["image_id"] == 7 for r in rec.results)
    video = tmp / "v.ssv"
    from ssc.video.format import MAGIC

    video.write_bytes(MAGIC + b"\0" * 16)
    with pytest.raises(SSCError, match="image streams"):
        analyze_job(AnalyzeJob(str(video), "detect", 1, None, None, domain="features"))


def test_benchmark_targets_and_input_sizes():
    from ssc.eval.omni_person import Point, targets
    from ssc.eval.ssdlite_scale import target_size

    pts = [Point("pixels", 1.0, 3, 0.5, 0.2, 16.0, 35.0, 300.0), Point("pixels", 3.0, 3, 1.2, 0.1, 18.0, 40.0, 310.0),
           Point("features", 1.0, 3, 0.5, 0.3, 18.5, 40.0, 100.0), Point("features", 3.0, 3, 1.2, 0.2, 19.0, 41.0, 200.0),
           Point("features-persons", 1.0, 3, 0.07, 0.5, 16.5, 30.0, 50.0)]
    t = targets(pts)
    assert t["T1"]["met"] and abs(t["T1"]["ratio"] - 0.5 / 1.2) < 1e-9  # 18.5 >= 18 at 0.5 of 1.2 bpp
    assert t["T2"]["met"] and not t["T3"]["met"]  # 310 / 200 < 2 at q 3
    assert target_size("square 300", 480, 640) == (300, 300)
    assert target_size("short 300", 480, 640) == (300, 400) and target_size("own", 480, 640) == (480, 640)
    with pytest.raises(ValueError, match="unknown setting"):
        target_size("tall 300", 480, 640)
