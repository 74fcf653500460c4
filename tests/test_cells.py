"""Cell-owned groups: the owner rule, training masks on the cell grid, a rate range extended below the
init weights, and what the benchmarks compute from them (issue 35)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ssc.masks.cells import cell_owners, cells_to_pixels, owned_labels


def test_owner_rule():
    lab = np.zeros((50, 70), np.int32)
    lab[5:30, 10:40] = 1  # a box over cells (0..1, 0..2)
    lab[30:48, 35:60] = 3  # reaches cell row 1 with 2 rows (24 px in cell (1, 3), 26 in (1, 2) against 1's 150)
    lab[20:22, 50:52] = 2  # a 4-pixel sliver: owns no cell by rule 1, takes its best cell (rule 3)
    own = cell_owners(lab)
    assert own.shape == (4, 5)
    assert (own[0, :3] == 1).all() and own[1, 2] == 1  # 1 has the most pixels there
    assert own[1, 3] == 2  # the sliver's cell
    assert own[2, 2] == 3 and own[2, 3] == 3
    assert own[3, 0] == 0 and own[0, 4] == 0  # no object there
    assert set(np.unique(own)) == {0, 1, 2, 3}  # every object keeps a cell
    cells = owned_labels(lab)
    assert cells.shape == lab.shape and (cells == cells_to_pixels(own, lab.shape)).all()
    # no background at all: the object with the most pixels takes the cell
    assert set(np.unique(cell_owners(np.where(lab == 0, 5, lab)))) <= {1, 2, 3, 5}
    # ties go to the smaller object (6 owns two more cells; a one-cell image would hand the cell to
    # whichever object rule 3 serves last)
    big = np.zeros((16, 48), np.int32)
    big[:, :8], big[:, 8:] = 4, 6
    assert list(cell_owners(big)[0]) == [4, 6, 6]


def test_training_masks_lie_on_the_cell_grid():
    from ssc.data import CropSampler, Sample

    rng = np.random.default_rng(0)
    lab = np.zeros((256, 256), np.int32)
    lab[40:130, 30:90], lab[150:250, 100:220] = 1, 2
    samples = [Sample(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), lab)]
    s = CropSampler(samples, 128, {"blob": 0.5, "coco": 0.5}, cells=True)
    for k in range(20):
        _, m, _ = s.draw(0, k)
        cells = m.reshape(8, 16, 8, 16).mean((1, 3))
        assert np.isin(cells, (0.0, 1.0)).all()  # whole cells only
    plain = CropSampler(samples, 128, {"blob": 1.0})
    assert any(not np.isin(plain.draw(0, k)[1].reshape(8, 16, 8, 16).mean((1, 3)), (0.0, 1.0)).all() for k in range(5))


def test_levels_below_the_init_weights_continue_its_gains():
    from ssc.models.zoo import ModelCard
    from ssc.train import extend_levels_below

    g = torch.tensor([[0.0, 1.0], [1.0, 2.0], [3.0, 3.0]])
    out = extend_levels_below(ModelCard("m", "gi-hyper-ckbd", {"num_qualities": 3}),
                              {"log_gain": g, "log_inv_gain": -g, "other": g}, 2)
    assert out["log_gain"].shape == (5, 2) and torch.equal(out["log_gain"][2:], g)
    assert torch.allclose(out["log_gain"][1], torch.tensor([-0.5, 0.5]))  # half a step below level 0
    assert torch.allclose(out["log_gain"][0], torch.tensor([-0.75, 0.25]))
    assert torch.allclose(out["log_inv_gain"][1], torch.tensor([0.5, -0.5])) and out["other"] is g
    with pytest.raises(ValueError, match=">= 2 quality levels"):
        extend_levels_below(ModelCard("m", "gi-hyper-ckbd", {"num_qualities": 1}), {"log_gain": g[:1]}, 1)


def test_envelope_gain_table():
    from ssc.eval.person import PersonPoint, curve_at, envelope_gains

    def pt(kind, bpp, ap):
        return PersonPoint(kind, 0.0, 1, bpp, ap, None, 0.0, 0.0)

    a = [pt("avif", 0.1, 10.0), pt("avif", 0.4, 16.0), pt("jpeg@0.5", 0.05, 8.0), pt("jpeg@0.5", 0.2, 15.0)]
    s = [pt("ssc", 0.1, 11.0), pt("ssc", 0.4, 18.0), pt("ssc-persons-ann", 0.05, 30.0)]
    assert curve_at(a[:2], 0.2) == pytest.approx(13.0) and curve_at(a[:2], 0.05) is None
    assert curve_at(a[:2], 0.8) == 16.0  # beyond the top: its best point
    t = envelope_gains(a + s, bpps=(0.08, 0.2, 0.4))
    r = {row["bpp"]: row for row in t["rows"]}
    assert r[0.08]["ssc_AP"] is None  # annotation groups do not count; ssc has no point that low
    assert r[0.2]["envelope_by"] == "jpeg@0.5" and r[0.2]["envelope_AP"] == pytest.approx(15.0)
    assert r[0.4]["gain"] == pytest.approx(2.0) and t["mean_gain"] is None and not t["T1_met"]
    # a second codec of the same run (KIND/MODEL) counts as one more configuration; its annotation
    # groups do not either
    s2 = [pt("ssc-roi/gi-cell-m-person", 0.1, 12.5), pt("ssc-persons-ann/gi-cell-m-person", 0.1, 40.0)]
    t = envelope_gains(a + s + s2, bpps=(0.1,))
    assert t["rows"][0]["ssc_by"] == "ssc-roi/gi-cell-m-person" and t["rows"][0]["ssc_AP"] == 12.5
    # the streams `ssc encode --for` writes: decoded whole they are full decodes, persons only they
    # are persons-only decodes (T2 and T3 read them as such)
    from ssc.eval.person import is_full_decode, is_persons_only

    assert is_full_decode("ssc-for") and not is_persons_only("ssc-for")
    assert is_persons_only("ssc-for-persons") and not is_full_decode("ssc-for-persons")
    assert is_persons_only("ssc-for-persons/gi-cell-m-person") and not is_full_decode("ssc-persons-ann")
