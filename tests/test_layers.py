"""GI Swin attention masking and the bit-exact fixed-point parameter path."""
import pytest
import torch

from ssc.models.layers import ExactConv2d, ExactParamNet, GroupIndependentSwinBlock, group_window_attention_mask
from ssc.models.layers.exact import from_fixed, to_fixed


def test_attention_mask_is_per_image():
    g = torch.zeros(2, 8, 8, dtype=torch.long)
    g[0, :, 4:] = 1  # image 0: two groups; image 1: one group
    allowed = group_window_attention_mask(g, window=8)
    assert allowed.shape == (2, 64, 64)
    assert allowed[1].all()
    assert not allowed[0].all()
    assert allowed[0, 0, 3] and not allowed[0, 0, 4]


@pytest.mark.parametrize("shifted", [False, True])
def test_other_group_tokens_do_not_influence(shifted):
    torch.manual_seed(0)
    blk = GroupIndependentSwinBlock(16, heads=2, window=4, shifted=shifted).eval()
    x = torch.randn(1, 16, 12, 12)
    g = torch.zeros(1, 12, 12, dtype=torch.long)
    g[:, 3:9, 2:10] = 1
    sup = torch.ones(1, 1, 12, 12)
    x2 = x.clone()
    x2[:, :, g[0] == 0] += torch.randn_like(x2[:, :, g[0] == 0]) * 5
    a, b = blk(x, g, sup), blk(x2, g, sup)
    inside = (g[0] == 1)
    assert torch.allclose(a[:, :, inside], b[:, :, inside], atol=1e-5)
    assert not torch.allclose(a[:, :, ~inside], b[:, :, ~inside])


def test_output_zero_outside_support_and_padding_invariant():
    torch.manual_seed(1)
    blk = GroupIndependentSwinBlock(8, heads=2, window=4, shifted=True).eval()
    x = torch.randn(1, 8, 6, 7)
    sup = torch.zeros(1, 1, 6, 7)
    sup[..., 1:5, 2:6] = 1
    g = sup[:, 0].long()
    x = x * sup
    y = blk(x, g, sup)
    assert (y[sup.expand_as(y) == 0] == 0).all()
    # same content embedded in a larger canvas (as when a crop is padded) gives the same result
    big = torch.zeros(1, 8, 12, 12)
    big[..., :6, :7] = x
    sb = torch.zeros(1, 1, 12, 12)
    sb[..., :6, :7] = sup
    yb = blk(big, sb[:, 0].long(), sb)
    assert torch.allclose(yb[..., :6, :7], y, atol=1e-5)


def _net():
    torch.manual_seed(3)
    net = ExactParamNet([ExactConv2d(8, 32, 3), torch.nn.PixelShuffle(2), torch.nn.ReLU(), ExactConv2d(8, 6, 5)])
    return net


def test_exact_path_tracks_float_path():
    net = _net()
    z = torch.round(torch.randn(2, 8, 5, 6) * 3)
    f = net(z)
    e = from_fixed(net.forward_exact(to_fixed(z)))
    assert torch.allclose(f.double(), e, atol=0.05)


def test_exact_path_is_bit_identical_across_threads_batching_and_dtype_of_input():
    net = _net()
    z = torch.round(torch.randn(3, 8, 7, 5) * 4)
    ref = net.forward_exact(to_fixed(z))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = net.forward_exact(to_fixed(z))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(ref, one)
    single = torch.cat([net.forward_exact(to_fixed(z[i : i + 1])) for i in range(3)])
    assert torch.equal(ref, single)
    assert torch.equal(ref, net.forward_exact(to_fixed(z.float())))
    # every value is an integer in activation units
    assert torch.equal(ref, torch.round(ref))


def test_exact_conv_independent_of_summation_order():
    torch.manual_seed(5)
    conv = ExactConv2d(16, 4, 3)
    a = to_fixed(torch.randn(1, 16, 6, 6) * 10)
    ref = conv.forward_exact(a)
    perm = torch.randperm(16)
    conv2 = ExactConv2d(16, 4, 3)
    conv2.load_state_dict(conv.state_dict())
    with torch.no_grad():
        conv2.weight.copy_(conv.weight[:, perm])
    assert torch.equal(ref, conv2.forward_exact(a[:, perm]))


def test_fan_in_limit_enforced():
    with pytest.raises(ValueError, match="fan-in"):
        ExactConv2d(1000, 4, 3)
