"""Omni-ICM feature path (Feng et al., ECCV 2022, "Image Coding for Machines with Omnipotent Feature
Learning") inside ssc's group-independent codec: an information filter before entropy coding, a
feature head that turns a group's decoded latents into the detector's feature pyramid (no pixel
reconstruction), and the self-supervised + distillation objective that trains them with the rate."""
from .codec import OmniCodec
from .feature_head import FeatureHead
from .filter import InformationFilter

__all__ = ["FeatureHead", "InformationFilter", "OmniCodec"]
