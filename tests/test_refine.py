"""Encoder-side latent refinement (ssc.models.refine): plain decoders read its streams, it is
reproducible, it lowers the real rate-distortion cost with trained weights, and it refuses models it
cannot serve."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from ssc.api import decode_image, encode_image, read_image
from ssc.cli import main as cli_main
from ssc.masks import GroupMap
from ssc.models import create_model
from ssc.models.refine import Refinement, quality_lambda, refine_latents
from ssc.models.zoo import UNREGISTERED_ID, LoadedCodec, ModelCard, load_codec

from .conftest import DATA, SMALL, make_codec, synthetic_scene

FEW = Refinement(steps=3, lr=0.01)


@pytest.fixture(scope="module")
def refinable():
    c = make_codec(3)
    return dataclasses.replace(c, card=dataclasses.replace(c.card, lambdas=[0.004, 0.03]))


def test_quality_lambda_interpolates_the_training_lambdas_geometrically():
    lams = [0.001, 0.01, 0.1]
    assert quality_lambda(lams, 0) == pytest.approx(0.001)
    assert quality_lambda(lams, 2) == pytest.approx(0.1)
    assert quality_lambda(lams, 0.5) == pytest.approx(math.sqrt(0.001 * 0.01))
    assert quality_lambda(lams, 1.5) == pytest.approx(math.sqrt(0.01 * 0.1))
    with pytest.raises(ValueError, match="no training lambdas"):
        quality_lambda([], 1.0)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="steps"):
        Refinement(steps=-1)
    with pytest.raises(ValueError, match="learning rate"):
        Refinement(lr=0.0)


def test_refined_streams_decode_with_the_plain_decoder_and_are_reproducible(refinable):
    img, labels = synthetic_scene()
    gm = GroupMap.from_labels(labels)
    plain = encode_image(img, gm, refinable, quality=0.5)
    a = encode_image(img, gm, refinable, quality=0.5, refine=FEW)
    b = encode_image(img, gm, refinable, quality=0.5, refine=FEW)
    assert a.data == b.data  # seeded noise: the same encode twice
    assert a.data != plain.data  # the latents did move
    assert [g.group_id for g in a.header.groups] == [g.group_id for g in plain.header.groups]
    full = decode_image(a.data, refinable)
    assert not full.failed and full.image.shape == img.shape
    one = decode_image(a.data, refinable, groups=[1])  # partial decode, as for any stream
    assert one.decoded == [1] and not one.failed
    # zero steps is the plain encoder, byte for byte
    assert encode_image(img, gm, refinable, quality=0.5, refine=Refinement(steps=0)).data == plain.data


def test_refinement_leaves_the_global_rng_and_the_model_mode_alone(refinable):
    img, labels = synthetic_scene()
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.pad(x, (0, 192 - x.shape[-1], 0, 128 - x.shape[-2]))
    mask = torch.zeros(1, 1, 128, 192)
    mask[..., : img.shape[0], : img.shape[1]] = torch.from_numpy(labels == 1).float()
    torch.manual_seed(7)
    expect = torch.rand(3)
    torch.manual_seed(7)
    y = refine_latents(refinable.model, x, mask, 1.0, 0.03, FEW)
    assert torch.equal(torch.rand(3), expect)
    assert not refinable.model.training and y.dtype == torch.float64
    assert y.shape == (1, SMALL["M"], 8, 12)


def test_models_that_cannot_be_refined_are_refused(codec, refinable):
    img, labels = synthetic_scene()
    gm = GroupMap.from_labels(labels)
    with pytest.raises(ValueError, match="training lambdas"):
        encode_image(img, gm, codec, quality=1.0, refine=FEW)  # the test codec's card has none
    torch.manual_seed(0)
    omni_cfg = dict(SMALL, feature_channels=128, head_width=32, head_blocks=1, proj_dim=16)
    omni = create_model("gi-omni", **omni_cfg).eval()
    omni.update_tables()
    oc = LoadedCodec(omni, ModelCard("o", "gi-omni", omni_cfg, lambdas=[0.01, 0.1]), UNREGISTERED_ID)
    with pytest.raises(ValueError, match="cannot be refined"):
        encode_image(img, gm, oc, quality=1.0, refine=FEW)


def test_cli_refine_refuses_a_model_without_lambdas(zoo_env, tmp_path, capsys):
    img, _ = synthetic_scene()
    from PIL import Image

    Image.fromarray(img).save(tmp_path / "a.png")
    rc = cli_main(["encode", str(tmp_path / "a.png"), "--masks", "whole", "-o", str(tmp_path / "a.ssc"),
                   "--model", "test-small", "--refine", "2"])
    assert rc != 0 and "training lambdas" in capsys.readouterr().err
    assert not (tmp_path / "a.ssc").exists()


KODAK = DATA / "kodak" / "kodim05.png"


@pytest.mark.skipif(not KODAK.exists(), reason="needs ../shared/data/kodak")
@pytest.mark.parametrize("quality,bound", [(0.0, 0.95), (3.0, 0.97)])
def test_refinement_lowers_the_real_rd_cost_with_the_shipped_weights(quality, bound):
    codec = load_codec("gi-hyper-ckbd-m")
    img = np.ascontiguousarray(read_image(KODAK)[:128, :128])
    gm = GroupMap.from_labels(np.zeros(img.shape[:2], np.int32))

    def cost(refine):
        enc = encode_image(img, gm, codec, quality=quality, refine=refine)
        dec = decode_image(enc.data, codec)
        mse = float(np.mean((dec.image.astype(np.float64) - img) ** 2)) / 255**2
        return quality_lambda(codec.card.lambdas, quality) * 255**2 * mse + 8 * len(enc.data) / img[..., 0].size

    # measured at steps 41044 and 44755: 0.91 (q 0) and 0.94 (q 3) of the plain encoder's cost
    assert cost(Refinement(steps=15)) < bound * cost(None)


@pytest.mark.skipif(not KODAK.exists(), reason="needs ../shared/data/kodak")
def test_cli_refine_with_the_shipped_model(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(read_image(KODAK)[:64, :96])).save(tmp_path / "k.png")
    out = tmp_path / "k.ssc"
    rc = cli_main(["encode", str(tmp_path / "k.png"), "--masks", "whole", "-o", str(out), "--quality", "1",
                   "--refine", "2"])
    assert rc == 0 and out.exists()
    assert cli_main(["decode", str(out), "-o", str(tmp_path / "k_dec.png")]) == 0
