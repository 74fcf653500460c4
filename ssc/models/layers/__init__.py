"""Building blocks, one concept per file."""
from .exact import ExactConv2d, ExactParamNet, FixedPoint
from .gdn import GDN
from .gi_swin import GroupIndependentSwinBlock, group_window_attention_mask
from .support import support_pyramid

__all__ = [
    "ExactConv2d",
    "ExactParamNet",
    "FixedPoint",
    "GDN",
    "GroupIndependentSwinBlock",
    "group_window_attention_mask",
    "support_pyramid",
]
