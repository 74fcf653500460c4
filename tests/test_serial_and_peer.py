"""Serial-context reference coder (speed benchmark) and the scale-hyperprior peer (RD benchmark)."""
import pytest
import torch

from ssc.errors import BitstreamError
from ssc.models import create_model
from ssc.models.serial import SerialContextCoder, causal_mask


def test_causal_mask_sees_only_earlier_positions():
    m = causal_mask(5)
    assert m.sum() == 12 and m[2, 2] == 0 and m[2, 1] == 1 and m[3, 0] == 0 and m[0, 4] == 1


def test_serial_context_round_trip_is_exact(codec):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 128)
    mask = torch.zeros(1, 1, 64, 128)
    mask[..., 5:60, 10:100] = 1
    s = SerialContextCoder(codec.model)
    data, y_hat = s.compress_latents(x * mask, mask, 0.5)
    assert torch.equal(s.decompress_latents(data, mask), y_hat)
    # same latents support as the checkerboard coder, different coding order -> different bytes
    ck, _ = codec.model.compress_latents(x * mask, mask, 0.5)
    assert ck != data
    with pytest.raises((BitstreamError, ValueError)):
        s.decompress_latents(data[:-4] if len(data) > 4 else b"\x01\x00\x00\x00", mask)


@pytest.fixture(scope="module")
def peer():
    torch.manual_seed(0)
    m = create_model("bmshj2018-hyperprior", N=16, M=24).eval()
    m.update_tables()
    return m


def test_peer_round_trip_any_size(peer):
    torch.manual_seed(1)
    x = torch.rand(1, 3, 70, 100)
    data = peer.compress(x)
    y = peer.decompress(data)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(peer.decompress(data), y)


def test_peer_training_contract(peer):
    peer.train()
    try:
        x = torch.rand(2, 3, 64, 64)
        out = peer(x, torch.ones(2, 1, 64, 64), torch.zeros(2))
        assert out.x_hat.shape == x.shape and out.bpp.shape == (2,) and bool((out.bpp > 0).all())
        out.bpp.sum().backward()
    finally:
        peer.eval()
        peer.zero_grad(set_to_none=True)


def test_peer_rejects_truncated_stream(peer):
    data = peer.compress(torch.rand(1, 3, 64, 64))
    with pytest.raises(BitstreamError):
        peer.decompress(data[:2])
    with pytest.raises(BitstreamError):
        peer.decompress(data[:-1])
